"""Resolving a path under a root directory fd without ever leaving it.

The kernel's ``openat2(RESOLVE_IN_ROOT)`` does this in one call, but not on
every kernel this library runs on; the walk below is what it does, in
userspace: one component at a time, each directory opened with
``O_NOFOLLOW | O_DIRECTORY`` relative to the one before, so that a link
swapped in between the look and the open is refused rather than followed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque

__all__ = ["MAX_LINKS", "Resolved", "close_all", "open_flags", "resolve"]

# As the kernel's own limit on links followed in one lookup.
MAX_LINKS = 40


def open_flags(*names: str) -> int:
    """The ``os.O_*`` flags named; one this platform lacks is 0 (the package
    is imported on Windows too, where the copying itself is not offered)."""
    flags = 0
    for name in names:
        flags |= getattr(os, name, 0)
    return flags


_DIR_FLAGS = open_flags("O_RDONLY", "O_DIRECTORY", "O_NOFOLLOW", "O_CLOEXEC")


class Resolved:
    """A path's parent directory (an owned fd) and its last component
    (``""`` for the root itself); ``close()`` closes the fd."""

    __slots__ = ("dir_fd", "name", "path")

    def __init__(self, dir_fd: int, name: str, path: str) -> None:
        self.dir_fd = dir_fd
        self.name = name
        self.path = path

    def close(self) -> None:
        fd, self.dir_fd = self.dir_fd, -1
        if fd >= 0:
            os.close(fd)


def close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)
    fds.clear()


def _parts(path: str) -> deque[str]:
    return deque(p for p in path.split("/") if p not in ("", "."))


def resolve(root_fd: int, path: str, *, follow_last: bool = False) -> Resolved:
    """``path`` (absolute or not: both start at the root) resolved under
    ``root_fd``. Links in the directories on the way are followed, within
    the root; the last component's link only with ``follow_last``. The last
    component need not exist.

    Raises:
        OSError: ``ENOENT``/``ENOTDIR`` for a directory on the way that is
            missing or not one, ``ELOOP`` past :data:`MAX_LINKS` links.
    """
    if "\0" in path:
        raise OSError(errno.EINVAL, f"NUL byte in path {path!r}")
    parts = _parts(path)
    dirs = [os.dup(root_fd)]
    names: list[str] = []
    links = 0
    try:
        while parts:
            part = parts.popleft()
            if part == "..":
                if len(dirs) > 1:
                    os.close(dirs.pop())
                    names.pop()
                continue
            last = not parts
            try:
                info = os.stat(part, dir_fd=dirs[-1], follow_symlinks=False)
            except FileNotFoundError:
                if last:
                    return _done(dirs, names, part)
                raise
            if stat.S_ISLNK(info.st_mode) and (follow_last or not last):
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, f"too many links in {path!r}")
                target = os.readlink(part, dir_fd=dirs[-1])
                if target.startswith("/"):
                    close_all(dirs[1:])
                    del dirs[1:], names[:]
                parts = _parts(target) + parts
                continue
            if last:
                return _done(dirs, names, part)
            dirs.append(os.open(part, _DIR_FLAGS, dir_fd=dirs[-1]))
            names.append(part)
        return _done(dirs, names, "")
    except BaseException:
        close_all(dirs)
        raise


def _done(dirs: list[int], names: list[str], last: str) -> Resolved:
    keep = dirs.pop()
    close_all(dirs)
    shown = "/" + "/".join([*names, last]) if last else "/" + "/".join(names)
    return Resolved(keep, last, shown)
