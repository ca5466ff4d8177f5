"""A connection: what a closed one answers, and what it does to the calls
and subscriptions it still had open."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from supervisor import errors
from supervisor._types import ProcessState
from supervisor.backends.base import Sync, Transport

from .conftest import GUARD, World, outcome

pytestmark = pytest.mark.asyncio


async def test_a_second_connection_sees_the_same_namespace(
    world: World, transport: Transport
) -> None:
    pid = await world.task("c1")
    other = world.connect()
    try:
        assert other.namespace == transport.namespace
        assert [r.id for r in await other.list_containers()] == ["c1"]
        assert (await other.get_task("c1")).pid == pid
        world.finish("c1", code=9)
        assert (await other.wait("c1", "")).exit_code == 9
    finally:
        await other.aclose()
    # Closing it leaves this one, and the task, alone.
    assert (await transport.get_task("c1")).state is ProcessState.STOPPED


async def test_a_bound_transport_accepts_only_its_own_namespace(
    world: World, transport: Transport
) -> None:
    # What connect() asks of the transport it is given.
    await world.container("c1")
    mine = transport.namespace
    transport.bind(mine)
    with pytest.raises(errors.InvalidArgument, match="bound to namespace"):
        transport.bind(f"{mine}-x")
    # Refused, it is as it was: bound to its own, and answering in it.
    assert transport.namespace == mine
    assert [r.id for r in await transport.list_containers()] == ["c1"]


async def test_a_closed_connection_fails_its_calls(
    world: World, transport: Transport, request: pytest.FixtureRequest
) -> None:
    # grpclib reconnects a closed channel on its next call: a transport used
    # after aclose() opens a connection nobody will close.
    await world.container("c1")
    other = world.connect()
    await other.aclose()
    try:
        assert await outcome(other.get_container("c1")) == "Unavailable"
        assert await outcome(other.version()) == "Unavailable"
    finally:
        await other.aclose()  # what the calls may have opened again
    assert (await transport.get_container("c1")).id == "c1"


async def test_closing_ends_a_live_subscription(world: World, transport: Transport) -> None:
    # (A wait pending when the connection closes fails too, on both; but
    # nothing tells when containerd has the wait, so it is not tested here.)
    await world.task("c1")
    other = world.connect()
    outcomes: list[str] = []
    try:
        async with other.subscribe() as stream:

            async def read() -> None:
                try:
                    async for item in stream:
                        assert isinstance(item, Sync)
                        outcomes.append("marker")
                except errors.SupervisorError as exc:
                    outcomes.append(type(exc).__name__)
                else:
                    outcomes.append("ended")

            with anyio.fail_after(GUARD):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(read)
                    # Live once a marker came through.
                    while "marker" not in outcomes:
                        await other.sync("live")
                        await anyio.sleep(0.01)
                    await other.aclose()
    finally:
        await other.aclose()
    assert outcomes[-1] == "Unavailable"
    assert set(outcomes[:-1]) == {"marker"}
    assert (await transport.get_task("c1")).state is ProcessState.RUNNING
