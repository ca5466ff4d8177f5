"""A tar stream of a path in a container's root, read without following a
link out of it: the path resolved within the root (:mod:`._walk`), the tree
below it walked by directory fds (``os.fwalk``, links not followed), each
file opened with ``O_NOFOLLOW`` and checked to be the one looked at."""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

from ._walk import open_flags, resolve

__all__ = ["ArchiveStat", "stat_of", "tar_chunks"]

_CHUNK = 1 << 20
_BLOCK = tarfile.BLOCKSIZE
_READ = open_flags("O_RDONLY", "O_NOFOLLOW", "O_NONBLOCK", "O_CLOEXEC")


@dataclass(frozen=True, slots=True)
class ArchiveStat:
    """What :meth:`~supervisor.Container.get_archive` archived, as docker's
    ``X-Docker-Container-Path-Stat`` tells it.

    Attributes:
        name: the last component of the path (``/`` for the root).
        size: bytes, for a regular file (else what ``lstat`` says).
        mode: ``st_mode`` (type and permission bits).
        mtime: modification time, seconds since the epoch.
        link_target: what a symbolic link points at, else ``""``.
    """

    name: str
    size: int
    mode: int
    mtime: float
    link_target: str = ""


def stat_of(root_fd: int, path: str) -> tuple[ArchiveStat, int, str]:
    """The stat of ``path`` (its last link not followed), with an owned fd
    of its parent directory and its name there ("." for the root)."""
    at = resolve(root_fd, path)
    try:
        name = at.name or "."
        info = os.stat(name, dir_fd=at.dir_fd, follow_symlinks=False)
        link = os.readlink(name, dir_fd=at.dir_fd) if stat.S_ISLNK(info.st_mode) else ""
    except BaseException:
        at.close()
        raise
    shown = ArchiveStat(at.name or "/", info.st_size, info.st_mode, info.st_mtime, link)
    fd, at.dir_fd = at.dir_fd, -1
    return shown, fd, name


def _info(arcname: str, st: os.stat_result, link: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arcname)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    if stat.S_ISREG(st.st_mode):
        info.size = st.st_size
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, link
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    else:
        info.type = tarfile.FIFOTYPE  # a FIFO or a socket: never opened
    return info


class _Writer:
    """Tar blocks gathered into chunks of about :data:`_CHUNK` bytes."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.links: dict[tuple[int, int], str] = {}

    def take(self) -> bytes:
        out, self.buffer = bytes(self.buffer), bytearray()
        return out

    def entry(self, dir_fd: int, name: str, arcname: str) -> Iterator[bytes]:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        link = os.readlink(name, dir_fd=dir_fd) if stat.S_ISLNK(st.st_mode) else ""
        info = _info(arcname, st, link)
        key = (st.st_dev, st.st_ino)
        if info.isreg() and st.st_nlink > 1:
            if key in self.links:
                info.type, info.linkname, info.size = tarfile.LNKTYPE, self.links[key], 0
            else:
                self.links[key] = arcname
        self.buffer += info.tobuf(format=tarfile.PAX_FORMAT)
        if info.isreg() and info.size:
            yield from self._data(dir_fd, name, st, info.size)

    def _data(self, dir_fd: int, name: str, st: os.stat_result, size: int) -> Iterator[bytes]:
        fd = os.open(name, _READ, dir_fd=dir_fd)
        try:
            if not os.path.samestat(st, os.fstat(fd)):
                raise FileNotFoundError(2, f"{name} changed while it was read")
            left = size
            while left > 0:
                chunk = os.read(fd, min(_CHUNK, left)) or b"\0" * min(_CHUNK, left)
                self.buffer += chunk  # a file that shrank is padded: the header said size
                left -= len(chunk)
                if len(self.buffer) >= _CHUNK:
                    yield self.take()
        finally:
            os.close(fd)
        self.buffer += b"\0" * (-size % _BLOCK)


def tar_chunks(
    dir_fd: int, name: str, arcname: str, checkpoint: Callable[[], None]
) -> Generator[bytes, None, None]:
    """The tar of ``name`` in ``dir_fd`` under ``arcname``: a directory with
    everything below it on the same file system (a mount below is not
    descended into, as ``tar --one-file-system``)."""
    out = _Writer()
    top = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    yield from out.entry(dir_fd, name, arcname)
    if stat.S_ISDIR(top.st_mode):
        for path, dirs, files, fd in os.fwalk(name, dir_fd=dir_fd, follow_symlinks=False):
            checkpoint()
            here = arcname + path[len(name) :]
            entries = sorted(dirs) + sorted(files)
            for sub in list(dirs):
                if os.stat(sub, dir_fd=fd, follow_symlinks=False).st_dev != top.st_dev:
                    dirs.remove(sub)  # archived as an empty directory
            for entry in entries:
                yield from out.entry(fd, entry, f"{here}/{entry}")
                if len(out.buffer) >= _CHUNK:
                    yield out.take()
    out.buffer += b"\0" * (2 * _BLOCK)
    yield out.take()
