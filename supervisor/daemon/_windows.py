r"""The embedded containerd on Windows: the pieces that differ from Linux.

The Daemon's lifetime, watchdog and restarts are the same on both platforms;
what a Windows ``containerd.exe`` needs instead of the Linux pieces is here,
with the same shapes, so that the Daemon picks one set or the other:

=====================  ==================================  =====================================
                       Linux (``_child.py``, ``_lock.py``)  Windows (this module)
=====================  ==================================  =====================================
address                ``state_dir/containerd.sock``        ``\\.\pipe\containerd-<name>``
one supervisor         ``flock`` on ``supervisor.lock``     ``msvcrt.locking`` on the same file
a process, held        a pidfd                              a process handle
exit noticed           pidfd readable / child's wait        child's wait / handle polled
pid reuse ruled out    owner, command line, executable      creation time (in the pid file),
                                                            executable
stop                   SIGTERM                              CTRL_BREAK (Go's os.Interrupt)
stack dump             SIGUSR1                              event ``Global\stackdump-<pid>``
kill                   SIGKILL                              TerminateProcess
=====================  ==================================  =====================================

``<name>`` is ``supervisor-`` and 16 hex digits of the SHA-256 of the state
directory: the same directory always gets the same pipe (a containerd left
running by a supervisor that died is found again), two directories never
share one.

The pid file holds ``<pid> <creation time>`` (the process's creation time in
100 ns units, as ``GetProcessTimes`` gives it). Windows reuses pids quickly;
the pair names one process for the life of the machine, and only a process
we started and recorded can match it, so no command line needs reading
(which Windows only gives by reading another process's memory).

Everything that touches Windows itself goes through
:class:`~._windows_kernel32.ProcessControl` (ctypes calls into kernel32), the
subprocess start (``start``) and the byte-range lock (``locking``, in
``_windows_files`` with the pid file and the files opened without following
a link); each is a parameter, so the logic here runs and is unit-tested on
Linux against stand-ins. Status: not yet run on Windows (no Windows machine
in this project's CI).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import anyio

from .. import errors
from .._log import get_logger
from ._windows_files import open_plain, read_pid_file, write_pid_file
from ._windows_kernel32 import Kernel32Control, ProcessControl

__all__ = [
    "CREATE_NEW_PROCESS_GROUP",
    "Start",
    "WindowsChild",
    "adopt",
    "debug_pipe_address",
    "pipe_address",
    "spawn",
]

_log = get_logger("daemon")

_PIPE_PREFIX = "\\\\.\\pipe\\"
# subprocess.CREATE_NEW_PROCESS_GROUP, which only Windows' subprocess module
# defines: containerd leads a group of its own, so a CTRL_BREAK sent to that
# group reaches it and nothing else, and a ^C at our console does not.
CREATE_NEW_PROCESS_GROUP = 0x00000200
# The exit code TerminateProcess gives containerd: what a SIGKILL shows as.
_KILLED = 137


def pipe_address(state_dir: Path) -> str:
    """containerd's gRPC pipe for the Daemon of ``state_dir``."""
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:16]
    return f"{_PIPE_PREFIX}containerd-supervisor-{digest}"


def debug_pipe_address(state_dir: Path) -> str:
    """containerd's debug pipe for the Daemon of ``state_dir``."""
    return pipe_address(state_dir) + "-debug"


def _same_executable(image: str, binary: str) -> bool:
    expected = shutil.which(binary) or binary
    return os.path.normcase(os.path.abspath(image)) == os.path.normcase(os.path.abspath(expected))


def _not_ours(control: ProcessControl, handle: int, created: int, binary: str) -> str | None:
    """Why the process behind ``handle`` is not the containerd we recorded
    as created at ``created``; None when it is, and still runs."""
    if control.exit_code(handle) is not None:
        return "the process is gone"
    if control.creation_time(handle) != created:
        return "its pid now names another process"
    if not _same_executable(control.image_path(handle), binary):
        return "its executable is not the containerd we start"
    return None


# -- one containerd process -----------------------------------------------------------


class _Spawned(Protocol):
    """What :func:`spawn` keeps of the subprocess it started."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def kill(self) -> None: ...


class WindowsChild:
    """One containerd.exe, started by us (``process``) or adopted (the
    Windows ``Child``): held by a process handle, which keeps its pid from
    being reused while we hold it."""

    def __init__(
        self,
        pid: int,
        process: _Spawned | None,
        handle: int,
        control: ProcessControl,
        poll: float,
    ) -> None:
        self.pid = pid
        self._process = process
        self._handle = handle
        self._control = control
        # How often an adopted process is looked at: Windows has no
        # descriptor that becomes readable when a process exits.
        self._poll = poll
        self._code: int | None = None
        self.exited = anyio.Event()

    @property
    def adopted(self) -> bool:
        return self._process is None

    @property
    def returncode(self) -> int | None:
        """The exit code, once the process is known to have exited."""
        if self._process is not None and self._process.returncode is not None:
            return self._process.returncode
        return self._code

    def _gone(self) -> bool:
        if self.exited.is_set():
            return True
        if self._handle < 0:
            return False
        self._code = self._control.exit_code(self._handle)
        return self._code is not None

    def terminate(self) -> None:
        """Ask containerd to stop (Go sees CTRL_BREAK as os.Interrupt and
        shuts down cleanly); logged if it cannot be asked, and the caller's
        stop timeout then ends in :meth:`kill`."""
        if self._gone():
            return
        if not self._control.ctrl_break(self.pid):
            _log.warning("daemon.stop_request_failed", pid=self.pid)

    def dump_stacks(self) -> None:
        """Ask containerd for its goroutine stacks, in its log: it waits on
        this event where Linux sends SIGUSR1 (the event is open to
        administrators and SYSTEM only)."""
        if self._gone():
            return
        if not self._control.set_event(f"Global\\stackdump-{self.pid}"):
            _log.warning("daemon.stack_dump_unavailable", pid=self.pid)

    def _terminate_now(self) -> None:
        if self._gone():
            return
        try:
            if self._process is not None:
                # Through the handle asyncio holds for its own child.
                self._process.kill()
            elif self._handle >= 0:
                self._control.terminate(self._handle, _KILLED)
        except OSError as exc:
            # One exiting by itself meanwhile fails with access denied or
            # lookup errors; anything else is worth a line.
            if not self._gone():
                _log.warning("daemon.terminate_failed", pid=self.pid, error=str(exc))

    async def _wait(self) -> None:
        if self._process is not None:
            await self._process.wait()
            return
        while not self._gone():  # noqa: ASYNC110 - no event exists to wait on
            await anyio.sleep(self._poll)

    async def watch(self) -> None:
        """Set :attr:`exited` when the process exits (runs as a task)."""
        await self._wait()
        self.exited.set()
        _log.debug("daemon.exited", pid=self.pid, code=self.returncode)

    async def wait_gone(self, within: float) -> bool:
        """Wait up to ``within`` seconds for the exit; True once it is gone."""
        if not self.exited.is_set():
            with anyio.move_on_after(within):
                await self._wait()
                self.exited.set()
        return self.exited.is_set()

    async def kill(self, within: float) -> bool:
        """TerminateProcess, then :meth:`wait_gone` up to ``within`` seconds."""
        self._terminate_now()
        return await self.wait_gone(within)

    def close(self) -> None:
        """Let go of the process handle (the process itself is not touched)."""
        handle, self._handle = self._handle, -1
        if handle >= 0:
            self._control.close(handle)


Start = Callable[..., Awaitable[_Spawned]]
"""``asyncio.create_subprocess_exec`` (a stand-in in tests)."""


async def spawn(
    binary: str,
    config: Path,
    log: Path,
    pid_file: Path,
    *,
    kill_within: float,
    poll: float,
    control: ProcessControl | None = None,
    start: Start | None = None,
) -> WindowsChild:
    """Start ``binary --config config`` with its output appended to ``log``,
    in a process group of its own, and record it in ``pid_file``.

    Raises:
        InvalidArgument: the binary is missing or cannot be executed.
        FailedPrecondition: the log or pid file is a link or not a file.
        OSError: the log or pid file could not be written (the process is
            terminated then, within ``kill_within`` seconds).
    """
    control = control or Kernel32Control()
    start = start or asyncio.create_subprocess_exec
    log_fd = open_plain(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        process = await start(
            binary,
            "--config",
            str(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            creationflags=CREATE_NEW_PROCESS_GROUP,
        )
    except FileNotFoundError as exc:
        raise errors.InvalidArgument(f"containerd binary {binary!r} not found") from exc
    except PermissionError as exc:
        raise errors.InvalidArgument(f"containerd binary {binary!r} cannot be run: {exc}") from exc
    finally:
        os.close(log_fd)
    child = WindowsChild(process.pid, process, -1, control, poll)
    try:
        handle = control.open(process.pid)
        # None: it exited at once; its own wait still tells how, and there
        # is nothing to record for adoption.
        if handle is not None:
            child._handle = handle
            write_pid_file(pid_file, process.pid, control.creation_time(handle))
    except BaseException:
        # Cancelled, or the pid file unwritable: a child nobody tracks must
        # not outlive us.
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + kill_within
            await child.kill(kill_within)
        child.close()
        raise
    return child


def adopt(
    pid_file: Path,
    binary: str,
    config: Path,
    *,
    poll: float,
    control: ProcessControl | None = None,
) -> WindowsChild | None:
    """The containerd ``pid_file`` names, if it is the very process we
    started (same pid, same creation time, our executable) and still runs.

    A stale pid file is removed; the process it names, if any, is not touched.
    ``config`` is not compared: the creation time already proves the process
    is the one we started, and we only ever start it with this config path.

    Raises:
        FailedPrecondition: the stale pid file cannot be removed.
    """
    del config  # see above; kept for the Linux ``adopt``'s signature
    why: str | None = None
    record: tuple[int, int] | None = None
    try:
        record = read_pid_file(pid_file)
    except FileNotFoundError:
        return None
    except (OSError, errors.FailedPrecondition) as exc:
        why = f"it cannot be read: {exc}"
    else:
        if record is None:
            why = "it holds no pid and creation time"
    control = control or Kernel32Control()
    if record is not None:
        pid, created = record
        try:
            handle = control.open(pid)
        except PermissionError:
            handle, why = None, "the process is not ours to open"
        if handle is None:
            why = why or "the process is gone"
        else:
            why = _not_ours(control, handle, created, binary)
            if why is None:
                return WindowsChild(pid, None, handle, control, poll)
            control.close(handle)
    _log.info("daemon.stale_pid_file", path=str(pid_file), reason=why)
    try:
        pid_file.unlink(missing_ok=True)
    except OSError as exc:
        raise errors.FailedPrecondition(
            f"stale pid file {pid_file} cannot be removed: {exc}"
        ) from exc
    return None
