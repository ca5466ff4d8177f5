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

Everything that touches Windows itself goes through :class:`ProcessControl`
(ctypes calls into kernel32, :class:`Kernel32Control`), the subprocess start
(``start``) and the byte-range lock (``locking``); each is a parameter, so the
logic here runs and is unit-tested on Linux against stand-ins. Status: not
yet run on Windows (no Windows machine in this project's CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import anyio

from .. import errors
from .._log import get_logger
from .._paths import write_new

__all__ = [
    "CREATE_NEW_PROCESS_GROUP",
    "Kernel32Control",
    "ProcessControl",
    "WindowsChild",
    "WindowsStateLock",
    "adopt",
    "debug_pipe_address",
    "open_plain",
    "pipe_address",
    "spawn",
    "write_pid_file",
]

_log = get_logger("daemon")

_PIPE_PREFIX = "\\\\.\\pipe\\"
# subprocess.CREATE_NEW_PROCESS_GROUP, which only Windows' subprocess module
# defines: containerd leads a group of its own, so a CTRL_BREAK sent to that
# group reaches it and nothing else, and a ^C at our console does not.
CREATE_NEW_PROCESS_GROUP = 0x00000200
# msvcrt's modes (msvcrt.LK_NBLCK, msvcrt.LK_UNLCK).
_LK_UNLCK = 0
_LK_NBLCK = 2
_FILE_ATTRIBUTE_REPARSE_POINT = 0x400
# The exit code TerminateProcess gives containerd: what a SIGKILL shows as.
_KILLED = 137


def pipe_address(state_dir: Path) -> str:
    """containerd's gRPC pipe for the Daemon of ``state_dir``."""
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:16]
    return f"{_PIPE_PREFIX}containerd-supervisor-{digest}"


def debug_pipe_address(state_dir: Path) -> str:
    """containerd's debug pipe for the Daemon of ``state_dir``."""
    return pipe_address(state_dir) + "-debug"


# -- the seam to Windows ---------------------------------------------------------


class ProcessControl(Protocol):
    """What the daemon needs from Windows about one process (by handle)."""

    def open(self, pid: int) -> int | None:
        """A handle to ``pid`` (query, wait and terminate rights); None when
        there is no such process.

        Raises:
            PermissionError: it exists but we may not open it (not ours).
        """
        ...

    def close(self, handle: int) -> None: ...

    def exit_code(self, handle: int) -> int | None:
        """The exit code once the process has exited; None while it runs."""
        ...

    def creation_time(self, handle: int) -> int:
        """When the process was created, in 100 ns units since 1601."""
        ...

    def image_path(self, handle: int) -> str:
        """The full path of the process's executable."""
        ...

    def terminate(self, handle: int, code: int) -> None:
        """End the process at once (it gets no say)."""
        ...

    def ctrl_break(self, pid: int) -> bool:
        """Send CTRL_BREAK to the process group ``pid`` leads; False if it
        could not be sent (no console shared with it)."""
        ...

    def set_event(self, name: str) -> bool:
        """Signal the named event; False if it cannot be opened."""
        ...


class Kernel32Control:
    """:class:`ProcessControl` through kernel32 (ctypes); Windows only."""

    _ACCESS = 0x1000 | 0x00100000 | 0x0001  # QUERY_LIMITED_INFORMATION | SYNCHRONIZE | TERMINATE
    _EVENT_MODIFY_STATE = 0x0002
    _WAIT_OBJECT_0 = 0
    _ERROR_INVALID_PARAMETER = 87
    _ERROR_ACCESS_DENIED = 5

    def __init__(self) -> None:
        import ctypes

        loader = getattr(ctypes, "WinDLL", None)
        if loader is None:
            raise errors.FailedPrecondition("kernel32 is only there on Windows")
        self._ctypes = ctypes
        self._k32: Any = loader("kernel32", use_last_error=True)

    def _error(self, what: str) -> OSError:
        code = self._ctypes.get_last_error()  # type: ignore[attr-defined]
        return OSError(code, f"{what} failed (Windows error {code})")

    def open(self, pid: int) -> int | None:
        handle = self._k32.OpenProcess(self._ACCESS, False, pid)
        if handle:
            return int(handle)
        code = self._ctypes.get_last_error()  # type: ignore[attr-defined]
        if code == self._ERROR_ACCESS_DENIED:
            raise PermissionError(code, f"process {pid} is not ours to open")
        if code == self._ERROR_INVALID_PARAMETER:
            return None
        raise OSError(code, f"OpenProcess({pid}) failed (Windows error {code})")

    def close(self, handle: int) -> None:
        self._k32.CloseHandle(handle)

    def exit_code(self, handle: int) -> int | None:
        # Waited on rather than compared with STILL_ACTIVE (259), which a
        # process may also exit with.
        if self._k32.WaitForSingleObject(handle, 0) != self._WAIT_OBJECT_0:
            return None
        code = self._ctypes.c_ulong()
        if not self._k32.GetExitCodeProcess(handle, self._ctypes.byref(code)):
            raise self._error("GetExitCodeProcess")
        return int(code.value)

    def creation_time(self, handle: int) -> int:
        times = [self._ctypes.c_ulonglong() for _ in range(4)]
        if not self._k32.GetProcessTimes(handle, *(self._ctypes.byref(t) for t in times)):
            raise self._error("GetProcessTimes")
        return int(times[0].value)

    def image_path(self, handle: int) -> str:
        size = self._ctypes.c_ulong(32768)
        buffer = self._ctypes.create_unicode_buffer(size.value)
        if not self._k32.QueryFullProcessImageNameW(handle, 0, buffer, self._ctypes.byref(size)):
            raise self._error("QueryFullProcessImageNameW")
        return str(buffer.value)

    def terminate(self, handle: int, code: int) -> None:
        if not self._k32.TerminateProcess(handle, code):
            raise self._error("TerminateProcess")

    def ctrl_break(self, pid: int) -> bool:
        return bool(self._k32.GenerateConsoleCtrlEvent(1, pid))  # CTRL_BREAK_EVENT

    def set_event(self, name: str) -> bool:
        event = self._k32.OpenEventW(self._EVENT_MODIFY_STATE, False, name)
        if not event:
            return False
        try:
            return bool(self._k32.SetEvent(event))
        finally:
            self._k32.CloseHandle(event)


# -- files in the state directory ---------------------------------------------------


def _check_plain_file(path: Path) -> None:
    """Refuse a symlink or junction where the daemon keeps a file of its own.

    Raises:
        FailedPrecondition: ``path`` is a link (or any reparse point) or not a file.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    reparse = getattr(st, "st_file_attributes", 0) & _FILE_ATTRIBUTE_REPARSE_POINT
    if stat.S_ISLNK(st.st_mode) or reparse:
        raise errors.FailedPrecondition(f"{path} is a link; it is not followed")
    if not stat.S_ISREG(st.st_mode):
        raise errors.FailedPrecondition(f"{path} is not a regular file")


def open_plain(path: Path, flags: int) -> int:
    """Open a file of the daemon's (``os.open`` flags), refusing a link or a
    reparse point in its place; not inherited by children.

    Raises:
        FailedPrecondition: ``path`` is a link or not a regular file.
        OSError: it could not be opened.
    """
    _check_plain_file(path)
    return os.open(path, flags | getattr(os, "O_NOINHERIT", 0) | getattr(os, "O_BINARY", 0), 0o600)


class WindowsStateLock:
    """One supervisor per state directory (the Windows ``StateLock``): a
    byte-range lock on ``supervisor.lock``, which Windows drops when the
    holder's handle closes or its process dies.

    Args:
        path: the lock file.
        locking: ``msvcrt.locking`` (a stand-in in tests).
    """

    def __init__(
        self, path: Path, *, locking: Callable[[int, int, int], None] | None = None
    ) -> None:
        self.path = path
        self._locking = locking
        self._fd = -1

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def _lock_call(self) -> Callable[[int, int, int], None]:
        if self._locking is None:
            import msvcrt  # Windows only: imported where it is used

            self._locking = msvcrt.locking  # type: ignore[attr-defined,unused-ignore]
        assert self._locking is not None
        return self._locking

    def acquire(self) -> None:
        """Take the lock, or fail at once.

        Raises:
            FailedPrecondition: another process holds it, or the lock file is
                a link or not a regular file.
            OSError: the lock file could not be opened or created.
        """
        if self._fd >= 0:
            raise errors.FailedPrecondition(f"{self.path} is held already")
        locking = self._lock_call()
        fd = open_plain(self.path, os.O_RDWR | os.O_CREAT)
        try:
            # One byte at offset 0; a range past the end of the file is fine.
            locking(fd, _LK_NBLCK, 1)
        except OSError:
            os.close(fd)
            raise errors.FailedPrecondition(
                f"another supervisor runs the containerd of {self.path.parent}"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Let the lock go (idempotent)."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        try:
            with contextlib.suppress(OSError):
                os.lseek(fd, 0, os.SEEK_SET)
                self._lock_call()(fd, _LK_UNLCK, 1)
        finally:
            os.close(fd)


def write_pid_file(path: Path, pid: int, created: int) -> None:
    """Record ``<pid> <creation time>`` in ``path``: a new file beside it,
    renamed into place."""
    _check_plain_file(path)
    write_new(path, f"{pid} {created}\n".encode())


def _read_pid_file(path: Path) -> tuple[int, int] | None:
    """``(pid, creation time)`` from ``path``; None if it holds anything else.

    Raises:
        FileNotFoundError: there is no pid file.
        FailedPrecondition: it is a link or not a regular file.
    """
    fd = open_plain(path, os.O_RDONLY)
    try:
        text = os.read(fd, 64).decode("ascii", errors="replace").split()
    finally:
        os.close(fd)
    if len(text) != 2 or not all(t.isdigit() for t in text):
        return None
    pid, created = int(text[0]), int(text[1])
    return (pid, created) if 0 < pid < 1 << 32 else None


def _same_executable(image: str, binary: str) -> bool:
    expected = shutil.which(binary) or binary
    return os.path.normcase(os.path.abspath(image)) == os.path.normcase(os.path.abspath(expected))


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
        record = _read_pid_file(pid_file)
    except FileNotFoundError:
        return None
    except (OSError, errors.FailedPrecondition) as exc:
        why = f"it cannot be read: {exc}"
    else:
        if record is None:
            why = "it holds no pid and creation time"
    control = control or Kernel32Control()
    handle = -1
    if record is not None:
        pid, created = record
        try:
            opened = control.open(pid)
        except PermissionError:
            opened, why = None, "the process is not ours to open"
        if opened is None:
            why = why or "the process is gone"
        else:
            handle = opened
            if control.exit_code(handle) is not None:
                why = "the process is gone"
            elif control.creation_time(handle) != created:
                why = "its pid now names another process"
            elif not _same_executable(control.image_path(handle), binary):
                why = "its executable is not the containerd we start"
        if why is None:
            return WindowsChild(pid, None, handle, control, poll)
    if handle >= 0:
        control.close(handle)
    _log.info("daemon.stale_pid_file", path=str(pid_file), reason=why)
    try:
        pid_file.unlink(missing_ok=True)
    except OSError as exc:
        raise errors.FailedPrecondition(
            f"stale pid file {pid_file} cannot be removed: {exc}"
        ) from exc
    return None
