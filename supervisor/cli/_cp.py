"""``supervisor cp``: files between a container and this machine, as
``docker cp`` (``ID:PATH`` on one side; ``-`` for a tar on stdin or
stdout). Both directions go through the container's ``put_archive`` and
``get_archive``; what comes out of a container is extracted here with the
same confinement as what goes in (nothing lands outside the destination)."""

from __future__ import annotations

import argparse
import os
import sys
import tarfile
import tempfile
from typing import IO, TYPE_CHECKING

from ._errors import CliError

if TYPE_CHECKING:
    from ..domain._container import Container

__all__ = ["add_cp_arguments", "cp"]


def add_cp_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="ID:PATH in a container, a path here, or -")
    p.add_argument("dest", metavar="DEST", help="ID:PATH in a container, a path here, or -")


def _split(text: str) -> tuple[str, str] | None:
    """``(id, path)`` for ``ID:PATH``; None for a local path (one with a
    slash before any colon, as docker reads it)."""
    head, sep, tail = text.partition(":")
    if not sep or not head or "/" in head:
        return None
    return head, tail or "/"


async def cp(args: argparse.Namespace) -> int:
    src, dest = _split(args.src), _split(args.dest)
    if (src is None) == (dest is None):
        raise CliError("cp needs ID:PATH on exactly one side: cp ID:SRC DEST or cp SRC ID:DEST")
    from ._connection import open_client

    async with open_client(args) as client:
        if src is not None:
            await _copy_out(await client.load_container(src[0]), src[1], args.dest)
        else:
            assert dest is not None
            await _copy_in(args.src, await client.load_container(dest[0]), dest[1])
    return 0


async def _copy_out(container: Container, path: str, dest: str) -> None:
    import anyio.to_thread
    from anyio.from_thread import check_cancelled

    from .. import errors
    from ..files._put import extract

    stream, stat = await container.get_archive(path)
    async with stream:
        with tempfile.TemporaryFile() as spool:
            async for chunk in stream:
                if dest == "-":
                    sys.stdout.buffer.write(chunk)
                else:
                    spool.write(chunk)
            if dest == "-":
                sys.stdout.buffer.flush()
                return
            spool.seek(0)
            into, rename = _local_target(dest, stat.name)
            fd = os.open(into, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                with tarfile.open(fileobj=spool, mode="r:") as tar:
                    await anyio.to_thread.run_sync(extract, fd, "/", tar, check_cancelled, rename)
            except OSError as exc:
                raise errors.from_os_error(exc, f"cannot write into {dest}") from exc
            finally:
                os.close(fd)


def _local_target(dest: str, name: str) -> tuple[str, tuple[str, str] | None]:
    """Where to extract here, and the rename of the archived top entry: into
    an existing directory as it is; else as ``dest`` itself (in its parent)."""
    if os.path.isdir(dest):
        return dest, None
    parent = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(parent):
        raise CliError(f"cp: {parent} is not a directory here")
    return parent, (name, os.path.basename(os.path.abspath(dest)))


def _local_tar(src: str, arcname: str) -> IO[bytes]:
    """In a worker thread: a temporary file holding the tar of ``src``."""
    if not os.path.lexists(src):
        raise CliError(f"cp: {src}: no such file or directory here")
    spool = tempfile.TemporaryFile()
    try:
        with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(src, arcname=arcname or os.path.basename(os.path.abspath(src)))
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


async def _copy_in(src: str, container: Container, path: str) -> None:
    import posixpath
    import stat

    import anyio.to_thread

    from .. import errors

    if src == "-":
        await container.put_archive(path, sys.stdin.buffer)
        return
    # Into an existing directory as it is; else as PATH itself, in its parent.
    into, arcname = path, ""
    parent = posixpath.dirname(path.rstrip("/")) or "/"
    try:
        stream, found = await container.get_archive(path)
        await stream.aclose()
        if not stat.S_ISDIR(found.mode):
            into, arcname = parent, found.name
    except errors.NotFound:
        into, arcname = parent, posixpath.basename(path.rstrip("/"))
    spool = await anyio.to_thread.run_sync(_local_tar, src, arcname)
    try:
        await container.put_archive(into, spool)
    finally:
        spool.close()
