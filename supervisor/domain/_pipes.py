"""Using a process's stdio: asyncio's ``communicate``, its stdout line by
line, and the sizes its terminal may take."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from anyio.abc import ByteReceiveStream

from .. import errors
from .._cleanup import task_group
from ..fifo import StdioSet

__all__ = ["check_terminal_size", "exchange", "read_lines"]

# Terminal sizes are unsigned 16-bit in the kernel's winsize.
_MAX_TERMINAL = 0xFFFF


async def exchange(
    fifos: StdioSet,
    input: bytes | None,
    close_stdin: Callable[[], Awaitable[None]],
    wait: Callable[[], Awaitable[object]],
) -> tuple[bytes, bytes]:
    """Feed ``input`` then end-of-file, read stdout and stderr to their end
    at once (so neither pipe can fill and block the process), and ``wait``:
    the whole output. Input the process left unread is dropped."""
    out: list[bytes] = []
    err: list[bytes] = []

    async def drain(stream: ByteReceiveStream | None, into: list[bytes]) -> None:
        if stream is None:
            return
        with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError):
            while True:
                into.append(await stream.receive())

    async def feed() -> None:
        stdin = fifos.stdin
        if stdin is None:
            return
        if input:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stdin.send(input)
        await close_stdin()

    async with task_group() as tg:
        tg.start_soon(feed)
        async with task_group() as readers:
            readers.start_soon(drain, fifos.stdout, out)
            readers.start_soon(drain, fifos.stderr, err)
            await wait()
        # Exited, and its output ended: input it never read is not waited
        # for (on a terminal the shim's copy into it blocks for good).
        tg.cancel_scope.cancel()
    return b"".join(out), b"".join(err)


async def read_lines(stream: ByteReceiveStream) -> AsyncIterator[str]:
    """``stream`` line by line (UTF-8, undecodable bytes replaced, line
    endings removed) until it ends."""
    pending = b""
    while True:
        try:
            chunk = await stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r").decode("utf-8", errors="replace")
    if pending:
        yield pending.rstrip(b"\r").decode("utf-8", errors="replace")


def check_terminal_size(width: int, height: int, container_id: str, process_id: str) -> None:
    """Refuse a terminal size that is not two ints in 1..65535."""
    for value in (width, height):
        if isinstance(value, bool) or not isinstance(value, int):
            raise errors.InvalidArgument(
                f"terminal size must be ints, not {type(value).__name__}",
                container_id=container_id,
                process_id=process_id,
            )
    if not (0 < width <= _MAX_TERMINAL and 0 < height <= _MAX_TERMINAL):
        raise errors.InvalidArgument(
            f"bad terminal size {width}x{height}",
            container_id=container_id,
            process_id=process_id,
        )
