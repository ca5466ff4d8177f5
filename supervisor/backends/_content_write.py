"""Writing a blob into containerd's content store through Content.Write.

The write resumes where an earlier attempt on the same ref left off, and
reading the source, sending to containerd and containerd's answers overlap
(:func:`_pipe`) instead of each step waiting for the one before.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager

import anyio
import grpclib.client
import grpclib.const
from grpclib.client import Channel

from .. import errors
from .._proto.containerd.services.content import v1 as pb_content
from ..oci._manifest import Descriptor
from ._grpc_errors import map_grpc_errors

__all__ = ["Source", "write_blob"]

_WRITE_ROUTE = "/containerd.services.content.v1.Content/Write"
# containerd accepts messages up to 16 MiB; 1 MiB chunks keep each write short.
_CHUNK = 1 << 20
# How far a blob's source is read ahead of containerd, and how many writes
# may await containerd's answer: enough to keep both sides busy.
_READ_AHEAD = 4
_IN_FLIGHT = 4

# A blob's bytes from an offset on: opened once per attempt by the writer.
Source = Callable[[int], AbstractAsyncContextManager[AsyncIterator[bytes]]]


async def write_blob(
    channel: Channel,
    metadata: Mapping[str, str],
    ref: str,
    desc: Descriptor,
    source: Source,
    *,
    labels: Mapping[str, str] | None,
    progress: Callable[[int], None] | None,
) -> None:
    """:meth:`.ContainerdImages.write_content` over ``channel``, its calls
    carrying ``metadata`` (namespace and lease)."""
    if progress is None:
        progress = _no_progress
    try:
        with map_grpc_errors():
            async with channel.request(
                _WRITE_ROUTE,
                grpclib.const.Cardinality.STREAM_STREAM,
                pb_content.WriteContentRequest,
                pb_content.WriteContentResponse,
                metadata=metadata,
            ) as stream:
                await _write_stream(stream, ref, desc, source, labels, progress)
    except errors.AlreadyExists:
        # Committed by someone else meanwhile (or before): the same bytes.
        progress(desc.size)


async def _write_stream(
    stream: grpclib.client.Stream[pb_content.WriteContentRequest, pb_content.WriteContentResponse],
    ref: str,
    desc: Descriptor,
    source: Source,
    labels: Mapping[str, str] | None,
    progress: Callable[[int], None],
) -> None:
    stat = pb_content.WriteContentRequest(
        action=pb_content.WriteAction.STAT, ref=ref, total=desc.size, expected=desc.digest
    )
    await stream.send_message(stat)
    reply = await stream.recv_message()
    offset = int(reply.offset) if reply is not None else 0
    if offset > desc.size:
        offset = 0
    progress(offset)
    if offset < desc.size:
        try:
            offset = await _pipe(stream, desc, source, offset, progress)
        except BaseExceptionGroup as group:
            raise errors.unwrap_group(group) from None
    commit = pb_content.WriteContentRequest(
        action=pb_content.WriteAction.COMMIT,
        offset=offset,
        total=desc.size,
        expected=desc.digest,
        labels=dict(labels or {}),
    )
    await stream.send_message(commit, end=True)
    await stream.recv_message()
    await stream.recv_trailing_metadata()


async def _pipe(
    stream: grpclib.client.Stream[pb_content.WriteContentRequest, pb_content.WriteContentResponse],
    desc: Descriptor,
    source: Source,
    offset: int,
    progress: Callable[[int], None],
) -> int:
    """Stream the source's bytes from ``offset`` into the write; the new
    offset. Reading the source, sending to containerd and containerd's
    answers overlap: the source is read up to ``_READ_AHEAD`` chunks
    ahead, and up to ``_IN_FLIGHT`` writes await their answer, instead
    of each step waiting for the one before."""
    send, receive = anyio.create_memory_object_stream[bytes](_READ_AHEAD)

    async def read() -> None:
        async with send, source(offset) as chunks:
            async for data in _rechunk(chunks):
                await send.send(data)

    async def confirm(expected: int) -> None:
        reply = await stream.recv_message()
        if reply is None or int(reply.offset) != expected:
            raise errors.Unknown(f"{desc.digest}: containerd lost count of the write")
        progress(expected)

    pending: collections.deque[int] = collections.deque()
    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        async with receive:
            async for data in receive:
                if offset + len(data) > desc.size:
                    # Refused before it reaches containerd's disk (which
                    # would only check the size at commit).
                    raise errors.FailedPrecondition(
                        f"{desc.digest}: more than the {desc.size} bytes its descriptor says"
                    )
                request = pb_content.WriteContentRequest(
                    action=pb_content.WriteAction.WRITE, offset=offset, data=data
                )
                await stream.send_message(request)
                offset += len(data)
                pending.append(offset)
                if len(pending) > _IN_FLIGHT:
                    await confirm(pending.popleft())
        while pending:
            await confirm(pending.popleft())
    return offset


def _no_progress(offset: int) -> None:
    pass


async def _rechunk(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Chunks of at most ``_CHUNK`` bytes, gathering small ones (each byte
    copied once, by the join)."""
    parts: list[bytes] = []
    size = 0
    async for data in chunks:
        while data:
            take = data[: _CHUNK - size] if size + len(data) > _CHUNK else data
            parts.append(take)
            size += len(take)
            data = data[len(take) :]
            if size == _CHUNK:
                yield b"".join(parts)
                parts, size = [], 0
    if parts:
        yield b"".join(parts)
