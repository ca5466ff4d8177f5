"""What Container and Task add for supervision, as bases of theirs: the
caller's intent reported to the supervisor (a kill or forced delete is a
stop, not a failure; a start undoes it; a container being deleted is no
longer restarted), and the supervised state read back."""

from __future__ import annotations

import signal as _signal
from typing import TYPE_CHECKING, Any

from .._types import ExitStatus
from . import _supervised_state as state
from ._process import Process
from ._stop import check_signal
from ._supervised import Health, LastExit, RestartPolicy

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["SupervisedContainer", "SupervisedTask"]


class SupervisedTask(Process):
    """Task's base: its start, kill and delete tell the supervisor."""

    async def start(self) -> None:
        """Start the process (see :meth:`Process.start`). A supervised
        container's task is watched from here on, and a stop of the caller's
        is forgotten."""
        await super().start()
        if not self._exec_id:
            state.task_started(self._session, self)

    async def kill(self, signal: int = _signal.SIGTERM, *, all: bool = False) -> None:
        """Send ``signal`` (see :meth:`Process.kill`). For a supervised
        container, the exit that follows is a stop by the caller: no
        failure, and no restart (``docs/supervision.md``)."""
        check_signal(signal, self.container.id, self.id)  # a refused call marks nothing
        state.caller_stop(self._session, self.container.id)
        await super().kill(signal, all=all)

    async def delete(self, *, force: bool = False) -> ExitStatus:
        """Delete the task (see :meth:`Process.delete`); with ``force``, a
        stop by the caller, as :meth:`kill`."""
        if force:
            state.caller_stop(self._session, self.container.id)
        return await super().delete(force=force)

    def health(self) -> Health:
        """The task's health: ``status`` (``"starting"``, ``"healthy"``,
        ``"unhealthy"``, or ``"none"`` without a health check), the failing
        streak and the last 5 probe results (see ``docs/supervision.md``)."""
        return state.health_of(self._session, self.container.id)

    async def wait_healthy(self, timeout: float | None = None) -> Health:  # noqa: ASYNC109
        """Until the health check says healthy; the health then.

        Raises:
            DeadlineExceeded: not healthy within ``timeout`` seconds.
            FailedPrecondition: the container turned unhealthy, has no health
                check, or its checks run in another client of the state
                directory (the one that holds the supervision lock).
        """
        return await state.wait_healthy(self._session, self.container.id, timeout)


class SupervisedContainer:
    """Container's base: its restart policy and what it did, read back."""

    _session: Session
    id: str
    _live: Any

    async def _reloaded_task(self, stale: Any) -> Any:
        # A start whose answer was lost, and containerd says it started: the
        # object that did not see it is replaced by one loaded as it is now.
        self._live.drop_task(stale)
        return await self.task()  # type: ignore[attr-defined]

    def _note_task_made(
        self,
        stdin: bool,
        terminal: bool,
        log_path: Any,
        output: str,
        log_writer: str,
        **log_args: Any,
    ) -> None:
        # How the caller made the task: a restart makes it the same way,
        # log format and rotation included.
        settings: dict[str, Any] = {"stdin": stdin, "terminal": terminal, "output": output}
        settings.update(log_writer=log_writer, log_path=None if log_path is None else str(log_path))
        settings.update(log_args)
        state.task_made(self._session, self, settings)

    def _note_deleting(self) -> None:
        # Before anything is killed: what is deleted is not restarted.
        state.deleting(self._session, self.id)

    def _record(self) -> Any:
        return state.record_for(self._session, self.id)

    @property
    def restart_policy(self) -> RestartPolicy:
        """The container's restart policy (``"no"`` without one)."""
        record = self._record()
        return RestartPolicy() if record is None else record.policy

    @property
    def restart_count(self) -> int:
        """How many times the supervisor made the container's task again."""
        record = self._record()
        return 0 if record is None else int(record.restart_count)

    @property
    def last_exit(self) -> LastExit | None:
        """How the supervised task last ended (code, OOM, time, by the
        caller), or None before its first exit."""
        record = self._record()
        return None if record is None else record.last_exit
