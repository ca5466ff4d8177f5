"""Files and directories the library writes: ours, checked, never followed.

Every directory the library writes into must belong to the user running it
and must not be writable by anybody else: otherwise another user could swap
a file or plant a symlink between our check and our use. Files are created
with ``O_EXCL|O_NOFOLLOW`` and read with ``O_NOFOLLOW``.

On platforms without POSIX ownership (Windows) the ownership checks are
skipped; the directories there are made by the same calls.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from . import errors

__all__ = ["check_owned", "private_dir", "read_small", "write_new"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_geteuid = getattr(os, "geteuid", None)


def check_owned(path: Path, st: os.stat_result | None = None) -> None:
    """Refuse a directory that is a symlink, not ours, or writable by others.

    Raises:
        FailedPrecondition: it fails one of those checks.
    """
    if _geteuid is None:
        return
    if st is None:
        st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise errors.FailedPrecondition(f"{path} is not a directory (or is a symlink)")
    if st.st_uid != _geteuid():
        raise errors.FailedPrecondition(
            f"{path} belongs to uid {st.st_uid}, not to this process (uid {_geteuid()})"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise errors.FailedPrecondition(
            f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o})"
        )


def private_dir(path: Path, mode: int = 0o700) -> Path:
    """``mkdir -p`` where every level made gets ``mode`` (``Path.mkdir`` would
    give parents the umask's) and passes :func:`check_owned`, as the
    directory itself must, made or found."""
    missing: list[Path] = []
    level = path
    while not os.path.lexists(level) and level != level.parent:
        missing.append(level)
        level = level.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            pass  # made meanwhile by someone else: checked like our own
        check_owned(directory)
    check_owned(path)
    return path


def write_new(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``path`` atomically: a fresh temporary file beside it (never an
    existing file, never through a symlink), then a rename over it."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_small(path: Path, limit: int = 1 << 16) -> bytes:
    """The contents of a small file, not followed if it is a symlink."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)
