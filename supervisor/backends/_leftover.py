"""A task create refused because of a task directory containerd cannot clean.

containerd 1.6 killed while it creates a task can leave the task's bundle
directory behind, which its successor fails to clean up (the shim's
``runtime`` file is missing); every later create of a task for that
container then fails with "failed to start shim: mkdir <dir>: file exists".
The same words come back to the loser of two concurrent creates, while the
winner's create is in flight: the leftover is told apart by its age. A
directory whose last change is older than the socket containerd listens on
was made by an earlier containerd, and a create in flight is not; and
containerd must not know a task of that id.

The library does not remove it: the directory is the state of a containerd
it may not own (:class:`supervisor.Daemon` removes such directories under
its own state directory before it starts containerd).
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable

from .. import errors

__all__ = ["leftover_dir", "raise_if_leftover"]

_MKDIR = re.compile(r"failed to start shim: mkdir (?P<path>/.+): file exists")


def leftover_dir(message: str, socket_path: str) -> str | None:
    """The task directory ``message`` names, if it is older than the
    containerd listening on ``socket_path`` (None if it is not, or if that
    cannot be told here)."""
    match = _MKDIR.search(message)
    if match is None or not socket_path:
        return None
    path = match.group("path")
    try:
        made = os.lstat(path)
        listening = os.lstat(socket_path)
    except OSError:
        return None
    if max(made.st_mtime_ns, made.st_ctime_ns) >= listening.st_mtime_ns:
        return None
    return path


async def raise_if_leftover(
    exc: errors.AlreadyExists,
    container_id: str,
    socket_path: str,
    get_task: Callable[[str], Awaitable[object]],
) -> None:
    """Raise :class:`~supervisor.errors.FailedPrecondition` naming the
    directory if a leftover refused the task create that failed with
    ``exc``; return if not (containerd's error stands)."""
    path = leftover_dir(exc.message, socket_path)
    if path is None:
        return
    try:
        await get_task(container_id)
    except errors.NotFound:
        raise _leftover_error(path, container_id) from exc
    except errors.SupervisorError:
        return  # no verdict


def _leftover_error(path: str, container_id: str) -> errors.FailedPrecondition:
    return errors.FailedPrecondition(
        f"containerd cannot create a task for this container: the task directory {path} "
        "was left behind by a containerd killed while it created a task, and containerd "
        "cannot clean it up. Stop containerd, remove that directory (and the work "
        "directory its 'work' link names), and start containerd again; a containerd run "
        "by supervisor.Daemon has such directories removed before each start",
        container_id=container_id,
    )
