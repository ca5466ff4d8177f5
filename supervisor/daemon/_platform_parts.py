"""The pieces of the embedded containerd that differ per platform, chosen here.

:class:`~supervisor.daemon.Daemon` is one lifetime, watchdog and restart
loop on both platforms; everything in it that touches the operating system
comes from one :class:`DaemonParts`:

============  ================================  ========================================
part          Linux                             Windows
============  ================================  ========================================
address       ``state_dir/containerd.sock``     ``\\\\.\\pipe\\containerd-supervisor-<hash>``
lock          ``StateLock`` (flock)             ``WindowsStateLock`` (msvcrt.locking)
spawn, adopt  ``_child`` (pidfd, ``/proc``)     ``_windows`` (handles, creation time)
the child     SIGTERM, SIGUSR1, SIGKILL         CTRL_BREAK, stackdump event, TerminateProcess
log file      ``open_regular`` (O_NOFOLLOW)     ``open_plain`` (no link, no reparse point)
============  ================================  ========================================

:func:`select` decides by :data:`supervisor._platform.IS_WINDOWS`, once per
Daemon. :func:`windows_parts` takes the Windows seams (kernel32, the
subprocess start, ``msvcrt.locking``) so that a Daemon can be run whole on
Linux against stand-ins.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NamedTuple, Protocol

import anyio

from .. import _platform
from ..backends.health import HealthChecker
from . import _child, _windows, _windows_files
from ._files import open_regular
from ._lock import StateLock
from ._windows_kernel32 import ProcessControl

__all__ = [
    "DaemonChild",
    "DaemonParts",
    "HealthProbe",
    "Lock",
    "linux_parts",
    "select",
    "windows_parts",
]


class DaemonChild(Protocol):
    """One containerd process as the Daemon drives it (``_child.Child`` on
    Linux, ``_windows.WindowsChild`` on Windows)."""

    pid: int
    exited: anyio.Event

    @property
    def adopted(self) -> bool: ...

    @property
    def returncode(self) -> int | None: ...

    async def watch(self) -> None: ...

    async def wait_gone(self, within: float) -> bool: ...

    def terminate(self) -> None:
        """Ask it to stop cleanly."""
        ...

    def dump_stacks(self) -> None:
        """Ask it to write every goroutine's stack to its log."""
        ...

    async def kill(self, within: float) -> bool:
        """End it at once; True once it is gone (within ``within`` seconds)."""
        ...

    def close(self) -> None: ...


class Lock(Protocol):
    """One supervisor per state directory."""

    @property
    def held(self) -> bool: ...

    def acquire(self) -> None: ...

    def release(self) -> None: ...


class HealthProbe(Protocol):
    """containerd's health check over its address (``HealthChecker``)."""

    async def check(self, within: float) -> bool: ...

    def close(self) -> None: ...


class Spawn(Protocol):
    def __call__(
        self,
        binary: str,
        config: Path,
        log: Path,
        pid_file: Path,
        *,
        kill_within: float,
        poll: float,
    ) -> Awaitable[DaemonChild]: ...


class Adopt(Protocol):
    def __call__(
        self, pid_file: Path, binary: str, config: Path, *, poll: float
    ) -> DaemonChild | None: ...


class DaemonParts(NamedTuple):
    """What one platform gives the Daemon.

    Attributes:
        name: ``"linux"`` or ``"windows"``.
        address: containerd's gRPC address for a state directory.
        debug_address: its debug address for a state directory.
        unix_sockets: the addresses are unix socket files: their length is
            checked, and one left by a killed containerd is removed before
            the next starts.
        lock: the state directory's lock, for the lock file's path.
        spawn: starts containerd and records it in the pid file.
        adopt: the containerd the pid file names, if it is ours and runs.
        open_file: opens a file of ours in the state directory (the log)
            without following a link; ``os.open`` flags, returns an fd.
        health: the health checker for an address.
    """

    name: str
    address: Callable[[Path], str]
    debug_address: Callable[[Path], str]
    unix_sockets: bool
    lock: Callable[[Path], Lock]
    spawn: Spawn
    adopt: Adopt
    open_file: Callable[[Path, int], int]
    health: Callable[[str], HealthProbe]


def _socket(name: str, state_dir: Path) -> str:
    return str(state_dir / name)


def linux_parts() -> DaemonParts:
    """The Linux pieces: unix sockets, flock, pidfds and ``/proc``."""
    return DaemonParts(
        name="linux",
        address=functools.partial(_socket, "containerd.sock"),
        debug_address=functools.partial(_socket, "debug.sock"),
        unix_sockets=True,
        lock=StateLock,
        spawn=_child.spawn,
        adopt=_child.adopt,
        open_file=open_regular,
        health=HealthChecker,
    )


def windows_parts(
    *,
    control: ProcessControl | None = None,
    start: _windows.Start | None = None,
    locking: Callable[[int, int, int], None] | None = None,
    health: Callable[[str], HealthProbe] = HealthChecker,
) -> DaemonParts:
    """The Windows pieces: named pipes, ``msvcrt.locking``, process handles.

    Args:
        control: kernel32 (default: :class:`~._windows_kernel32.Kernel32Control`, made
            at each spawn or adoption, so that nothing Windows-only is touched
            before then).
        start: ``asyncio.create_subprocess_exec`` (default).
        locking: ``msvcrt.locking`` (default).
        health: the health checker for an address (default: grpc over the pipe).
    """
    return DaemonParts(
        name="windows",
        address=_windows.pipe_address,
        debug_address=_windows.debug_pipe_address,
        unix_sockets=False,
        lock=functools.partial(_windows_files.WindowsStateLock, locking=locking),
        spawn=functools.partial(_windows.spawn, control=control, start=start),
        adopt=functools.partial(_windows.adopt, control=control),
        open_file=_windows_files.open_plain,
        health=health,
    )


def select() -> DaemonParts:
    """This interpreter's pieces (the one place the Daemon's platform is decided)."""
    return windows_parts() if _platform.IS_WINDOWS else linux_parts()
