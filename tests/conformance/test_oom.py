"""An OOM kill: the events it brings and the counter it leaves."""

from __future__ import annotations

import signal

import anyio
import pytest

from supervisor._types import ProcessState, TaskEvent, Topic
from supervisor.backends.base import Transport

from .conftest import World
from .test_events import Reader, normalised, seen

pytestmark = [pytest.mark.asyncio, pytest.mark.cgroup]

LIMIT = 32 << 20


async def test_an_exec_killed_for_memory(world: World, transport: Transport) -> None:
    reader = Reader()
    async with (
        transport.subscribe([Topic.OOM, Topic.EXIT]) as stream,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(reader.run, stream)
        await reader.live(transport)
        await world.task("c1")
        epid = await world.exec_hog("c1", "hog", LIMIT)
        status = await world.wait("c1", "hog")
        await reader.until(seen(Topic.EXIT, "hog"))
        await reader.until(
            lambda items: any(isinstance(e, TaskEvent) and e.topic is Topic.OOM for e in items)
        )
        tg.cancel_scope.cancel()
    assert status.exit_code == 128 + signal.SIGKILL
    # The shim reports the OOM and the exit from two sources: either may
    # come first (and the kernel may count more than one OOM on the way).
    rows = normalised(reader.events, {epid: "hog"}, transport.namespace)
    assert sorted(set(rows)) == [
        ("EXIT", "c1", "hog", "hog", 128 + signal.SIGKILL, "at"),
        ("OOM", "c1", "c1", "-", 0, "-"),
    ]
    assert [r[0] for r in rows].count("EXIT") == 1
    # Only the exec was killed; the task's cgroup counted it.
    assert (await transport.get_task("c1")).state is ProcessState.RUNNING
    stats = await transport.stats("c1")
    assert stats.memory.oom_kills is not None and stats.memory.oom_kills >= 1
    assert stats.memory.limit == LIMIT
