"""A process's standard input as the caller gets it: a send that ends.

Once a process has exited its stdin FIFO may have no reader any more, yet
the shim keeps the FIFO open until the process is deleted (on a terminal
its copy into the terminal just stops), so a write gets no EPIPE: it fills
the pipe and would then wait for good. So whenever the pipe is full a send
waits for room and for the exit at once; once the exit is known it gives
the pipe a bounded while to drain (a child of the process, an exec's
background job say, may hold its stdin and still read), and then raises
:class:`StdinNotRead`: a ``FailedPrecondition``, and also anyio's
``BrokenResourceError``, what a stream whose reader is gone raises and what
users of anyio streams already catch. The caller's own deadline or
cancellation ends a send too, as it always did.

Our FIFO stream writes without waiting, so waiting for room and for the
exit together never loses track of how much was written. The exit is only
watched while the pipe is full, by one task per send (without events, one
Wait call per send, however often the pipe fills).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import anyio
from anyio.abc import ByteSendStream

from .. import errors
from .._cleanup import task_group
from .._timeouts import backoff
from ..fifo import FdSendStream

if TYPE_CHECKING:
    from .._types import ExitStatus
    from ..events._tracker import Slot
    from ._container_ref import ContainerRef

__all__ = ["ProcessInput", "StdinNotRead", "process_input"]

# How long a full pipe may stay full after the process exited before a send
# gives up: room appearing in that while means something still reads.
_DRAIN_AFTER_EXIT = 1.0


class _Process(Protocol):
    # What of a Process the input needs (Process imports this module).
    @property
    def id(self) -> str: ...

    @property
    def container(self) -> ContainerRef: ...

    @property
    def _slot(self) -> Slot: ...

    async def _wait_exit(self) -> ExitStatus: ...


class StdinNotRead(errors.StdinNotRead, anyio.BrokenResourceError):
    """:class:`supervisor.errors.StdinNotRead` as an anyio stream error too
    (errors.py stays free of anyio: the plugin imports it)."""


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
            StdinNotRead: the process has exited and the pipe stayed full (a
                ``FailedPrecondition`` and an ``anyio.BrokenResourceError``);
                what was written of ``item`` before will never be read.
            anyio.ClosedResourceError: our end was closed (``close_stdin``,
                the process deleted, the client closed).
        """
        try:
            if isinstance(self._stream, FdSendStream):
                await self._send_fd(self._stream, item)
            else:
                await self._send_other(self._stream, item)
        except anyio.BrokenResourceError as exc:  # EPIPE: its reader is gone
            if isinstance(exc, StdinNotRead):
                raise
            raise self._not_read() from exc

    async def _send_fd(self, stream: FdSendStream, item: bytes) -> None:
        view = memoryview(item)
        exited = anyio.Event()
        waiting: list[anyio.CancelScope] = []
        gave_up = False
        async with task_group() as tg:
            watching = False
            while view:
                written = stream.write_nowait(view)
                if written:
                    view = view[written:]
                    continue
                if exited.is_set() or self._process._slot.status is not None:
                    with anyio.move_on_after(_DRAIN_AFTER_EXIT) as scope:
                        await stream.wait_writable()
                    if scope.cancelled_caught:
                        gave_up = True
                        break
                    continue
                if not watching:
                    watching = True
                    tg.start_soon(self._watch, exited, waiting)
                with anyio.CancelScope() as scope:
                    waiting.append(scope)
                    try:
                        await stream.wait_writable()
                    finally:
                        waiting.remove(scope)
            tg.cancel_scope.cancel()
        if gave_up:
            raise self._not_read()
        await anyio.lowlevel.checkpoint()

    async def _watch(self, exited: anyio.Event, waiting: list[anyio.CancelScope]) -> bool:
        """Until the process's exit is known (True), or the client closed."""
        # Keeps asking through a containerd that is away for a while: giving
        # up would leave the send waiting on a pipe nobody will empty.
        delays = backoff(0.05, 2.0)
        while True:
            try:
                await self._process._wait_exit()
            except errors.Closed:
                return False  # the client closed: our end is closed, the send ends
            except errors.SupervisorError:
                await anyio.sleep(next(delays))
                continue
            break
        exited.set()
        for scope in waiting:
            scope.cancel()
        return True

    async def _send_other(self, stream: ByteSendStream, item: bytes) -> None:
        # A stream we cannot write without waiting (a named pipe): known exit
        # refuses up front, and an exit while it waits ends the send.
        self._check()
        cut = False
        async with task_group() as tg:

            async def watch() -> None:
                nonlocal cut
                if await self._watch(anyio.Event(), []):
                    cut = True
                    tg.cancel_scope.cancel()

            tg.start_soon(watch)
            await stream.send(item)
            tg.cancel_scope.cancel()
        if cut:
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
