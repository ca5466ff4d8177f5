"""A process's output line by line: stdout alone as text (the default), or
stdout and stderr together, each line tagged with its stream and the time
it was read (:meth:`Process.aiter_lines`)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Literal, Protocol, overload

import anyio
from anyio.abc import ByteReceiveStream

from .. import errors
from .._cleanup import task_group
from ..fifo._log_read import MAX_LINE, LogLine, Stream
from ._pipes import read_lines


class _Piped(Protocol):
    # What of a Process is read here (a protocol: the process module
    # imports this one).
    @property
    def stdout(self) -> ByteReceiveStream: ...
    @property
    def stderr(self) -> ByteReceiveStream | None: ...


__all__ = ["aiter_lines_method", "merged_lines"]

_CHUNK = 65536


def _fd(stream: ByteReceiveStream) -> int:
    fd = getattr(stream, "fileno", None)
    if not isinstance(fd, int):
        raise errors.FailedPrecondition(
            "stderr=True needs the process's FIFOs (not available on this platform)"
        )
    return fd


async def _either_readable(streams: dict[Stream, ByteReceiveStream]) -> None:
    """Until one of the streams can be read (or was closed)."""
    async with task_group() as tg:

        async def one(fd: int) -> None:
            with contextlib.suppress(anyio.ClosedResourceError, OSError):
                await anyio.wait_readable(fd)
            tg.cancel_scope.cancel()

        for stream in streams.values():
            tg.start_soon(one, _fd(stream))


class _Clock:
    """The time lines are read, never earlier than the line before (a wall
    clock stepped back must not reorder what was read in order)."""

    def __init__(self) -> None:
        self.last = 0

    def now(self) -> int:
        self.last = max(time.time_ns(), self.last)
        return self.last


def _read(
    streams: dict[Stream, ByteReceiveStream], pending: dict[Stream, bytes], clock: _Clock
) -> list[LogLine]:
    """What the streams hold now, as whole lines (a stream at its end gives
    its unfinished line too, and leaves ``streams``)."""
    lines: list[LogLine] = []
    for name, stream in list(streams.items()):
        fd = _fd(stream)
        while True:
            if fd < 0:
                data = b""
            else:
                try:
                    data = os.read(fd, _CHUNK)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    data = b""
            now = clock.now()
            if not data:
                del streams[name]
                rest = pending.pop(name, b"")
                if rest:
                    lines.append(LogLine(name, now, rest.rstrip(b"\r"), partial=True))
                break
            *whole, pending[name] = (pending.get(name, b"") + data).split(b"\n")
            lines.extend(LogLine(name, now, line.rstrip(b"\r")) for line in whole)
            if len(pending[name]) >= MAX_LINE:
                lines.append(LogLine(name, now, pending.pop(name), partial=True))
    return lines


async def merged_lines(
    stdout: ByteReceiveStream, stderr: ByteReceiveStream | None
) -> AsyncGenerator[LogLine, None]:
    """Lines of both streams as they are read, until both ended. Each line's
    time is when it was read; lines of one stream keep their order, and the
    two streams are interleaved as their reads came."""
    streams: dict[Stream, ByteReceiveStream] = {"stdout": stdout}
    if stderr is not None:
        streams["stderr"] = stderr
    for stream in streams.values():
        _fd(stream)  # refused before anything is read
    pending: dict[Stream, bytes] = {}
    clock = _Clock()
    while streams:
        lines = _read(streams, pending, clock)
        for line in lines:
            yield line
        if streams and not lines:
            await _either_readable(streams)


@overload
def aiter_lines_method(self: _Piped, *, stderr: Literal[False] = False) -> AsyncIterator[str]: ...


@overload
def aiter_lines_method(self: _Piped, *, stderr: Literal[True]) -> AsyncGenerator[LogLine, None]: ...


def aiter_lines_method(
    self: _Piped, *, stderr: bool = False
) -> AsyncIterator[str] | AsyncGenerator[LogLine, None]:
    """The process's stdout line by line (UTF-8, undecodable bytes
    replaced, line endings removed) until it ends.

    With ``stderr=True``: the lines of stdout and stderr together as they
    are read, each a :class:`~supervisor.LogLine` (``stream``, ``time``,
    ``text``), until both streams ended. Each stream's lines keep their
    order; between the two streams, the order is that of the reads (a
    process's two writes close together may be read either way round).

    Without ``stderr=True`` only stdout is read: a process that also writes
    much to stderr must have it read too (or be created with a terminal,
    or a ``log_path``).

    Raises:
        FailedPrecondition: the process has no pipes (a ``log_path`` or
            ``output="null"``, or loaded without attaching).
    """
    if stderr is True:
        return merged_lines(self.stdout, self.stderr)
    if stderr is not False:
        raise errors.InvalidArgument(f"stderr must be True or False, not {stderr!r}")
    return read_lines(self.stdout)
