"""Each container's plugin lock, held by its plugin processes too.

A plugin runs in a session of its own, so it outlives an application killed
while running it: an ADD left running that way goes on making its veth and
iptables rules while the next run's sweep DELs the same container, and
whichever finishes last wins (portmap's DEL fails with its chain still
referenced, or the ADD's rules outlive the DEL).  So whoever runs a
container's plugins holds an exclusive ``flock`` on ``locks/<id>``, and
every plugin run under it inherits the locked fd (:data:`INHERITED`): the
lock is let go only when the holder and every plugin process it started
(and their children, iptables included) are gone.  A sweep takes the same
lock before it releases a container, so it waits for such a plugin rather
than racing it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from contextvars import ContextVar
from pathlib import Path

import anyio

from .. import errors
from .._timeouts import backoff

__all__ = ["INHERITED", "container_locked", "drop_lock"]

# The locked fd the plugins started in this context inherit (None: none).
INHERITED: ContextVar[int | None] = ContextVar("supervisor_network_inherited_lock", default=None)

# Windows has neither flag (the package is imported there, never used).
_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


def _try_lock(path: Path) -> int | None:
    """The locked fd of the file now at ``path``, or None if it is held (or
    was removed while we opened it)."""
    import fcntl  # Linux only: the package is imported on Windows too

    fd = os.open(path, _FLAGS, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        # Still the file at the path, not one its last holder removed
        # (drop_lock) while we opened it?
        if os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino:
            return fd
    except FileNotFoundError:
        pass
    os.close(fd)
    return None


@contextlib.asynccontextmanager
async def container_locked(directory: Path, container_id: str, bound: float) -> AsyncIterator[int]:
    """Hold ``directory/<container_id>`` exclusively; plugins run inside
    inherit it.  Yields the locked fd.

    Raises:
        DeadlineExceeded: still held after ``bound`` seconds (by another
            client's attach or detach, or by plugins a killed one left).
    """
    path = directory / container_id
    fd: int | None = None
    with anyio.move_on_after(bound):
        for delay in backoff(0.002, 0.05):
            fd = _try_lock(path)
            if fd is not None:
                break
            await anyio.sleep(delay)
    if fd is None:
        raise errors.DeadlineExceeded(
            f"the container's network is still being changed after {bound:g}s "
            "(by another client, or by plugins a killed one left running)",
            container_id=container_id,
        )
    token = INHERITED.set(fd)
    try:
        yield fd
    finally:
        INHERITED.reset(token)
        os.close(fd)


def drop_lock(directory: Path, container_id: str) -> None:
    """Remove the lock file (called while holding it, once nothing of the
    container is left: a waiter then finds the file gone and makes anew)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(directory / container_id)
