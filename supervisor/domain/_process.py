"""A process in a container: a task's init process or an exec."""

from __future__ import annotations

import contextlib
import os
import signal as _signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream

from .. import _platform, errors
from .._cleanup import shielded, task_group
from .._log import get_logger
from .._timeouts import backoff
from .._types import ExitStatus, ProcessState, StdioPaths
from ..fifo import StdioSet, open_stdio
from ..fifo._attach import stdio_files
from ..fifo._log_pump import LogPump, enlarge_pipe, open_log_file, write_log_record
from ..fifo._logger import LoggerStdio, logger_stdio_for, make_logger_stdio
from ..fifo._names import new_stdio_name

if TYPE_CHECKING:
    from ..events._tracker import Slot
    from ._container import Container
    from ._session import Session

__all__ = [
    "ExitStatus",
    "LogWriter",
    "Output",
    "Process",
    "checked_log_writer",
    "checked_output",
    "create_process",
]

Output = Literal["pipe", "null"]
"""Where a process's output goes when no ``log_path`` is given: ``"pipe"``
(the caller reads :attr:`Process.stdout`) or ``"null"`` (discarded)."""

LogWriter = Literal["client", "logger"]
"""Who appends a process's output to its ``log_path``: ``"client"`` (this
client copies it from FIFOs) or ``"logger"`` (a logger process that
containerd's shim runs beside the process); see ``docs/api.md``."""

_log = get_logger("process")

# Linux signal numbers run from 1 to SIGRTMAX (64); containerd takes a uint32
# and would silently truncate anything larger.
_MAX_SIGNAL = 64
# Terminal sizes are unsigned 16-bit in the kernel's winsize.
_MAX_TERMINAL = 0xFFFF


def stdio_paths(fifos: StdioSet) -> StdioPaths:
    return StdioPaths(
        stdin=fifos.stdin_path or "",
        stdout=fifos.stdout_path,
        stderr=fifos.stderr_path or "",
        terminal=fifos.terminal,
    )


def checked_output(
    log_path: str | os.PathLike[str] | None,
    output: object,
    *,
    stdin: bool,
    container_id: str,
    process_id: str,
) -> Path | None:
    """Check where output should go; the log file's path if there is one."""
    if output not in ("pipe", "null"):
        raise errors.InvalidArgument(
            f"output must be 'pipe' or 'null', not {output!r}",
            container_id=container_id,
            process_id=process_id,
        )
    if log_path is None:
        if output == "null" and stdin:
            raise errors.InvalidArgument(
                "stdin=True cannot be combined with output='null'",
                container_id=container_id,
                process_id=process_id,
            )
        return None
    try:
        path = Path(log_path)
    except TypeError:
        raise errors.InvalidArgument(
            "log_path must be a path", container_id=container_id, process_id=process_id
        ) from None
    text = str(path)
    if not path.is_absolute() or "\0" in text or not text.isprintable():
        raise errors.InvalidArgument(
            f"log_path must be an absolute path, not {text!r}",
            container_id=container_id,
            process_id=process_id,
        )
    if not path.parent.is_dir():
        raise errors.InvalidArgument(
            f"log_path's directory {path.parent} does not exist",
            container_id=container_id,
            process_id=process_id,
        )
    if stdin:
        raise errors.InvalidArgument(
            "stdin=True cannot be combined with log_path (the output has no pipe)",
            container_id=container_id,
            process_id=process_id,
        )
    return path


def checked_log_writer(
    log_writer: object, log_path: Path | None, *, container_id: str, process_id: str
) -> LogWriter:
    """Check the ``log_writer`` choice (it needs a ``log_path`` when it is
    not the default)."""
    if log_writer not in ("client", "logger"):
        raise errors.InvalidArgument(
            f"log_writer must be 'client' or 'logger', not {log_writer!r}",
            container_id=container_id,
            process_id=process_id,
        )
    if log_writer == "logger" and log_path is None:
        raise errors.InvalidArgument(
            "log_writer='logger' needs a log_path",
            container_id=container_id,
            process_id=process_id,
        )
    if log_writer == "logger" and _platform.PLATFORM.stdio != "fifo":
        raise errors.InvalidArgument(
            "log_writer='logger' is not available on this platform",
            container_id=container_id,
            process_id=process_id,
        )
    return "logger" if log_writer == "logger" else "client"


def _file_stdio(path: Path | None, *, terminal: bool) -> StdioPaths:
    # The shim itself appends stdout and stderr to a file:// URI's file: only
    # for discarded output (/dev/null), and for log files where the platform
    # has no FIFOs to pump (see supervisor.fifo._log_pump for why not).
    uri = (path or Path(os.devnull)).as_uri()
    return StdioPaths(stdout=uri, stderr=uri, terminal=terminal)


def _open_log(path: Path, container_id: str, process_id: str) -> tuple[int, bool]:
    """The log file open for appending, and whether this call made it."""
    try:
        fd = os.open(
            path,
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            | getattr(os, "O_CLOEXEC", 0),
            0o644,
        )
    except FileExistsError:
        pass
    except OSError as exc:
        raise errors.InvalidArgument(
            f"cannot create log_path {path}: {exc.strerror}",
            container_id=container_id,
            process_id=process_id,
        ) from exc
    else:
        return fd, True
    try:
        return open_log_file(path), False
    except errors.InvalidArgument as exc:
        raise errors.InvalidArgument(
            str(exc), container_id=container_id, process_id=process_id
        ) from exc.__cause__


async def _logged_stdio(
    session: Session,
    bundle_dir: Path,
    container_id: str,
    process_id: str,
    *,
    terminal: bool,
    log_path: Path,
    log_writer: LogWriter,
) -> LogPump | LoggerStdio:
    """FIFOs whose output the library appends to ``log_path``, and the
    record that lets a later application carry on copying; on failure
    nothing of it is left (a log file this call made is removed too)."""
    init = process_id == container_id
    name = new_stdio_name(process_id, init=init)
    if log_writer == "logger":
        return _logger_stdio(
            session, bundle_dir, name, log_path, container_id, process_id, terminal
        )
    log_fd, made = _open_log(log_path, container_id, process_id)
    fifos: StdioSet | None = None
    record = bundle_dir / f"{name}-log"
    try:
        fifos = await open_stdio(bundle_dir, name, stdin=False, terminal=terminal)
        for stream in (fifos.stdout, fifos.stderr):
            fileno = getattr(stream, "fileno", -1)
            if isinstance(fileno, int) and fileno >= 0:
                enlarge_pipe(fileno)
        try:
            write_log_record(record, log_path)
        except OSError as exc:
            raise errors.Unknown(
                f"cannot record the log file in {bundle_dir}: {exc}",
                container_id=container_id,
                process_id=process_id,
            ) from exc
        return LogPump(
            fifos,
            log_path,
            log_fd,
            record=record,
            container_id=container_id,
            process_id=process_id,
            made_file=made,
        )
    except BaseException:
        os.close(log_fd)
        with contextlib.suppress(OSError):
            os.unlink(record)
        if fifos is not None:
            fifos.remove()
        if made:
            with contextlib.suppress(OSError):
                os.unlink(log_path)
        raise


def _logger_stdio(
    session: Session,
    bundle_dir: Path,
    name: str,
    log_path: Path,
    container_id: str,
    process_id: str,
    terminal: bool,
) -> LoggerStdio:
    # The file is made here, as ours (never through a link): the logger,
    # which runs as containerd's user, only ever appends to it.
    fd, made = _open_log(log_path, container_id, process_id)
    os.close(fd)
    try:
        bundle_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        stdio = make_logger_stdio(
            session.state_dir, bundle_dir, name, log_path, terminal=terminal
        )
    except BaseException as exc:
        if made:
            with contextlib.suppress(OSError):
                os.unlink(log_path)
        if isinstance(exc, OSError):
            raise errors.Unknown(
                f"cannot prepare the logger in {bundle_dir}: {exc}",
                container_id=container_id,
                process_id=process_id,
            ) from exc
        raise
    stdio._made_file = made
    return stdio


async def create_process(
    session: Session,
    bundle_dir: Path,
    container_id: str,
    process_id: str,
    *,
    stdin: bool,
    terminal: bool,
    create: Callable[[StdioPaths], Awaitable[int]],
    log_path: Path | None = None,
    output: Output = "pipe",
    log_writer: LogWriter = "client",
) -> tuple[int, StdioSet | None, Slot]:
    """The shared skeleton of creating a task or an exec: stdio first, a
    tracker slot before containerd can report an exit, the create RPC
    shielded (we must learn whether containerd made it), and on failure only
    what this attempt made is removed."""
    init = process_id == container_id
    tracker = session.tracker
    writer = checked_log_writer(
        log_writer, log_path, container_id=container_id, process_id=process_id
    )
    fifos: StdioSet | None = None
    if log_path is None and output == "pipe":
        name = new_stdio_name(process_id, init=init)
        fifos = await open_stdio(bundle_dir, name, stdin=stdin, terminal=terminal)
        paths = stdio_paths(fifos)
    elif log_path is not None and _platform.PLATFORM.stdio == "fifo":
        fifos = await _logged_stdio(
            session,
            bundle_dir,
            container_id,
            process_id,
            terminal=terminal,
            log_path=log_path,
            log_writer=writer,
        )
        paths = stdio_paths(fifos)
    else:
        paths = _file_stdio(log_path, terminal=terminal)
    existed = tracker.has(container_id, process_id)
    slot = tracker.watch(container_id, process_id, owned=True)
    if fifos is not None:
        # Before containerd can list the process: a restore() of this client
        # that sees it while the create call is in flight shares this set
        # instead of opening the FIFOs a second time (two readers would
        # split the output).
        session.track_stdio(container_id, process_id, fifos)
    try:
        with shielded(session.timeouts.shield, "creating the process"):
            pid = await create(paths)
    except BaseException:
        if isinstance(fifos, (LogPump, LoggerStdio)):
            session.untrack_stdio(container_id, process_id, fifos)
            fifos.discard()
        elif fifos is not None:
            session.untrack_stdio(container_id, process_id, fifos)
            fifos.remove()
        if not existed:
            tracker.forget(container_id, process_id)
        raise
    return pid, fifos, slot


def _check_signal(value: object, container_id: str, process_id: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidArgument(
            f"signal must be an int, not {type(value).__name__}",
            container_id=container_id,
            process_id=process_id,
        )
    number = int(value)
    if not 1 <= number <= _MAX_SIGNAL:
        raise errors.InvalidArgument(
            f"signal {number} is out of range (1..{_MAX_SIGNAL})",
            container_id=container_id,
            process_id=process_id,
        )
    return number


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
        container: Container,
        session: Session,
        process_id: str,
        *,
        pid: int,
        fifos: StdioSet | None,
        slot: Slot,
        log_path: Path | None = None,
        detached_stdio: StdioPaths | None = None,
    ) -> None:
        self.container = container
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
        self._started = False
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

    def _attach_detached(self) -> None:
        """Reopen the stdio of a process loaded without attaching (if it is
        still ours and there)."""
        if self._fifos is not None or self._detached_stdio is None or self._deleted:
            return
        fifos = self.container._open_stdio(self.id, self._detached_stdio)
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
        stdout and the second item is empty.

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
        out: list[bytes] = []
        err: list[bytes] = []

        async def drain(stream: ByteReceiveStream | None, into: list[bytes]) -> None:
            if stream is None:
                return
            with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError):
                while True:
                    into.append(await stream.receive())

        async def feed() -> None:
            stdin = fifos.stdin
            if stdin is None:
                return
            if input:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await stdin.send(input)
            await self.close_stdin()

        async with task_group() as tg:
            tg.start_soon(drain, fifos.stdout, out)
            tg.start_soon(drain, fifos.stderr, err)
            tg.start_soon(feed)
        await self.wait()
        return b"".join(out), b"".join(err)

    async def aiter_lines(self) -> AsyncIterator[str]:
        """The process's stdout line by line (UTF-8, undecodable bytes
        replaced, line endings removed) until it ends.

        Only stdout is read: a process that also writes much to stderr must
        have it read too (or be created with a terminal, or a ``log_path``).
        """
        stream = self._fifos_or_raise().stdout
        pending = b""
        while True:
            try:
                chunk = await stream.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r").decode("utf-8", errors="replace")
        if pending:
            yield pending.rstrip(b"\r").decode("utf-8", errors="replace")

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
        if self._started:
            raise errors.FailedPrecondition(
                "the process was started already (it is running or stopped)",
                container_id=cid,
                process_id=self.id,
            )
        if self._start_refused:
            # containerd 1.6's shim panics when an exec whose start failed is
            # started again and then exits, and the whole task is lost.
            raise errors.FailedPrecondition(
                "the process's start failed already; delete it and make a new one",
                container_id=cid,
                process_id=self.id,
            )
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
                await transport.close_stdin(cid, self._exec_id)

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
        # What a shell would say of a command that never ran: its waiters
        # get that, not the zero status containerd reports for a deleted exec.
        code = 255
        if isinstance(error, errors.CommandNotFound):
            code = 127
        elif isinstance(error, errors.CommandNotExecutable):
            code = 126
        self._release(ExitStatus(code))

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
        number = _check_signal(signal, cid, self.id)
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
        if self._log is not None:
            # Every byte the process wrote is in its file when wait() returns.
            await self._log.wait_drained(self._session.timeouts.output_drain)
        return status

    async def _wait_exit(self) -> ExitStatus:
        session = self._session
        if session.events or self._slot.status is not None or self._deleted:
            return await self._slot.wait()
        cid = self.container.id
        transport = session.transport
        result: list[ExitStatus] = []

        async def ask() -> None:
            status = await transport.wait(cid, self._exec_id)
            tracker = session.tracker
            recorded = tracker.exited(cid, self.id, self._pid, status.exit_code, status.exited_at)
            result.append(recorded if recorded is not None else status)
            tg.cancel_scope.cancel()

        async def deleted() -> None:
            # containerd's Wait on an exec deleted before it ran answers only
            # when the whole task goes: our own delete resolves the slot.
            result.append(await self._slot.wait())
            tg.cancel_scope.cancel()

        async with task_group() as tg:
            tg.start_soon(ask)
            tg.start_soon(deleted)
        return result[0]

    async def resize(self, width: int, height: int) -> None:
        """Resize the process's terminal (only with ``terminal=True``).

        Raises:
            InvalidArgument: not two ints in 1..65535.
        """
        for value in (width, height):
            if isinstance(value, bool) or not isinstance(value, int):
                raise errors.InvalidArgument(
                    f"terminal size must be ints, not {type(value).__name__}",
                    container_id=self.container.id,
                    process_id=self.id,
                )
        if not (0 < width <= _MAX_TERMINAL and 0 < height <= _MAX_TERMINAL):
            raise errors.InvalidArgument(
                f"bad terminal size {width}x{height}",
                container_id=self.container.id,
                process_id=self.id,
            )
        await self._session.transport.resize(
            self.container.id, self._exec_id, int(width), int(height)
        )

    async def close_stdin(self) -> None:
        """Close the process's standard input: it reads end-of-file.

        Safe before :meth:`start`: the shim is told once the process exists
        (telling it earlier would leave an exec hanging).
        """
        transport = self._session.transport
        if self._fifos is not None and self._fifos.stdin is not None:
            await self._fifos.stdin.aclose()
        if self._started:
            await transport.close_stdin(self.container.id, self._exec_id)
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
            await self._force_stop()
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
            if self._log is not None:
                # The shim has let go of the FIFOs: what it still held reaches
                # the file before our ends close.
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

    async def _force_stop(self) -> None:
        """SIGKILL the process (the init: every process of the task) and wait,
        bounded, until it has exited."""
        transport = self._session.transport
        cid = self.container.id
        try:
            await transport.kill(cid, self._exec_id, _platform.SIGKILL, not self._exec_id)
        except (errors.NotFound, errors.FailedPrecondition):
            return

        # A frozen cgroup holds the signal: thaw it, as dockerd's rm -f does.
        # But a state read is only a snapshot of a race: a pause or resume in
        # flight reads as PAUSING or RUNNING and may land after our resume,
        # and runc's kill --all thaws the cgroup by itself, so that the task
        # is dead and runc refuses our resume ("container not paused") while
        # containerd still says PAUSED. So nothing read here is trusted:
        # until the exit is known, a task that reads as frozen is thawed
        # again, refusals are ignored, and only the exit ends the wait. The
        # first look is at once; the next after 50 ms, by which time a
        # task that was not frozen has usually exited (one read, as before).
        async def thaw() -> None:
            for pause in backoff(0.05, 0.25):
                try:
                    state = (await transport.get_task(cid)).state
                    if state in (ProcessState.PAUSED, ProcessState.PAUSING):
                        await transport.resume(cid)
                except errors.NotFound:
                    return
                except errors.SupervisorError as exc:
                    _log.debug("process.thaw_refused", container_id=cid, error=str(exc))
                await anyio.sleep(pause)

        with anyio.move_on_after(self._session.timeouts.cleanup):
            async with task_group() as tg:
                tg.start_soon(thaw)
                await self.wait()
                tg.cancel_scope.cancel()

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
            init = not self._exec_id
            for path in stdio_files(
                self.container.bundle_dir, self.id, init=init, stdio=self._detached_stdio
            ):
                with contextlib.suppress(OSError):
                    os.unlink(path)
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
        task = self.container._task
        if not self._exec_id:
            self.container._task_deleted(self)  # type: ignore[arg-type]
        elif task is not None and task._execs.get(self.id) is self:
            del task._execs[self.id]
