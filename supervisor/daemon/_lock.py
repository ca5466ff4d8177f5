"""One supervisor per state directory.

Two supervisors on one state directory would adopt the same containerd and
then restart it against each other. The first takes an exclusive ``flock``
on ``state_dir/supervisor.lock`` and holds it while its Daemon runs; the
kernel drops the lock when its holder dies, so a crashed supervisor never
blocks the next one.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import errors
from ._files import open_regular

__all__ = ["StateLock"]


class StateLock:
    """The exclusive lock on one state directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def acquire(self) -> None:
        """Take the lock, or fail at once.

        Raises:
            FailedPrecondition: another process holds it, or the lock file is
                a symlink or not a regular file of ours.
            OSError: the lock file could not be opened or created.
        """
        if self._fd >= 0:
            raise errors.FailedPrecondition(f"{self.path} is held already")
        # POSIX only, imported here so the package imports on Windows too
        # (where supervisor.daemon._windows_files holds the lock instead).
        import fcntl

        fd = open_regular(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise errors.FailedPrecondition(
                f"another supervisor runs the containerd of {self.path.parent}"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Let the lock go (closing the only descriptor releases the flock)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
