"""Files in and out of a container, as docker's ``put_archive`` and
``get_archive``: which directory stands for the container's root, and the
thin :class:`~supervisor.Container` methods (the file work is in
:mod:`supervisor.files`).

The root is, in this order: the init process's ``/proc/<pid>/root`` while
the container has a task that has not exited (what the processes see,
their mounts included); the container's own snapshot, mounted privately
and detached at once (a container made from an image, without a task);
the spec's root directory (a container made from a spec, without a task).
"""

from __future__ import annotations

import io
import os
import select
import shutil
import sys
import tarfile
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from .. import errors
from .._types import ProcessState
from ..files._get import ArchiveStat, stat_of, tar_chunks
from ..files._mount import open_detached
from ..files._put import extract
from ..files._walk import open_flags

if TYPE_CHECKING:
    from ._rootfs import Rootfs
    from ._session import Session

__all__ = ["ArchiveMethods", "ArchiveStat", "ArchiveStream"]

_ROOT = open_flags("O_RDONLY", "O_DIRECTORY", "O_CLOEXEC")


def _checkpoint() -> None:
    """Raise, in a worker thread, the cancellation of the task awaiting it."""
    from anyio.from_thread import check_cancelled

    try:
        check_cancelled()
    except RuntimeError:
        pass  # not an anyio worker thread


def _path(path: object) -> str:
    if not isinstance(path, str) or not path or "\0" in path:
        raise errors.InvalidArgument(f"path must be a non-empty string, not {path!r}")
    return path


def _os_error(exc: OSError, doing: str, container_id: str) -> errors.SupervisorError:
    return errors.from_os_error(exc, doing, container_id=container_id)


class ArchiveStream:
    """The tar bytes of :meth:`~supervisor.Container.get_archive`: an async
    iterator of chunks, and an async context manager that closes it. What
    it holds (an fd of the container's root) is released when it is read to
    the end, closed, or garbage-collected."""

    def __init__(self, chunks: _Tar, container_id: str) -> None:
        self._chunks: _Tar | None = chunks
        self._id = container_id

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self._chunks is None:
            raise StopAsyncIteration
        try:
            chunk = await anyio.to_thread.run_sync(next, self._chunks, None)
        except OSError as exc:
            await self.aclose()
            raise _os_error(exc, "cannot read the container's files", self._id) from exc
        except BaseException:
            await self.aclose()
            raise
        if chunk is None:
            await self.aclose()
            raise StopAsyncIteration
        return chunk

    async def read(self) -> bytes:
        """The whole tar (for small ones)."""
        return b"".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        chunks, self._chunks = self._chunks, None
        if chunks is not None:
            chunks.close()

    async def __aenter__(self) -> ArchiveStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _Tar:
    """The tar chunks of a path, owning the fds they are read through: closed
    when the chunks end, on ``close()``, or when it is garbage-collected
    (a get_archive cancelled after the thread made it)."""

    def __init__(self, root_fd: int, path: str) -> None:
        # Takes root_fd over: closed here if this fails.
        self._fds: list[int] = []
        try:
            self.stat, dir_fd, name = stat_of(root_fd, path)
        except BaseException:
            os.close(root_fd)
            raise
        self._fds = [root_fd, dir_fd]
        self._chunks = tar_chunks(dir_fd, name, name, _checkpoint)

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> Iterator[bytes]:
        return self

    def close(self) -> None:
        self._chunks.close()
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)

    def __del__(self) -> None:
        if getattr(self, "_fds", None):
            self.close()


def _spooled(data: object) -> tuple[tarfile.TarFile, IO[bytes]]:
    """In a worker thread: a random-access tar of ``data`` (bytes, or a file
    object copied to an unnamed temporary file when it cannot seek)."""
    if isinstance(data, bytes | bytearray | memoryview):
        source: IO[bytes] = io.BytesIO(bytes(data))
    elif hasattr(data, "read") and getattr(data, "seekable", lambda: False)():
        source = data  # type: ignore[assignment]
    elif hasattr(data, "read"):
        source = tempfile.TemporaryFile()
        shutil.copyfileobj(data, source)
        source.seek(0)
    else:
        raise errors.InvalidArgument("data must be tar bytes or a binary file object")
    try:
        return tarfile.open(fileobj=source, mode="r:*"), source
    except (tarfile.TarError, EOFError, OSError) as exc:
        if source is not data:
            source.close()
        raise errors.InvalidArgument(f"archive refused: not a tar archive: {exc}") from None


class ArchiveMethods:
    """``put_archive`` and ``get_archive``, for :class:`~supervisor.Container`."""

    id: str
    spec: dict[str, Any]
    rootfs: Rootfs | None
    _session: Session

    async def _open_root(self, *, write: bool) -> int:
        """An owned fd of the directory that is the container's root now."""
        if not sys.platform.startswith("linux"):
            raise errors.FailedPrecondition(
                "copying files in and out of a container is for Linux only", container_id=self.id
            )
        transport = self._session.transport
        try:
            record = await transport.get_task(self.id)
        except errors.NotFound:
            record = None
        if record is not None:
            return await self._task_root(record.pid, record.state)
        root = self.spec.get("root")
        if write and isinstance(root, dict) and root.get("readonly", False):
            # As its processes would find it (and docker cp refuses it).
            raise errors.FailedPrecondition(
                "the container's root filesystem is read-only", container_id=self.id
            )
        if self.rootfs is not None:
            mounts = await self.rootfs.mounts()
            scratch = self._session.state_dir / ".archive"
            opened: list[int] = []

            def mount() -> None:
                opened.append(
                    open_detached(mounts, scratch, readonly=not write, container_id=self.id)
                )

            try:
                await anyio.to_thread.run_sync(mount)
            except BaseException:
                for fd in opened:  # cancelled while the thread mounted
                    os.close(fd)
                raise
            return opened[0]
        return self._spec_root()

    async def _task_root(self, pid: int, state: ProcessState) -> int:
        """``/proc/<pid>/root`` of the task's init process, made sure to be
        that process's: a pidfd pins whichever process has ``pid`` before
        the open; if it is still alive afterwards and containerd still
        names ``pid`` as the live task, the two are one (two live processes
        never share a pid), so a pid reused after an exit is never read."""
        exited = errors.FailedPrecondition(
            "the container's task has exited: delete it to reach the files", container_id=self.id
        )
        if state is ProcessState.STOPPED or pid <= 0:
            raise exited
        where = f"/proc/{pid}/root"
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise exited from None
        try:
            root_fd = os.open(where, _ROOT)
        except OSError as exc:
            os.close(pidfd)
            raise _os_error(exc, f"cannot open {where}", self.id) from exc
        try:
            again = await self._session.transport.get_task(self.id)
            alive = not select.select([pidfd], [], [], 0)[0]
            if not alive or again.pid != pid or again.state is ProcessState.STOPPED:
                raise exited
        except BaseException:
            os.close(root_fd)
            raise
        finally:
            os.close(pidfd)
        return root_fd

    def _spec_root(self) -> int:
        root = self.spec.get("root")
        path = root.get("path") if isinstance(root, dict) else None
        if not isinstance(path, str) or not os.path.isabs(path):
            raise errors.FailedPrecondition(
                "the spec's root is not an absolute directory: start a task to reach the files",
                container_id=self.id,
            )
        try:
            return os.open(Path(path), _ROOT)
        except OSError as exc:
            raise _os_error(exc, f"cannot open {path}", self.id) from exc

    async def put_archive(self, path: str, data: bytes | IO[bytes]) -> None:
        """Extract a tar into the directory ``path`` of the container, as
        docker's ``put_archive`` (``supervisor cp SRC ID:DIR``).

        With a task that has not exited, into what its processes see (their
        mounts included; a read-only root refuses); without one, into the
        container's snapshot (made from an image) or its spec's root
        directory (refused when the spec makes it read-only). Every path is
        resolved within the container's root: ``..`` and links, absolute
        or not, never lead out of it (see ``docs/images.md``).

        Args:
            path: an existing directory in the container.
            data: the tar as bytes or a binary file object (read once).

        Raises:
            InvalidArgument: the archive is refused (an absolute or climbing
                member name, a device, a hard link to anything but an
                earlier file of the archive, a name twice): nothing was
                written. NotFound: no directory ``path``. FailedPrecondition:
                the task has exited, or the root is read-only.

        Example::

            await container.put_archive("/tmp", tar_bytes)
        """
        where = _path(path)
        spooled: list[tuple[tarfile.TarFile, IO[bytes]]] = []  # not the result: see below
        await anyio.to_thread.run_sync(lambda: spooled.append(_spooled(data)))
        tar, source = spooled.pop()
        try:
            root_fd = await self._open_root(write=True)
            try:
                await anyio.to_thread.run_sync(extract, root_fd, where, tar, _checkpoint)
            except OSError as exc:
                raise _os_error(exc, f"cannot write into {where}", self.id) from exc
            finally:
                os.close(root_fd)
        finally:
            tar.close()
            if source is not data:
                source.close()

    async def get_archive(self, path: str) -> tuple[ArchiveStream, ArchiveStat]:
        """A tar of ``path`` in the container (a directory with everything
        below it on the same file system) and its stat, as docker's
        ``get_archive`` (``supervisor cp ID:PATH DEST``). Where it reads
        from is as for :meth:`put_archive`; a link at ``path`` itself is
        archived as the link.

        Raises:
            NotFound: nothing at ``path``. FailedPrecondition: the task has
                exited.

        Example::

            stream, stat = await container.get_archive("/etc/hostname")
            async with stream:
                data = await stream.read()
        """
        where = _path(path)
        root_fd = await self._open_root(write=False)
        try:
            # Handed over in a list, not as the thread's result: anyio's
            # worker keeps its last result alive, and with it the fds, until
            # its next job (a cancelled caller never takes it).
            made: list[_Tar] = []
            await anyio.to_thread.run_sync(lambda: made.append(_Tar(root_fd, where)))
        except OSError as exc:
            raise _os_error(exc, f"cannot read {where}", self.id) from exc
        return ArchiveStream(made[0], self.id), made[0].stat
