"""A process's standard input as the caller gets it: a send that ends.

Once the process has exited nothing reads its stdin FIFO any more, yet the
shim keeps the FIFO open until the process is deleted (on a terminal its
copy into the terminal just stops), so a write gets no EPIPE: it fills the
pipe and would then wait for good. So a send first looks whether the
process is known to have exited, and whenever the pipe is full it waits for
room and for the exit at once. A process that exited makes the send raise
:class:`StdinNotRead`: a ``FailedPrecondition``, and also anyio's
``BrokenResourceError``, what a stream whose reader is gone raises and what
users of anyio streams already catch. The caller's own deadline or
cancellation ends a send too, as it always did.

Our FIFO stream writes without waiting, so waiting for room and for the
exit together never loses track of how much was written: the exit is only
watched (a task, and without events a Wait call) while the pipe is full.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import anyio
from anyio.abc import ByteSendStream

from .. import errors
from .._cleanup import task_group
from ..fifo import FdSendStream

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._types import ExitStatus
    from ..events._tracker import Slot
    from ._container_ref import ContainerRef

__all__ = ["ProcessInput", "StdinNotRead", "process_input"]


class _Process(Protocol):
    # What of a Process the input needs (Process imports this module).
    @property
    def id(self) -> str: ...

    @property
    def container(self) -> ContainerRef: ...

    @property
    def _slot(self) -> Slot: ...

    async def _wait_exit(self) -> ExitStatus: ...


class StdinNotRead(errors.FailedPrecondition, anyio.BrokenResourceError):
    """The process has exited: nothing reads its standard input any more."""


def process_input(process: _Process, stream: ByteSendStream | None) -> ProcessInput | None:
    """``stream`` (a process's stdin) as :class:`ProcessInput`, if there is one."""
    return None if stream is None else ProcessInput(process, stream)


class ProcessInput(ByteSendStream):
    """A process's stdin whose :meth:`send` ends once the process has exited."""

    def __init__(self, process: _Process, stream: ByteSendStream) -> None:
        self._process = process
        self._stream = stream

    @property
    def fileno(self) -> int:
        """Our end's fd (-1 once closed, or when it is not an fd of ours)."""
        fd = getattr(self._stream, "fileno", -1)
        return fd if isinstance(fd, int) else -1

    async def send(self, item: bytes) -> None:
        """Write all of ``item``.

        Raises:
            StdinNotRead: the process has exited (a ``FailedPrecondition``
                and an ``anyio.BrokenResourceError``); what was written of
                ``item`` before will never be read.
            anyio.ClosedResourceError: our end was closed (``close_stdin``,
                the process deleted, the client closed).
        """
        self._check()
        try:
            if isinstance(self._stream, FdSendStream):
                await self._send_fd(self._stream, item)
            else:
                stream = self._stream
                await self._until_exit(lambda: stream.send(item))
        except StdinNotRead:
            raise
        except anyio.BrokenResourceError as exc:  # EPIPE: its reader is gone
            raise self._not_read() from exc

    async def _send_fd(self, stream: FdSendStream, item: bytes) -> None:
        view = memoryview(item)
        while view:
            self._check()
            written = stream.write_nowait(view)
            if written:
                view = view[written:]
            else:
                await self._until_exit(stream.wait_writable)
        await anyio.lowlevel.checkpoint()

    async def _until_exit(self, operation: Callable[[], Awaitable[None]]) -> None:
        exited = False
        async with task_group() as tg:

            async def watch() -> None:
                nonlocal exited
                try:
                    await self._process._wait_exit()
                except errors.SupervisorError:
                    # Not known (containerd unreachable, the client closed):
                    # the operation goes on as it would without the watch.
                    return
                exited = True
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            await operation()
            tg.cancel_scope.cancel()
        if exited:
            raise self._not_read()

    def _check(self) -> None:
        if self._process._slot.status is not None:
            raise self._not_read()

    def _not_read(self) -> StdinNotRead:
        process = self._process
        return StdinNotRead(
            "the process has exited: nothing reads its input any more",
            container_id=process.container.id,
            process_id=process.id,
        )

    async def aclose(self) -> None:
        await self._stream.aclose()
