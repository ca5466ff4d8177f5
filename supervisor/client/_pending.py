"""Creates in flight, marked for other processes on the same state directory.

Between attaching a container to its network and containerd having the
container, its network record names an id containerd does not know: another
client's sweep would take it for a crash's leftover. So the creating client
holds an exclusive ``flock`` on ``pending/<id>`` from before the attach until
the create has ended; a sweep spares any id whose file is locked, and a
crashed client's lock goes with its process.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import anyio

from .. import errors
from .._paths import private_dir
from .._timeouts import backoff

__all__ = ["Pending"]

_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)  # Windows has neither
# Another create of the same id holds its lock for its whole create; a
# sweep's probe holds it for microseconds: waiting this long tells them apart.
_WAIT = 0.5


class Pending:
    """The ``pending/`` directory of one client network directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def hold(self, container_id: str) -> int:
        """Mark ``container_id`` as being created: the lock's fd.

        Raises:
            AlreadyExists: another client is creating a container of that id.
        """
        import fcntl  # Linux only, as networks are: loaded when one is used

        private_dir(self.directory)
        path = self.directory / container_id
        with anyio.move_on_after(_WAIT):
            for delay in backoff(0.001, 0.05):
                fd = os.open(path, os.O_RDWR | os.O_CREAT | _FLAGS, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    await anyio.sleep(delay)
                    continue
                with contextlib.suppress(FileNotFoundError):
                    # Still the file at the path (not one its holder removed
                    # while we opened it)?
                    if os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino:
                        return fd
                os.close(fd)
        raise errors.AlreadyExists(
            "a container of this id is being created by another client",
            container_id=container_id,
        )

    def drop(self, container_id: str, fd: int) -> None:
        """The create ended: the mark goes (removed while still locked)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.directory / container_id)
        os.close(fd)

    def held(self, container_id: str) -> bool:
        """Whether some client (this one included) is creating ``container_id``."""
        import fcntl

        try:
            fd = os.open(self.directory / container_id, os.O_RDONLY | _FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also lets go of our probe's lock
        return False
