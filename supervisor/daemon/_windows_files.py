"""The embedded containerd's own files on Windows: opened without following
a link or a junction, the one-supervisor lock, and the pid file.

The pid file holds ``<pid> <creation time>`` (the process's creation time in
100 ns units, as ``GetProcessTimes`` gives it): Windows reuses pids quickly,
and the pair names one process for the life of the machine.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from .. import errors
from .._paths import write_new

__all__ = ["WindowsStateLock", "open_plain", "read_pid_file", "write_pid_file"]

# msvcrt's modes (msvcrt.LK_NBLCK, msvcrt.LK_UNLCK).
_LK_UNLCK = 0
_LK_NBLCK = 2
_FILE_ATTRIBUTE_REPARSE_POINT = 0x400


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


def read_pid_file(path: Path) -> tuple[int, int] | None:
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
