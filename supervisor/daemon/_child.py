"""One containerd process: spawned by us or adopted from the pid file, waited
for, signalled and killed.

Each process is held by a pidfd where the kernel has them (Linux 5.3): a
signal sent through it can never reach a process that took over the pid
after ours was reaped, and it becomes readable the moment the process exits,
reaped or not, so an adopted containerd (not our child) is seen exiting as
soon as our own.

A pid file is only a claim. A process it names is adopted only if it is
alive, runs as our user, was started with our command line and runs the very
executable we would start; otherwise the file is stale and the process is
left alone, whoever it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
from pathlib import Path

import anyio

from .. import errors
from .._log import get_logger
from .._paths import write_new
from ._files import open_regular

__all__ = ["Child", "adopt", "alive", "spawn", "write_pid_file"]

_log = get_logger("daemon")


def _status(pid: int) -> dict[str, str]:
    """The fields of ``/proc/<pid>/status``; empty when there is no such process."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def alive(pid: int) -> bool:
    """True while ``pid`` runs. A zombie is not alive: pid 1 on some machines
    never reaps orphans, so a killed containerd can linger as one."""
    state = _status(pid).get("State", "")
    return bool(state) and state[0] not in "ZX"


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _pidfd_open(pid: int) -> int:
    """A pidfd for ``pid``, or -1 on a kernel without them.

    Raises:
        ProcessLookupError: there is no such process.
    """
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        raise
    except OSError:  # pragma: no cover - kernels before 5.3
        return -1


def _not_ours(pid: int, binary: str, config: Path) -> str | None:
    """Why the live process ``pid`` is not a containerd we started, or None."""
    status = _status(pid)
    uids = status.get("Uid", "").split()
    if len(uids) < 2:
        return "its owner cannot be read"
    if (int(uids[0]), int(uids[1])) != (os.getuid(), os.geteuid()):
        return f"it runs as uid {uids[0]}, not as uid {os.getuid()}"
    argv = _cmdline(pid)
    if (
        not argv
        or os.path.basename(argv[0]) != os.path.basename(binary)
        or argv[1:] != ["--config", str(config)]
    ):
        return "its command line is not the one we start containerd with"
    # Same name, same arguments, same user is still not proof: compare the
    # running executable with the file we would start.
    expected = shutil.which(binary)
    if expected is None:
        return f"the containerd binary {binary!r} is not found"
    try:
        want = os.stat(expected)
        got = os.stat(f"/proc/{pid}/exe")
    except OSError as exc:
        return f"its executable cannot be compared: {exc.strerror}"
    if (want.st_dev, want.st_ino) != (got.st_dev, got.st_ino):
        return f"its executable is not {expected}"
    return None


def _read_pid_file(path: Path) -> str:
    fd = open_regular(path, os.O_RDONLY)
    try:
        return os.read(fd, 64).decode("ascii", errors="replace").strip()
    finally:
        os.close(fd)


def write_pid_file(path: Path, pid: int) -> None:
    """Record ``pid`` in ``path`` atomically (a new file renamed into place)."""
    write_new(path, f"{pid}\n".encode())


class Child:
    """One containerd process, started by us (``process``) or adopted."""

    def __init__(
        self, pid: int, process: asyncio.subprocess.Process | None, pidfd: int, poll: float
    ) -> None:
        self.pid = pid
        self._process = process
        self._pidfd = pidfd
        # How often an adopted process is looked at where there is no pidfd.
        self._poll = poll
        self.exited = anyio.Event()

    @property
    def adopted(self) -> bool:
        return self._process is None

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: the signal) of a child of ours that exited."""
        return None if self._process is None else self._process.returncode

    def signal(self, sig: int) -> None:
        """Send ``sig``, unless the process is gone."""
        if self.exited.is_set():
            return
        with contextlib.suppress(ProcessLookupError):
            if self._pidfd >= 0:
                signal.pidfd_send_signal(self._pidfd, sig)
            elif self._process is not None:
                self._process.send_signal(sig)
            elif alive(self.pid):  # pragma: no cover - kernels before 5.3
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        """Ask containerd to stop cleanly (SIGTERM)."""
        self.signal(signal.SIGTERM)

    def dump_stacks(self) -> None:
        """Ask containerd for every goroutine's stack, in its log (SIGUSR1)."""
        self.signal(signal.SIGUSR1)

    async def _wait(self) -> None:
        if self._process is not None:
            await self._process.wait()  # reaps it, and keeps its exit code
        elif self._pidfd >= 0:
            # A descriptor of this wait's own: the caller may close the
            # pidfd while an abandoned wait still watches it.
            fd = os.dup(self._pidfd)
            try:
                await anyio.wait_readable(fd)
            finally:
                os.close(fd)
        else:  # pragma: no cover - kernels before 5.3
            while alive(self.pid):  # noqa: ASYNC110 - no event exists to wait on
                await anyio.sleep(self._poll)

    async def watch(self) -> None:
        """Set :attr:`exited` when the process exits (runs as a task)."""
        await self._wait()
        self.exited.set()
        _log.debug("daemon.exited", pid=self.pid, code=self.returncode)

    async def wait_gone(self, within: float) -> bool:
        """Wait up to ``within`` seconds for the exit; True once it is gone.

        Waits on the process itself, not through :attr:`exited`: the task
        that sets it may have been cancelled already.
        """
        if not self.exited.is_set():
            with anyio.move_on_after(within):
                await self._wait()
                self.exited.set()
        return self.exited.is_set()

    async def kill(self, within: float) -> bool:
        """SIGKILL, then :meth:`wait_gone` up to ``within`` seconds."""
        self.signal(signal.SIGKILL)
        return await self.wait_gone(within)

    def close(self) -> None:
        """Let go of the pidfd (the process itself is not touched)."""
        fd, self._pidfd = self._pidfd, -1
        if fd >= 0:
            os.close(fd)


async def spawn(
    binary: str, config: Path, log: Path, pid_file: Path, *, kill_within: float, poll: float
) -> Child:
    """Start ``binary --config config`` with its output appended to ``log``,
    and record it in ``pid_file``.

    Output goes to a file, not a pipe: Go programs die of SIGPIPE when fd 1
    or 2 breaks, so a pipe would take containerd down with us and make
    adoption after our own crash impossible.

    Raises:
        InvalidArgument: the binary is missing or cannot be executed.
        FailedPrecondition: the log file is a symlink or not a file of ours.
        OSError: the log or pid file could not be written (the process is
            killed then, within ``kill_within`` seconds).
    """
    log_fd = open_regular(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        process = await asyncio.create_subprocess_exec(
            binary,
            "--config",
            str(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            # Its own session: a terminal's ^C reaches us, and we decide
            # how containerd stops.
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise errors.InvalidArgument(f"containerd binary {binary!r} not found") from exc
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.EISDIR):
            raise errors.InvalidArgument(
                f"containerd binary {binary!r} cannot be run: {exc.strerror}"
            ) from exc
        raise
    finally:
        os.close(log_fd)
    try:
        pidfd = _pidfd_open(process.pid)
    except ProcessLookupError:
        pidfd = -1  # exited and reaped already; the process handle still works
    child = Child(process.pid, process, pidfd, poll)
    try:
        write_pid_file(pid_file, child.pid)
    except BaseException:
        # Cancelled, or the pid file unwritable: a child nobody tracks must
        # not outlive us.
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + kill_within
            await child.kill(kill_within)
        child.close()
        raise
    return child


def adopt(pid_file: Path, binary: str, config: Path, *, poll: float) -> Child | None:
    """The containerd ``pid_file`` names, if it is one we started and still runs.

    A stale pid file (no process, a process that is not ours, unreadable) is
    removed; the process it names, if any, is not touched.

    Raises:
        FailedPrecondition: the pid file is a directory or cannot be removed.
    """
    try:
        text = _read_pid_file(pid_file)
    except FileNotFoundError:
        return None
    except (OSError, errors.FailedPrecondition) as exc:
        text = ""
        why: str | None = str(exc)
    else:
        why = None if text.isdigit() and 0 < int(text) < 1 << 22 else "it holds no pid"
    pid = int(text) if why is None else 0
    pidfd = -1
    known = False  # a live process that is somebody else's: worth an info line
    if why is None:
        try:
            pidfd = _pidfd_open(pid)
        except ProcessLookupError:
            why = "the process is gone"
    if why is None and not alive(pid):
        why = "the process is gone"
    if why is None:
        why = _not_ours(pid, binary, config)
        known = why is not None
    if why is None and pidfd >= 0:
        # The checks read /proc by pid: make sure that pid still names the
        # process the pidfd holds, not a successor that reused it meanwhile.
        try:
            signal.pidfd_send_signal(pidfd, 0)
        except ProcessLookupError:
            why = "the process is gone"
    if why is None:
        return Child(pid, None, pidfd, poll)
    if pidfd >= 0:
        os.close(pidfd)
    (_log.info if known else _log.debug)(
        "daemon.stale_pid_file", path=str(pid_file), pid=text, reason=why
    )
    try:
        pid_file.unlink(missing_ok=True)
    except OSError as exc:
        raise errors.FailedPrecondition(
            f"stale pid file {pid_file} cannot be removed: {exc.strerror}"
        ) from exc
    return None
