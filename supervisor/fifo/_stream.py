"""An owned non-blocking file descriptor as an anyio byte stream.

The fd is ours alone: we close it exactly once, and set the attribute to -1
*before* closing, so that no later call can touch a number the kernel may
already have handed to someone else.
"""

from __future__ import annotations

import errno
import os

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream

__all__ = ["FdReceiveStream", "FdSendStream"]

_CHUNK = 65536


class _OwnedFd:
    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd

    def close_now(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            # Wake any task parked in wait_readable/wait_writable on this fd:
            # it must see ClosedResourceError, not a recycled fd number.
            try:
                anyio.notify_closing(fd)
            except RuntimeError:
                pass  # no event loop: nobody can be waiting
            os.close(fd)


class FdReceiveStream(ByteReceiveStream):
    """The read end of a pipe or FIFO; :meth:`receive` raises ``EndOfStream`` at EOF."""

    def __init__(self, fd: int) -> None:
        self._fd = _OwnedFd(fd)

    @property
    def fileno(self) -> int:
        return self._fd.fd

    async def receive(self, max_bytes: int = _CHUNK) -> bytes:
        while True:
            fd = self._fd.fd
            if fd < 0:
                raise anyio.ClosedResourceError
            try:
                data = os.read(fd, max_bytes)
            except BlockingIOError:
                try:
                    await anyio.wait_readable(fd)
                except anyio.ClosedResourceError:
                    raise
                except OSError as exc:  # the fd was closed under us
                    raise anyio.ClosedResourceError from exc
                continue
            if not data:
                raise anyio.EndOfStream
            return data

    async def aclose(self) -> None:
        self._fd.close_now()
        await anyio.lowlevel.checkpoint()

    def close(self) -> None:
        self._fd.close_now()


class FdSendStream(ByteSendStream):
    """The write end of a pipe or FIFO; :meth:`aclose` gives the reader EOF."""

    def __init__(self, fd: int) -> None:
        self._fd = _OwnedFd(fd)

    @property
    def fileno(self) -> int:
        return self._fd.fd

    async def send(self, item: bytes) -> None:
        view = memoryview(item)
        while view:
            written = self.write_nowait(view)
            if written:
                view = view[written:]
            else:
                await self.wait_writable()
        await anyio.lowlevel.checkpoint()

    def write_nowait(self, data: memoryview) -> int:
        """Write what fits now, without waiting: how much (0 when the pipe is
        full). Lets a caller wait for room and for something else at once.

        Raises:
            anyio.ClosedResourceError: our end is closed.
            anyio.BrokenResourceError: nobody has the other end open.
        """
        fd = self._fd.fd
        if fd < 0:
            raise anyio.ClosedResourceError
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except BrokenPipeError as exc:
            raise anyio.BrokenResourceError from exc
        except OSError as exc:
            if exc.errno == errno.EBADF:
                raise anyio.ClosedResourceError from exc
            raise

    async def wait_writable(self) -> None:
        """Until the pipe has room (or our end is closed: ``ClosedResourceError``)."""
        fd = self._fd.fd
        if fd < 0:
            raise anyio.ClosedResourceError
        try:
            await anyio.wait_writable(fd)
        except anyio.ClosedResourceError:
            raise
        except OSError as exc:
            raise anyio.ClosedResourceError from exc

    async def aclose(self) -> None:
        self._fd.close_now()
        await anyio.lowlevel.checkpoint()

    def close(self) -> None:
        self._fd.close_now()
