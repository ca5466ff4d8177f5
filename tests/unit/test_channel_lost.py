"""A call waiting for room in a full write buffer ends when the connection is lost.

grpclib parks a call that finds its connection's write buffer full on an event
that only the buffer draining sets; a lost connection never drains, so the
call (a Wait has no deadline) would wait forever.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import anyio
import pytest
from grpclib.exceptions import StreamTerminatedError

from supervisor._proto.containerd.services.version import v1 as pb_version
from supervisor.backends._channel import open_channel


async def _parked_call_then_lost(tmp_path: Path) -> BaseException | None:
    accepted: list[asyncio.StreamWriter] = []
    got_peer = asyncio.Event()

    async def accept(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        got_peer.set()

    path = tmp_path / "peer.sock"
    server = await asyncio.start_unix_server(accept, path=str(path))
    channel = open_channel(str(path))
    try:
        protocol = await channel.__connect__()
        await got_peer.wait()
        # As asyncio does when the socket's send buffer passes its high-water mark.
        protocol.pause_writing()
        call = asyncio.ensure_future(pb_version.VersionStub(channel).version())
        write_ready = protocol.connection.write_ready
        for _ in range(1000):
            if getattr(write_ready, "_waiters", None):
                break
            await asyncio.sleep(0)
        assert write_ready._waiters, "the call never parked on the full buffer"
        accepted[0].transport.abort()  # the peer dies
        with anyio.move_on_after(10):
            try:
                await call
            except Exception as exc:  # noqa: BLE001 - the outcome is the assertion
                return exc
            return None
        call.cancel()
        raise AssertionError("the call parked on a lost connection never ended")
    finally:
        channel.close()
        server.close()


@pytest.mark.asyncio
async def test_parked_call_ends_when_connection_lost(tmp_path: Path) -> None:
    outcome = await _parked_call_then_lost(tmp_path)
    assert isinstance(outcome, StreamTerminatedError), outcome
