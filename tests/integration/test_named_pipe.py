"""The Windows named-pipe channel, driven on Linux through the same loop seam.

asyncio builds a named-pipe transport with ``loop.create_pipe_connection``
(proactor loop only). Here that method is given to the running loop and backed
by the real containerd's unix socket, so the channel's own logic (protocol
factory, busy-pipe retry, lazy reconnect) is exercised against a real
containerd. What it cannot prove is the proactor's pipe itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from supervisor import errors
from supervisor.backends._named_pipe import NamedPipeChannel
from supervisor.backends.containerd import ContainerdTransport

pytestmark = pytest.mark.asyncio

PIPE = r"\\.\pipe\containerd-test"


def busy() -> OSError:
    exc = OSError(16, "All pipe instances are busy")
    exc.winerror = 231  # type: ignore[attr-defined]
    return exc


async def test_channel_retries_a_busy_pipe_then_speaks_grpc(
    containerd_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    calls: list[str] = []

    async def create_pipe_connection(factory: Any, address: str) -> Any:
        calls.append(address)
        if len(calls) <= 2:
            raise busy()
        return await loop.create_unix_connection(factory, containerd_address)

    monkeypatch.setattr(loop, "create_pipe_connection", create_pipe_connection, raising=False)
    transport = ContainerdTransport(NamedPipeChannel(PIPE), "pipe-test", rpc_timeout=10)
    try:
        assert (await transport.version()).startswith("1.")
        assert await transport.list_containers() == []
    finally:
        await transport.aclose()
    assert calls == [PIPE, PIPE, PIPE]


async def test_missing_pipe_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def create_pipe_connection(factory: Any, address: str) -> Any:
        raise FileNotFoundError(2, "The system cannot find the file specified", address)

    monkeypatch.setattr(loop, "create_pipe_connection", create_pipe_connection, raising=False)
    transport = ContainerdTransport(NamedPipeChannel(PIPE), "pipe-test", rpc_timeout=10)
    try:
        with pytest.raises(errors.Unavailable):
            await transport.version()
    finally:
        await transport.aclose()


async def test_without_a_proactor_loop_the_error_says_so() -> None:
    transport = ContainerdTransport(NamedPipeChannel(PIPE), "pipe-test", rpc_timeout=10)
    try:
        with pytest.raises(errors.Unavailable, match="proactor"):
            await transport.version()
    finally:
        await transport.aclose()
