"""Extracting a checked tar into a directory of a container's root, every
path resolved within that root (:mod:`._walk`), nothing followed out of it."""

from __future__ import annotations

import contextlib
import os
import stat
import tarfile
from collections.abc import Callable
from typing import IO

from ._members import checked_members, member_name
from ._walk import Resolved, open_flags, resolve

__all__ = ["extract"]

_CHUNK = 1 << 20
_DIR = open_flags("O_RDONLY", "O_DIRECTORY", "O_NOFOLLOW", "O_CLOEXEC")
_NEW_FILE = open_flags("O_WRONLY", "O_CREAT", "O_EXCL", "O_NOFOLLOW", "O_CLOEXEC")


def _clear(at: Resolved, keep_dir: bool) -> None:
    """Make room for a new entry: a directory stays when ``keep_dir``; any
    other entry there (a file, a link: never followed) is removed."""
    try:
        info = os.stat(at.name, dir_fd=at.dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        if keep_dir:
            return
        raise IsADirectoryError(21, f"{at.path} is a directory")
    os.unlink(at.name, dir_fd=at.dir_fd)


def _write_file(at: Resolved, member: tarfile.TarInfo, data: IO[bytes] | None) -> None:
    fd = os.open(at.name, _NEW_FILE, 0o600, dir_fd=at.dir_fd)
    try:
        left = member.size
        while left > 0 and data is not None:
            chunk = data.read(min(_CHUNK, left))
            if not chunk:
                raise EOFError(f"the archive ends inside {member.name!r}")
            os.write(fd, chunk)
            left -= len(chunk)
        os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, member.mode & 0o7777)
    finally:
        os.close(fd)


def _make_parents(root_fd: int, dest: str, name: str) -> None:
    """The directories above ``name`` that the archive does not hold, as
    tar makes them (root's, 0755)."""
    parts = name.split("/")[:-1]
    for end in range(1, len(parts) + 1):
        at = resolve(root_fd, f"{dest}/{'/'.join(parts[:end])}", follow_last=True)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(at.name, 0o755, dir_fd=at.dir_fd)
        finally:
            at.close()


def _entry(
    root_fd: int, dest: str, name: str, member: tarfile.TarInfo, tar: tarfile.TarFile
) -> None:
    try:
        at = resolve(root_fd, f"{dest}/{name}")
    except FileNotFoundError:
        _make_parents(root_fd, dest, name)
        at = resolve(root_fd, f"{dest}/{name}")
    try:
        if member.isdir():
            _clear(at, keep_dir=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(at.name, 0o700, dir_fd=at.dir_fd)
            os.chown(at.name, member.uid, member.gid, dir_fd=at.dir_fd, follow_symlinks=False)
            os.chmod(at.name, member.mode & 0o7777, dir_fd=at.dir_fd, follow_symlinks=False)
            return
        _clear(at, keep_dir=False)
        if member.isreg():
            _write_file(at, member, tar.extractfile(member))
        elif member.issym():
            os.symlink(member.linkname, at.name, dir_fd=at.dir_fd)
            os.chown(at.name, member.uid, member.gid, dir_fd=at.dir_fd, follow_symlinks=False)
        else:  # a hard link to an earlier regular member (checked)
            source = resolve(root_fd, f"{dest}/{member_name(member.linkname)}")
            try:
                os.link(
                    source.name,
                    at.name,
                    src_dir_fd=source.dir_fd,
                    dst_dir_fd=at.dir_fd,
                    follow_symlinks=False,
                )
            finally:
                source.close()
            return
        mtime = int(member.mtime * 1_000_000_000)
        os.utime(at.name, ns=(mtime, mtime), dir_fd=at.dir_fd, follow_symlinks=False)
    finally:
        at.close()


def _renamed(name: str, rename: tuple[str, str] | None) -> str:
    if rename is None:
        return name
    old, new = rename
    head, sep, rest = name.partition("/")
    return new + sep + rest if head == old else name


def extract(
    root_fd: int,
    path: str,
    tar: tarfile.TarFile,
    checkpoint: Callable[[], None],
    rename: tuple[str, str] | None = None,
) -> None:
    """Extract ``tar`` into the directory ``path`` (which must exist) of the
    root at ``root_fd``. Every member is checked before the first is written
    (:func:`~._members.checked_members`); ``checkpoint`` is called between
    members (it raises to stop). ``rename`` = ``(old, new)`` writes the
    members under a first component ``old`` under ``new`` instead (what
    ``cp SRC DEST`` does when ``DEST`` does not exist).

    Raises:
        InvalidArgument: the archive is refused. OSError: ``path`` is
            missing or not a directory, or writing failed.
    """
    members = [(_renamed(n, rename), m) for n, m in checked_members(tar)]
    if rename is not None:
        for _, member in members:
            if member.islnk():
                member.linkname = _renamed(member_name(member.linkname), rename)
    top = resolve(root_fd, path, follow_last=True)
    try:
        if top.name:
            os.close(os.open(top.name, _DIR, dir_fd=top.dir_fd))
        dest = top.path
    finally:
        top.close()
    for name, member in members:
        checkpoint()
        _entry(root_fd, dest, name, member, tar)
