"""Reading an image archive as the hostile input it is: every member checked
before anything is read (a path that is absolute or climbs, a device, a name
given twice, too many members, a blob past :data:`MAX_BLOB_SIZE`, a JSON
document past ``MAX_MANIFEST_SIZE``, a link to anything but a regular file
of the archive refuse the whole archive), then regular files read by name;
a link reads as the file it names."""

from __future__ import annotations

import os
import posixpath
import tarfile
from collections.abc import Iterator
from typing import IO

from .. import errors
from ..files._members import member_name as _files_member_name
from ..oci._manifest import MAX_MANIFEST_SIZE

__all__ = ["MAX_BLOB_SIZE", "MAX_MEMBERS", "Archive", "checkpoint", "member_name", "refuse"]

# An archive with more members than this is refused (a layout has a few per
# image; a legacy docker save a few per layer).
MAX_MEMBERS = 100_000
# No single blob may claim more than this.
MAX_BLOB_SIZE = 64 << 30
_CHUNK = 1 << 20
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def checkpoint() -> None:
    """In a worker thread of ``anyio.to_thread.run_sync``: raise the
    cancellation of the task waiting for it, so that reading a large
    archive stops when its caller is cancelled. Elsewhere: nothing."""
    from anyio.from_thread import check_cancelled

    try:
        check_cancelled()
    except RuntimeError:
        pass  # not an anyio worker thread (a direct call)


def refuse(message: str) -> errors.InvalidArgument:
    """The error that refuses a whole archive."""
    return errors.InvalidArgument(f"image archive refused: {message}")


def member_name(raw: str) -> str:
    """A member's path, normalised; refused if it could land outside (the
    rule :meth:`Container.put_archive` applies too)."""
    return _files_member_name(raw, what="image archive")


class Archive:
    """An open tar whose members were all checked: regular files by name."""

    def __init__(self, tar: tarfile.TarFile, files: dict[str, tarfile.TarInfo]) -> None:
        self._tar = tar
        self.files = files
        # What the importer worked out of a member: (digest, size, gzipped).
        self.hashed: dict[str, tuple[str, int, bool]] = {}

    @classmethod
    def open(cls, path: str) -> Archive:
        try:
            fd = os.open(path, os.O_RDONLY | _CLOEXEC)
        except FileNotFoundError:
            raise errors.NotFound(f"no such archive: {path}") from None
        except OSError as exc:
            raise errors.from_os_error(exc, f"cannot open {path}", given=True) from exc
        file = os.fdopen(fd, "rb")
        try:
            tar = tarfile.open(fileobj=file, mode="r:*")
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            file.close()
            raise refuse(f"{path} is not a tar archive: {exc}") from None
        try:
            return cls(tar, _scan(tar))
        except BaseException:
            tar.close()
            file.close()
            raise

    def close(self) -> None:
        fileobj = self._tar.fileobj
        self._tar.close()
        if fileobj is not None:
            fileobj.close()

    def _open(self, name: str) -> IO[bytes]:
        reader = self._tar.extractfile(self.files[name])
        if reader is None:
            raise refuse(f"{name} is not a regular file")
        return reader

    def size(self, name: str) -> int:
        return int(self.files[name].size)

    def read_small(self, name: str, what: str) -> bytes:
        if name not in self.files:
            raise refuse(f"{what}: no member {name!r}")
        if self.size(name) > MAX_MANIFEST_SIZE:
            raise refuse(f"{what} ({name}) is larger than {MAX_MANIFEST_SIZE} bytes")
        try:
            with self._open(name) as f:
                return f.read(MAX_MANIFEST_SIZE + 1)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise refuse(f"{name}: {exc}") from None

    def chunks(self, name: str) -> Iterator[bytes]:
        try:
            with self._open(name) as f:
                while chunk := f.read(_CHUNK):
                    checkpoint()
                    yield chunk
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise refuse(f"{name}: {exc}") from None


def _link_target(name: str, member: tarfile.TarInfo) -> str:
    # A hard link names an archive path; a symbolic one is relative to its
    # own directory (as docker save writes one per repeated layer).
    raw = member.linkname
    if member.issym():
        if raw.startswith("/"):
            raise refuse(f"{member.name!r} links to the absolute path {raw!r}")
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(name), raw))
        if joined == ".." or joined.startswith("../"):
            raise refuse(f"{member.name!r} links out of the archive ({raw!r})")
        raw = joined
    return member_name(raw)


def _scan(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    files: dict[str, tarfile.TarInfo] = {}
    links: dict[str, str] = {}
    seen: set[str] = set()
    count = 0
    try:
        for member in tar:
            count += 1
            if count > MAX_MEMBERS:
                raise refuse(f"more than {MAX_MEMBERS} members")
            if count % 256 == 0:
                checkpoint()
            name = member_name(member.name)
            if member.isdir():
                continue
            if name in seen:
                raise refuse(f"{name!r} appears twice")
            seen.add(name)
            if member.issym() or member.islnk():
                links[name] = _link_target(name, member)
                continue
            if not member.isreg() or member.issparse():
                raise refuse(f"{member.name!r} is not a regular file")
            if member.size > MAX_BLOB_SIZE:
                raise refuse(f"{name!r} is larger than {MAX_BLOB_SIZE} bytes")
            files[name] = member
    except (tarfile.TarError, EOFError, OSError, UnicodeError) as exc:
        raise refuse(f"unreadable tar: {exc}") from None
    # A link reads as the regular file it names; one naming anything else
    # (nothing, a directory, another link, so no chains and no loops) refuses
    # the archive.
    for name, target in links.items():
        if target not in files:
            raise refuse(f"{name!r} links to {target!r}, which is not a file of the archive")
        files[name] = files[target]
    return files
