"""A user given by name (the image's ``User``, or ``user=``) resolved as
``docker run`` resolves it: in the image's own ``/etc/passwd`` and
``/etc/group``, read from the container's new snapshot (mounted read-only
and detached at once) through paths confined to it. The files belong to
whoever built the image: they are read only, at most 1 MiB each, and never
followed out of the snapshot."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread

from .. import errors
from ..files._mount import open_detached
from ..files._walk import open_flags, resolve

__all__ = ["lookup_user", "resolve_user"]

_MAX = 1 << 20
_READ = open_flags("O_RDONLY", "O_NOFOLLOW", "O_NONBLOCK", "O_CLOEXEC")


def _read(root_fd: int, path: str) -> list[list[str]]:
    """The ``:``-separated lines of ``path`` in the root; none if it is
    missing or not a regular file."""
    try:
        at = resolve(root_fd, path, follow_last=True)
    except OSError:
        return []
    try:
        fd = os.open(at.name, _READ, dir_fd=at.dir_fd)
    except OSError:
        return []
    finally:
        at.close()
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        data = os.read(fd, _MAX)
    finally:
        os.close(fd)
    return [line.split(":") for line in data.decode("utf-8", "replace").splitlines()]


def _find(rows: list[list[str]], name: str) -> list[str] | None:
    return next((r for r in rows if len(r) >= 4 and r[0] == name and r[2].isdigit()), None)


def lookup_user(root_fd: int, text: str) -> dict[str, int]:
    """``name[:group]``, ``uid:group`` or ``name:gid`` as an OCI user, from
    the root's /etc/passwd (the user's own group unless one is given) and
    /etc/group."""
    user, _, group = text.partition(":")
    if user.isdigit():
        uid, gid = int(user), 0
    elif user == "root":
        uid = gid = 0
    else:
        row = _find(_read(root_fd, "/etc/passwd"), user)
        if row is None or not row[3].isdigit():
            raise errors.InvalidArgument(
                f"user {text!r}: no user {user!r} in the image's /etc/passwd"
            )
        uid, gid = int(row[2]), int(row[3])
    if group.isdigit():
        gid = int(group)
    elif group == "root":
        gid = 0
    elif group:
        row = _find(_read(root_fd, "/etc/group"), group)
        if row is None:
            raise errors.InvalidArgument(
                f"user {text!r}: no group {group!r} in the image's /etc/group"
            )
        gid = int(row[2])
    if uid >= 1 << 32 or gid >= 1 << 32:
        raise errors.InvalidArgument(f"user {text!r}: an id is out of range")
    return {"uid": uid, "gid": gid}


async def resolve_user(
    mounts: Sequence[Any], text: str, scratch: Path, container_id: str
) -> dict[str, int]:
    """:func:`lookup_user` in a snapshot given by its mounts."""

    def work() -> dict[str, int]:
        fd = open_detached(mounts, scratch, readonly=True, container_id=container_id)
        try:
            return lookup_user(fd, text)
        finally:
            os.close(fd)

    return await anyio.to_thread.run_sync(work)
