"""A process in a container: a task's init process or an exec."""

from __future__ import annotations

import signal as _signal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream

from .. import errors
from .._cleanup import shielded
from .._log import get_logger
from .._types import ExitStatus, ProcessState, StdioPaths
from ..fifo import StdioSet
from ..fifo._attach import remove_stdio_files
from ..fifo._log_pump import LogPump
from ..fifo._logger import LoggerStdio, logger_stdio_for
from ._lines import aiter_lines_method
from ._output import LogWriter, Output
from ._pipes import check_terminal_size, exchange
from ._stdin import process_input
from ._stop import asked_exit, check_signal, failed_start_status, force_stop
from ._tty_input import end_input, ends_by_key

if TYPE_CHECKING:
    from ..events._tracker import Slot
    from ._container_ref import ContainerRef
    from ._live import LiveProcesses
    from ._session import Session

__all__ = ["ExitStatus", "LogWriter", "Output", "Process"]

_log = get_logger("process")


class Process:
    """One process of a container's task, kept by the caller.

    The init process is the :class:`~supervisor.Task` itself; an exec is what
    :meth:`Task.exec` returns.  The object remembers what it learnt from
    containerd (pid, stdio, whether it started), so no call re-fetches state.

    Attributes:
        id: the exec id, or the container id for the init process.
        container: the :class:`~supervisor.Container` this process belongs to.
        log_path: the file the shim writes the process's output to, if it
            was created with one (it then has no stdout/stderr streams).
    """

    def __init__(
        self,
        container: ContainerRef,
        session: Session,
        process_id: str,
        *,
        pid: int,
        fifos: StdioSet | None,
        slot: Slot,
        log_path: Path | None = None,
        detached_stdio: StdioPaths | None = None,
        live: LiveProcesses[Any, Process],
        started: bool = False,
    ) -> None:
        self.container = container
        self._live = live
        self.log_path = log_path
        self._session = session
        self.id = process_id
        self._exec_id = "" if process_id == container.id else process_id
        self._pid = pid
        self._fifos = fifos
        # Loaded without attaching: containerd's record of its stdio, to
        # attach later or to remove our files with the process.
        self._detached_stdio = detached_stdio
        self._slot = slot
        self._started = started
        self._start_refused = False
        self._stdin_close_pending = False
        self._deleted = False
        # A logged process's FIFOs are copied into its file by the pump; the
        # caller gets no streams of it.
        self._log: LogPump | LoggerStdio | None = None
        if fifos is not None:
            session.track_stdio(container.id, process_id, fifos)
            if isinstance(fifos, (LogPump, LoggerStdio)):
                self._log, self._fifos = fifos, None
                self.log_path = fifos.log_path
        elif detached_stdio is not None:
            # A shim-run logger needs nothing opened to be asked whether it
            # has written everything: even a process only looked at can.
            logger = logger_stdio_for(
                container.bundle_dir,
                process_id,
                init=process_id == container.id,
                uri=detached_stdio.stdout,
                terminal=detached_stdio.terminal,
            )
            if logger is not None:
                self._log, self.log_path = logger, logger.log_path
        live.on_attach(self, self._attach_detached)

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
        Closed with the client (``anyio.ClosedResourceError``; line iterators
        end): what is unread stays in the FIFO for the next client.

        Raises:
            FailedPrecondition: the process was loaded without attaching its stdio.
        """
        return self._fifos_or_raise().stdout

    @property
    def stderr(self) -> ByteReceiveStream | None:
        """Standard error as :attr:`stdout`; ``None`` with a terminal (it goes to stdout)."""
        return self._fifos_or_raise().stderr

    @property
    def stdin(self) -> ByteSendStream | None:
        """The process's standard input, if it was asked for (``stdin=True``);
        a send raises ``errors.StdinNotRead`` (a ``FailedPrecondition`` and an
        ``anyio.BrokenResourceError``) when the process has exited and the pipe
        stays full, also one already waiting on it."""
        return process_input(self, self._fifos_or_raise().stdin)

    def _attach_detached(self) -> None:
        """Reopen the stdio of a process loaded without attaching (if it is
        still ours and there)."""
        if self._fifos is not None or self._detached_stdio is None or self._deleted:
            return
        container = self.container
        fifos = self._session.reopen_stdio(
            container.id, self.id, container.bundle_dir, self._detached_stdio
        )
        if fifos is not None:
            self._detached_stdio = None
            self._session.track_stdio(self.container.id, self.id, fifos)
            if isinstance(fifos, (LogPump, LoggerStdio)):
                self._log, self.log_path = fifos, fifos.log_path
            else:
                self._fifos = fifos

    def _fifos_or_raise(self) -> StdioSet:
        if self._fifos is None:
            if self.log_path is not None:
                where = f"its output goes to {self.log_path}"
            elif self._detached_stdio is not None:
                where = "the process was loaded with attach=False"
            else:
                where = "no stdio attached to this process"
            raise errors.FailedPrecondition(
                where, container_id=self.container.id, process_id=self.id
            )
        return self._fifos

    async def communicate(self, input: bytes | None = None) -> tuple[bytes, bytes]:
        """Send ``input`` (then end-of-file) to stdin, read stdout and stderr
        to their end at once (so neither pipe can fill and block the
        process), and wait for the exit: asyncio's ``communicate``.

        Call it after :meth:`start`. With a terminal, everything arrives on
        stdout, the second item is empty, and the input ends with the
        terminal's EOF key (see :meth:`close_stdin`). Input the process
        leaves unread when it exits is dropped.

        Returns:
            ``(stdout, stderr)``.

        Raises:
            FailedPrecondition: the process has no pipes (a ``log_path`` or
                ``output="null"``), or ``input`` without ``stdin=True``.
        """
        fifos = self._fifos_or_raise()
        if input is not None and fifos.stdin is None:
            raise errors.FailedPrecondition(
                "input given but the process has no stdin (create it with stdin=True)",
                container_id=self.container.id,
                process_id=self.id,
            )
        return await exchange(fifos, input, self.close_stdin, self.wait)

    aiter_lines = aiter_lines_method

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Start the process.

        Cancelling a start leaves the process either not started (and
        :meth:`start` may be called again) or started with working stdio.
        An exec whose start fails is deleted with its stdio (a created exec
        that can never run would only leak).

        Raises:
            NotFound: the process (or its task) is gone.
            FailedPrecondition: it already started.
            CommandNotFound: its executable does not exist in the container.
            CommandNotExecutable: its executable cannot be run.
        """
        session = self._session
        transport = session.transport
        cid = self.container.id
        self._check_startable()
        if not self._exec_id:
            # Before the call: an OOM of the new instance may be reported
            # before Start even returns, and must not be wiped afterwards.
            session.tracker.reset_oom(cid)
        # Shielded: once containerd may have started the process, our side
        # must follow (pid, the slot, our FIFO ends), or its stdout would
        # never reach end-of-file.
        with shielded(session.timeouts.shield, "starting the process"):
            try:
                pid = await transport.start(cid, self._exec_id)
            except (errors.Unavailable, errors.DeadlineExceeded, errors.Cancelled):
                raise  # the outcome is unknown: the exec may well be running
            except errors.SupervisorError as exc:
                if self._exec_id:
                    self._start_refused = True
                    if not self._deleted:
                        await self._discard_failed_exec(exc)
                raise
            self._pid = pid
            self._started = True
            self._slot = session.tracker.started(cid, self.id, pid)
            self._slot.owned = True
            if self._fifos is not None:
                self._fifos.started()
            if self._log is not None:
                self._log.started()
            _log.debug("process.start", container_id=cid, process_id=self.id, pid=pid)
            if self._stdin_close_pending:
                self._stdin_close_pending = False
                await end_input(self._fifos, partial(transport.close_stdin, cid, self._exec_id))

    def _check_startable(self) -> None:
        if self._started:
            raise errors.FailedPrecondition(
                "the process was started already (it is running or stopped)",
                container_id=self.container.id,
                process_id=self.id,
            )
        if self._start_refused:
            # containerd 1.6's shim panics when an exec whose start failed is
            # started again and then exits, and the whole task is lost.
            raise errors.FailedPrecondition(
                "the process's start failed already; delete it and make a new one",
                container_id=self.container.id,
                process_id=self.id,
            )

    async def _discard_failed_exec(self, error: errors.SupervisorError) -> None:
        with anyio.move_on_after(self._session.timeouts.cleanup) as scope:
            try:
                await self._session.transport.delete_process(self.container.id, self._exec_id)
            except errors.NotFound:
                pass
            except errors.SupervisorError as exc:
                # Still in containerd: keep our side, so delete() can finish it.
                _log.warning(
                    "process.discard_failed",
                    container_id=self.container.id,
                    process_id=self.id,
                    error=str(exc),
                )
                return
        if scope.cancelled_caught:
            return  # not known to be gone: delete() can still finish it
        self._release(failed_start_status(error))

    async def status(self) -> ProcessState:
        """containerd's view of the process now: created, running, paused, stopped.

        Raises:
            NotFound: the process is gone.
        """
        record = await self._session.transport.get_task(self.container.id, self._exec_id)
        return record.state

    async def kill(self, signal: int = _signal.SIGTERM, *, all: bool = False) -> None:
        """Send ``signal`` to the process (with ``all=True``: to every process of the task).

        Raises:
            InvalidArgument: not a signal number (1 to 64).
            NotFound: the process is gone.
        """
        cid = self.container.id
        number = check_signal(signal, cid, self.id)
        await self._session.transport.kill(cid, self._exec_id, number, bool(all))
        _log.debug("process.kill", container_id=cid, process_id=self.id, signal=number, all=all)

    async def wait(self) -> ExitStatus:
        """Until the process exits; its :class:`ExitStatus`.

        Resolved from the client's event stream, so any number of waiters cost
        no extra connection or call.  Cancelling a wait leaves the process, and
        later waits on it, unaffected.  A process deleted without ever
        running resolves its waiters with the status containerd gave.

        Raises:
            Closed: the client closed before the exit was known.
        """
        status = await self._wait_exit()
        if self._log is not None and self._started:
            # Every byte the process wrote is in its file when wait() returns.
            await self._log.wait_drained(self._session.timeouts.output_drain)
        return status

    async def _wait_exit(self) -> ExitStatus:
        session = self._session
        if session.events or self._slot.status is not None or self._deleted:
            return await self._slot.wait()
        return await asked_exit(session, self.container.id, self.id, self._pid, self._slot)

    async def resize(self, width: int, height: int) -> None:
        """Resize the process's terminal (only with ``terminal=True``).

        Raises:
            InvalidArgument: not two ints in 1..65535.
        """
        check_terminal_size(width, height, self.container.id, self.id)
        await self._session.transport.resize(
            self.container.id, self._exec_id, int(width), int(height)
        )

    async def close_stdin(self) -> None:
        """Close the process's standard input: it reads end-of-file.

        Safe before :meth:`start`: the shim is told once the process exists
        (telling it earlier would leave an exec hanging). On a terminal it
        types the terminal's EOF key (^D) after what was sent instead, as
        closing would hang the terminal up and lose output.
        """
        transport, cid = self._session.transport, self.container.id
        typed = ends_by_key(self._fifos)  # a terminal's end of input: see _tty_input
        if self._fifos is not None and self._fifos.stdin is not None and not typed:
            await self._fifos.stdin.aclose()
        if self._started:
            close_io = partial(transport.close_stdin, cid, self._exec_id)
            await end_input(self._fifos, close_io, exited=self._wait_exit)
        else:
            self._stdin_close_pending = True

    async def delete(self, *, force: bool = False) -> ExitStatus:
        """Delete the (stopped) process from containerd and release its stdio.

        With ``force=True`` a running (or created, never started) process is
        killed with SIGKILL first (the init process: every process of the
        task), so the call always leaves nothing behind. A frozen task holds
        the signal, so a paused task (or one being paused or thawed) is
        thawed until the process has exited, as ``docker rm -f`` does; for
        an exec that means the whole task resumes.

        Returns:
            The process's exit status.

        Raises:
            FailedPrecondition: the process is still running (without ``force``).
            NotFound: it was deleted already (its stdio is released anyway).
        """
        session = self._session
        transport = session.transport
        if force:
            await force_stop(session, self.container.id, self._exec_id, self.wait)
        cid = self.container.id
        # Read before the call: containerd's TaskDelete event can reach the
        # tracker (and drop the container's state) before the call returns.
        oom = self._oom_killed()
        # Shielded (each RPC has its deadline): a delete cancelled after
        # containerd acted would otherwise keep the stdio fds and FIFOs of a
        # process that no longer exists. A cancellation lands right after.
        with shielded(session.timeouts.shield, "deleting the process"):
            try:
                if self._exec_id:
                    status = await transport.delete_process(cid, self._exec_id)
                else:
                    status = await transport.delete_task(cid)
            except errors.NotFound:
                self._release(ExitStatus(255))
                raise
            if self._log is not None and self._started:
                # The shim has let go of the FIFOs: what it still held reaches
                # the file before our ends close. (A process that never
                # started wrote nothing; our own keep-alive ends would hold
                # its FIFOs open to the bound.)
                await self._log.wait_drained(session.timeouts.output_drain)
            self._release(status)
        if not oom and self._slot.status is not None:
            oom = self._slot.status.oom_killed
        _log.debug(
            "process.delete", container_id=cid, process_id=self.id, exit_code=status.exit_code
        )
        return ExitStatus(status.exit_code, status.exited_at, oom)

    def _oom_killed(self) -> bool:
        if self._exec_id:
            return False
        if self._slot.status is not None:
            return self._slot.status.oom_killed
        return self._session.tracker.oom_killed(self.container.id)

    def _release(self, status: ExitStatus) -> None:
        if self._deleted:
            return
        self._deleted = True
        session = self._session
        cid = self.container.id
        if self._fifos is not None:
            self._fifos.remove()
        if self._log is not None:
            self._log.remove()
        if self._detached_stdio is not None:
            remove_stdio_files(
                self.container.bundle_dir,
                self.id,
                init=not self._exec_id,
                stdio=self._detached_stdio,
            )
        session.release_stdio(cid, self.id)
        if self._started and self._pid:
            if self._slot.status is None:
                # Deleted before its EXIT came off the stream (containerd
                # down, or the stream behind): this is its exit, reported once.
                session.monitor.found_exited(
                    cid, self.id, self._pid, status.exit_code, status.exited_at
                )
        else:
            # Waiters of a process that never ran would otherwise wait forever.
            session.tracker.resolve_deleted(cid, self.id, status)
        session.tracker.forget(cid, self.id)
        session.ledger.forget(cid, self.id)
        if self._exec_id:
            self._live.drop_exec(self.id, self)
        else:
            self._live.drop_task(self)
