"""A process in a container: a task's init process or an exec."""

from __future__ import annotations

import signal as _signal
from typing import TYPE_CHECKING

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream

from . import errors
from ._log import get_logger
from ._types import ExitStatus

if TYPE_CHECKING:
    from ._container import Container
    from .events._tracker import Slot
    from .fifo import StdioSet

__all__ = ["ExitStatus", "Process"]

_log = get_logger("process")


class Process:
    """One process of a container's task, kept by the caller.

    The init process is the :class:`~supervisor.Task` itself; an exec is what
    :meth:`Task.exec` returns.  The object remembers what it learnt from
    containerd (pid, stdio, whether it started), so no call re-fetches state.

    Attributes:
        id: the exec id, or the container id for the init process.
        container: the :class:`~supervisor.Container` this process belongs to.
    """

    def __init__(
        self,
        container: Container,
        process_id: str,
        *,
        pid: int,
        fifos: StdioSet | None,
        slot: Slot | None,
    ) -> None:
        self.container = container
        self.id = process_id
        self._exec_id = "" if process_id == container.id else process_id
        self._pid = pid
        self._fifos = fifos
        self._slot = slot
        self._started = False
        self._stdin_close_pending = False
        self._deleted = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.container.id}/{self.id} pid={self._pid}>"

    # -- identity and stdio ---------------------------------------------------

    @property
    def pid(self) -> int:
        """The host pid (0 for an exec that has not started yet)."""
        return self._pid

    @property
    def stdout(self) -> ByteReceiveStream:
        """The process's standard output (with a terminal: the terminal's output).

        Ends (``anyio.EndOfStream``) once the process and its children closed it.
        Read it: a process whose output nobody reads blocks once the pipe is full.

        Raises:
            FailedPrecondition: the process was loaded without attaching its stdio.
        """
        return self._fifos_or_raise().stdout

    @property
    def stderr(self) -> ByteReceiveStream | None:
        """The process's standard error; ``None`` with a terminal (it goes to stdout)."""
        return self._fifos_or_raise().stderr

    @property
    def stdin(self) -> ByteSendStream | None:
        """The process's standard input, if it was asked for (``stdin=True``)."""
        return self._fifos_or_raise().stdin

    def _fifos_or_raise(self) -> StdioSet:
        if self._fifos is None:
            raise errors.FailedPrecondition(
                "no stdio attached to this process",
                container_id=self.container.id,
                process_id=self.id,
            )
        return self._fifos

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Start the process.

        Raises:
            NotFound: the process (or its task) is gone.
            FailedPrecondition: it already started.
        """
        client = self.container._client
        cid = self.container.id
        if not self._exec_id and client._tracker is not None:
            # Before the call: an OOM of the new instance may be reported
            # before Start even returns, and must not be wiped afterwards.
            client._tracker.reset_oom(cid)
        pid = await client._transport.start(cid, self._exec_id)
        self._pid = pid
        self._started = True
        tracker = client._tracker
        if tracker is not None:
            self._slot = tracker.started(cid, self.id, pid)
        if self._fifos is not None:
            self._fifos.started()
        _log.info("process.start", container_id=cid, process_id=self.id, pid=pid)
        if self._stdin_close_pending:
            self._stdin_close_pending = False
            await client._transport.close_stdin(cid, self._exec_id)

    async def kill(self, signal: int = _signal.SIGTERM, *, all: bool = False) -> None:
        """Send ``signal`` to the process (with ``all=True``: to every process of the task).

        Raises:
            NotFound: the process is gone.
        """
        await self.container._client._transport.kill(
            self.container.id, self._exec_id, int(signal), all
        )
        _log.debug(
            "process.kill",
            container_id=self.container.id,
            process_id=self.id,
            signal=int(signal),
            all=all,
        )

    async def wait(self) -> ExitStatus:
        """Until the process exits; its :class:`ExitStatus`.

        Resolved from the client's event stream, so any number of waiters cost
        no extra connection or call.  Cancelling a wait leaves the process, and
        later waits on it, unaffected.
        """
        slot = self._slot
        if slot is not None:
            return await slot.wait()
        client = self.container._client
        status = await client._transport.wait(self.container.id, self._exec_id)
        return status

    async def resize(self, width: int, height: int) -> None:
        """Resize the process's terminal (only with ``terminal=True``)."""
        if width <= 0 or height <= 0:
            raise errors.InvalidArgument(
                f"bad terminal size {width}x{height}",
                container_id=self.container.id,
                process_id=self.id,
            )
        await self.container._client._transport.resize(
            self.container.id, self._exec_id, width, height
        )

    async def close_stdin(self) -> None:
        """Close the process's standard input: it reads end-of-file.

        Safe before :meth:`start`: the shim is told once the process exists
        (telling it earlier would leave an exec hanging).
        """
        if self._fifos is not None and self._fifos.stdin is not None:
            await self._fifos.stdin.aclose()
        if self._started:
            await self.container._client._transport.close_stdin(self.container.id, self._exec_id)
        else:
            self._stdin_close_pending = True

    async def delete(self, *, force: bool = False) -> ExitStatus:
        """Delete the (stopped) process from containerd and release its stdio.

        With ``force=True`` a running (or created, never started) process is
        killed with SIGKILL first, so the call always leaves nothing behind.

        Returns:
            The process's exit status.

        Raises:
            FailedPrecondition: the process is still running (without ``force``).
            NotFound: it was deleted already (its stdio is released anyway).
        """
        if force:
            await self._force_stop()
        client = self.container._client
        cid = self.container.id
        # Read before the call: containerd's TaskDelete event can reach the
        # tracker (and drop the container's state) before the call returns.
        oom = self._oom_killed()
        # Shielded (each RPC has its deadline): a delete cancelled after
        # containerd acted would otherwise keep the stdio fds and FIFOs of a
        # process that no longer exists. A cancellation lands right after.
        with anyio.CancelScope(shield=True):
            try:
                if self._exec_id:
                    status = await client._transport.delete_process(cid, self._exec_id)
                else:
                    status = await client._transport.delete_task(cid)
            except errors.NotFound:
                self._release()
                raise
            self._release()
        if not oom and self._slot is not None and self._slot.status is not None:
            oom = self._slot.status.oom_killed
        _log.info(
            "process.delete", container_id=cid, process_id=self.id, exit_code=status.exit_code
        )
        return ExitStatus(status.exit_code, status.exited_at, oom)

    def _oom_killed(self) -> bool:
        if self._exec_id:
            return False
        if self._slot is not None and self._slot.status is not None:
            return self._slot.status.oom_killed
        tracker = self.container._client._tracker
        return tracker is not None and tracker.oom_killed(self.container.id)

    async def _force_stop(self) -> None:
        transport = self.container._client._transport
        cid = self.container.id
        timeout = self.container._client._timeouts.cleanup
        try:
            await transport.kill(cid, self._exec_id, _signal.SIGKILL, not self._exec_id)
        except (errors.NotFound, errors.FailedPrecondition):
            return
        with anyio.move_on_after(timeout):
            await self.wait()

    def _release(self) -> None:
        if self._deleted:
            return
        self._deleted = True
        if self._fifos is not None:
            self._fifos.remove()
        client = self.container._client
        if client._tracker is not None:
            client._tracker.forget(self.container.id, self.id)
        if client._ledger is not None:
            client._ledger.forget(self.container.id, self.id)
        if not self._exec_id:
            self.container._task_deleted(self)
