"""The supervisor of one client: restart policies and health checks of the
namespace's supervised containers, enforced by the one client of a state
directory and namespace that holds the lock (see ``docs/supervision.md``).

One watcher per supervised container runs in the supervisor's task group:
it waits for the task's exit (the exactly-once exits of the event
machinery), decides by the policy, waits the back-off and makes the task
again as the caller made it; beside it, while the task runs, its health
probes. Every step that must survive a crash of the application is in the
container's record before it is taken (``domain/_supervised_state``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from .. import _paths, errors
from .._background import Background
from .._log import get_logger
from .._types import ExitStatus, ProcessState
from ..domain import _supervised_state as state
from ..domain._supervised import Health, LastExit
from ..events._types import EventInfo, EventType
from ._health import PROBE_PREFIX, HealthState, clear, last_probe, probe
from ._remake import delete_stopped, discard, new_started
from ._rules import next_delay, should_restart

if TYPE_CHECKING:
    from ..domain._container import Container
    from ..domain._process import Process
    from ..domain._session import Session
    from ..domain._task import Task

__all__ = ["Supervisor"]

_log = get_logger("supervision")

_UNKNOWN = (errors.Unavailable, errors.DeadlineExceeded, errors.Cancelled)


def _now() -> datetime:
    return datetime.now(UTC)


class Supervisor:
    """Installed as the session's hooks; enforces only while it holds the lock."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._background = Background(f"supervisor-supervision:{session.namespace}")
        self._tg: TaskGroup | None = None
        self._lock_fd = -1
        self._records: dict[str, state.Record] = {}
        self._containers: dict[str, Container] = {}
        self._watchers: dict[str, anyio.CancelScope] = {}
        self._health: dict[str, HealthState] = {}
        # Containers whose task the supervisor itself is making or killing:
        # the Container/Task hooks then are not the caller's doing.
        self._acting: set[str] = set()
        self._unhealthy_kill: set[str] = set()
        # Set (and made anew) whenever a task's health state is installed.
        self._health_made = anyio.Event()
        self.closed = False

    # -- the lock and the task group ------------------------------------------

    @property
    def enforcing(self) -> bool:
        """True while this client holds the state directory's lock."""
        return self._lock_fd >= 0

    def _lock_path(self) -> Path:
        return state.record_dir(self._session.state_dir, self._session.namespace).with_suffix(
            ".lock"
        )

    def try_lock(self) -> bool:
        """Take the lock if nobody holds it (never waits)."""
        if self._lock_fd >= 0 or self.closed:
            return self._lock_fd >= 0
        import fcntl

        path = self._lock_path()
        _paths.private_dir(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        _log.info("supervision.enforcing", namespace=self._session.namespace)
        return True

    async def start(self) -> None:
        """Take the lock if free and, holding it, run the task group."""
        if self._tg is not None or self.closed or not self.try_lock():
            return
        await self._background.start(self._body)

    async def _body(self) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self._background.ready()
            await self._background.until_stopped()
            tg.cancel_scope.cancel()

    async def close(self, limit: float) -> None:
        """End every loop (within ``limit``) and let go of the lock."""
        self.closed = True
        await self._background.stop(limit)
        self._tg = None
        fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            os.close(fd)

    def _spawn(
        self,
        cid: str,
        task: Task | None,
        first: Callable[[], Awaitable[Task | None]] | None = None,
    ) -> None:
        if self._tg is None or self.closed:
            return
        old = self._watchers.pop(cid, None)
        if old is not None:
            old.cancel()
        scope = anyio.CancelScope()
        self._watchers[cid] = scope
        self._tg.start_soon(self._watch, cid, task, scope, first)

    async def resume(self, pairs: list[tuple[Container, Task | None]]) -> None:
        """After :meth:`Client.restore`, holding the lock: watch every
        supervised container again, and do what the application's absence
        left undone, once (see ``docs/supervision.md``)."""
        for container, task in pairs:
            cid = container.id
            record = self._records.get(cid)
            if record is None:
                continue
            if task is not None:
                await _remove_left_probes(task)
            state_now = None if task is None else await _state_of(task)
            pending = record.pending
            if pending is not None and task is not None and task.pid != pending.get("pid"):
                self._spawn(cid, task, partial(self._finish, cid, task, state_now, pending))
            elif pending is not None and task is None:
                attempt, delay = int(pending["attempt"]), float(pending["delay"])
                self._spawn(cid, None, partial(self._restart, cid, None, attempt, delay))
            elif (
                record.policy.name == "always"
                and record.caller_stopped
                and state_now in (None, ProcessState.STOPPED)
            ):
                # docker's rule: an `always` container stopped by the caller
                # starts again when its supervisor does.
                record.caller_stopped = False
                attempt = record.restart_count + 1
                self._spawn(cid, None, partial(self._restart, cid, task, attempt, 0.0))
            elif task is not None and state_now is not ProcessState.CREATED:
                self._spawn(cid, task)

    async def _finish(
        self, cid: str, task: Task, state_now: ProcessState | None, pending: dict[str, Any]
    ) -> Task | None:
        """A restart an earlier run made but did not record: recorded (and
        reported) now; one it made but did not start is made again."""
        attempt, delay = int(pending["attempt"]), float(pending["delay"])
        _log.info("supervision.resume_restart", container_id=cid, attempt=attempt, state=state_now)
        if state_now is ProcessState.CREATED or state_now is None:
            # Made and never started, or gone: made (again) now.
            if state_now is not None:
                self._acting.add(cid)  # the supervisor's doing, not the caller's
                try:
                    await discard(task)
                finally:
                    self._acting.discard(cid)
            return await self._restart(cid, None, attempt, 0.0)
        record = self._records[cid]
        record.restart_count = attempt
        record.pending = None
        record.started_at = _now()
        self._save(cid, record)
        self._report(EventType.RESTART, EventInfo(cid, cid, task.pid, attempt=attempt, delay=delay))
        return task

    # -- records --------------------------------------------------------------

    def _save(self, cid: str, record: state.Record) -> None:
        try:
            state.write_record(self._session.state_dir, self._session.namespace, cid, record)
        except OSError as exc:
            _log.warning("supervision.record_unwritten", container_id=cid, error=str(exc))

    def register(self, container: Container, record: state.Record) -> None:
        """A container made with a policy or a health check (raises OSError
        if its record cannot be written)."""
        state.write_record(self._session.state_dir, self._session.namespace, container.id, record)
        self._records[container.id] = record
        self._containers[container.id] = container

    def watching(self, container_id: str) -> bool:
        """True while a watcher of this client looks after the container."""
        return container_id in self._watchers

    def adopt(self, container: Container, record: state.Record) -> None:
        self._records[container.id] = record
        self._containers[container.id] = container

    # -- hooks (state.Hooks) --------------------------------------------------

    def task_made(self, container: Any, settings: dict[str, Any]) -> None:
        record = self._records.get(container.id)
        if record is None or container.id in self._acting:
            return
        self._containers[container.id] = container
        if record.settings != settings:
            record.settings = settings
            self._save(container.id, record)

    def task_started(self, task: Any) -> None:
        cid = task.container.id
        record = self._records.get(cid)
        if record is None or cid in self._acting:
            return
        # The caller started it: a stop of the caller's is undone, and the
        # record follows the new task.
        self._containers[cid] = task.container
        record.caller_stopped = False
        record.started_at = _now()
        record.pending = None
        self._save(cid, record)
        self._spawn(cid, task)

    def caller_stop(self, container_id: str) -> None:
        record = self._records.get(container_id)
        if record is None or container_id in self._acting:
            return
        record.caller_stopped = True
        self._save(container_id, record)

    def deleting(self, container_id: str) -> None:
        scope = self._watchers.pop(container_id, None)
        if scope is not None:
            scope.cancel()
        self._records.pop(container_id, None)
        self._containers.pop(container_id, None)
        self._health.pop(container_id, None)
        state.remove_record(self._session.state_dir, self._session.namespace, container_id)

    def health(self, container_id: str) -> Health | None:
        hs = self._health.get(container_id)
        if hs is not None:
            return hs.health()
        record = self._records.get(container_id)
        if record is None or record.healthcheck is None or not self.enforcing:
            return None
        return Health("starting")  # its first probe is not due yet

    async def wait_healthy(self, container_id: str) -> Health:
        while True:
            hs = self._health.get(container_id)
            if hs is not None and hs.status == "healthy":
                return hs.health()
            if hs is not None and hs.status == "unhealthy":
                raise errors.FailedPrecondition(
                    f"the container is unhealthy: {last_probe(hs.health())}",
                    container_id=container_id,
                )
            if container_id not in self._records:
                raise errors.FailedPrecondition(
                    "the container is no longer supervised", container_id=container_id
                )
            if hs is not None:
                await hs.changed.wait()
            else:
                # Between two tasks: the next one's state comes with its start.
                await self._health_made.wait()

    # -- the watcher ----------------------------------------------------------

    async def _watch(
        self,
        cid: str,
        task: Task | None,
        scope: anyio.CancelScope,
        first: Callable[[], Awaitable[Task | None]] | None = None,
    ) -> None:
        with scope:
            try:
                if first is not None:
                    task = await first()
                while task is not None and not self.closed:
                    status = await self._until_exit(cid, task)
                    task = await self._after_exit(cid, task, status)
            except errors.Closed:
                pass
            except Exception as exc:
                # One container's supervision ends; the others go on.
                _log.error("supervision.failed", container_id=cid, error=str(exc), exc_info=exc)
        if self._watchers.get(cid) is scope:
            del self._watchers[cid]

    async def _until_exit(self, cid: str, task: Task) -> ExitStatus:
        record = self._records.get(cid)
        check = record.healthcheck if record is not None else None
        if check is None:
            return await task.wait()
        hs = HealthState(check)
        self._health[cid] = hs
        self._health_made.set()
        self._health_made = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._probe_loop, cid, task, hs)
            status = await task.wait()
            tg.cancel_scope.cancel()
        return status

    async def _probe_loop(self, cid: str, task: Task, hs: HealthState) -> None:
        cleanup = self._session.timeouts.cleanup
        leftovers: list[Process] = []
        try:
            await self._probes(cid, task, hs, cleanup, leftovers)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(cleanup):
                await clear(leftovers)

    async def _probes(
        self, cid: str, task: Task, hs: HealthState, cleanup: float, leftovers: list[Process]
    ) -> None:
        while True:
            await anyio.sleep(hs.check.interval)
            await clear(leftovers, task)
            result = await probe(task, hs.check, cleanup, leftovers)
            if hs.add(result):
                self._health_changed(cid, hs)
                if hs.status == "unhealthy" and hs.check.restart_unhealthy:
                    await self._kill_unhealthy(cid, task)
                    return

    def _health_changed(self, cid: str, hs: HealthState) -> None:
        _log.info("supervision.health", container_id=cid, status=hs.status)
        record = self._records.get(cid)
        if record is not None:
            record.health = hs.health()
            self._save(cid, record)
        self._report(EventType.HEALTH, EventInfo(cid, cid, health=hs.status))

    async def _kill_unhealthy(self, cid: str, task: Task) -> None:
        self._unhealthy_kill.add(cid)
        self._acting.add(cid)
        try:
            with contextlib.suppress(errors.NotFound, errors.FailedPrecondition):
                await task.kill(9, all=True)
        finally:
            self._acting.discard(cid)

    def _report(self, kind: EventType, info: EventInfo) -> None:
        self._session.monitor.report(kind, info)

    async def _after_exit(self, cid: str, task: Task, status: ExitStatus) -> Task | None:
        """Decide on one exit; the new task if the container was restarted."""
        record = self._records.get(cid)
        if record is None:
            return None
        identity = [task.pid, None if status.exited_at is None else status.exited_at.isoformat()]
        pending = record.pending
        if pending is not None and pending.get("pid") == task.pid:
            # Decided by an earlier run of the application, not yet done.
            return await self._restart(cid, task, int(pending["attempt"]), float(pending["delay"]))
        if record.handled == identity:
            return None  # decided before (an exit found again): not twice
        unhealthy = cid in self._unhealthy_kill
        self._unhealthy_kill.discard(cid)
        by_caller = record.caller_stopped and not unhealthy
        record.last_exit = LastExit(
            status.exit_code, status.oom_killed, status.exited_at, by_caller, unhealthy
        )
        record.handled = identity
        code = status.exit_code or (1 if unhealthy else 0)
        if not should_restart(
            record.policy, code, by_caller=by_caller, restart_count=record.restart_count
        ):
            record.pending = None
            self._save(cid, record)
            return None
        uptime = 0.0
        if record.started_at is not None and status.exited_at is not None:
            uptime = (status.exited_at - record.started_at).total_seconds()
        record.delay = next_delay(record.policy, record.delay, uptime)
        attempt = record.restart_count + 1
        record.pending = {"attempt": attempt, "delay": record.delay, "pid": task.pid}
        self._save(cid, record)
        return await self._restart(cid, task, attempt, record.delay)

    async def _restart(self, cid: str, old: Task | None, attempt: int, delay: float) -> Task | None:
        await anyio.sleep(delay)
        record = self._records.get(cid)
        container = self._containers.get(cid)
        if record is None or container is None:
            return None
        if record.caller_stopped and not (record.last_exit and record.last_exit.unhealthy):
            # Stopped by the caller during the back-off: not restarted.
            record.pending = None
            self._save(cid, record)
            return None
        self._acting.add(cid)
        try:
            if old is not None:
                await delete_stopped(old)
            new = await new_started(container, record.settings)
        finally:
            self._acting.discard(cid)
        record.restart_count = attempt
        record.pending = None
        record.started_at = _now()
        self._save(cid, record)
        _log.info("supervision.restart", container_id=cid, attempt=attempt, delay=delay)
        self._report(EventType.RESTART, EventInfo(cid, cid, new.pid, attempt=attempt, delay=delay))
        return new


async def _state_of(task: Task) -> ProcessState | None:
    try:
        return await task.status()
    except errors.NotFound:
        return None


async def _remove_left_probes(task: Task) -> None:
    # Probes of a run that died mid-probe: nobody else would delete them.
    for exec_id, proc in task.execs.items():
        if exec_id.startswith(PROBE_PREFIX):
            try:
                await proc.delete(force=True)
            except errors.NotFound:
                pass
            except errors.SupervisorError as exc:
                _log.warning("supervision.probe_left", process_id=exec_id, error=str(exc))
