"""The grpclib transport's failures, without a containerd: deadlines are
DeadlineExceeded, and a refused call yields to the event loop."""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import pytest

from supervisor import errors
from supervisor.backends.containerd import ContainerdTransport, map_grpc_errors


def test_a_timeout_is_deadline_exceeded_not_unavailable() -> None:
    with pytest.raises(errors.DeadlineExceeded), map_grpc_errors("c"):
        raise TimeoutError
    with pytest.raises(errors.Unavailable), map_grpc_errors("c"):
        raise ConnectionRefusedError


def test_unexpected_internal_errors_leave_as_supervisor_errors() -> None:
    for exc in (AttributeError("'NoneType' object has no attribute 'x'"), KeyError("k")):
        with pytest.raises(errors.SupervisorError), map_grpc_errors("c"):
            raise exc


@pytest.mark.asyncio
async def test_a_server_that_never_answers_hits_the_deadline(tmp_path: Path) -> None:
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    transport = ContainerdTransport.open(str(path), "ns", rpc_timeout=0.3)
    try:
        with anyio.fail_after(10), pytest.raises(errors.DeadlineExceeded):
            await transport.version()
    finally:
        await transport.aclose()
        server.close()


@pytest.mark.asyncio
async def test_a_caller_retrying_a_refused_call_cannot_starve_the_loop(tmp_path: Path) -> None:
    transport = ContainerdTransport.open(str(tmp_path / "absent.sock"), "ns")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            with anyio.move_on_after(0.5):
                # An application retrying at once, no sleep of its own (bounded,
                # so that a transport that never yields fails here, not hangs).
                for _ in range(20000):
                    try:
                        await transport.version()
                    except errors.Unavailable:
                        pass
            tg.cancel_scope.cancel()
    finally:
        await transport.aclose()
    assert ticks > 5
