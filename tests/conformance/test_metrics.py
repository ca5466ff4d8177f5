"""Metrics: the shape of a sample, which tasks a batch covers, and the
limits an update sets."""

from __future__ import annotations

import pytest

from supervisor.backends.base import Transport

from .conftest import World, outcome

pytestmark = [pytest.mark.asyncio, pytest.mark.cgroup]

MIB = 1 << 20


async def test_a_sample_of_a_running_task(world: World, transport: Transport) -> None:
    await world.task("c1")
    stats = await transport.stats("c1")
    assert stats.cgroup_version in (1, 2)
    assert stats.read_at is not None
    assert isinstance(stats.memory.usage, int) and stats.memory.usage > 0
    assert stats.memory.limit is None  # no limit was set
    assert stats.memory.oom_kills in (0, None)
    assert stats.cpu.total_usage >= 0
    assert stats.pids is not None and stats.pids.current >= 1
    assert stats.pids.limit is None


async def test_metrics_covers_the_tasks_asked_for(world: World, transport: Transport) -> None:
    await world.task("c1")
    await world.task("c2", start=False)
    await world.container("no-task")
    assert await transport.metrics([]) == {}
    samples = await transport.metrics(["c1", "c2", "no-task", "nope"])
    assert sorted(samples) == ["c1", "c2"]
    assert sorted(await transport.metrics(["c2"])) == ["c2"]
    assert await outcome(transport.stats("no-task")) == "NotFound"
    assert await outcome(transport.stats("nope")) == "NotFound"


async def test_updated_limits_show_in_the_sample(world: World, transport: Transport) -> None:
    await world.task("c1")
    await transport.update_resources("c1", {"memory": {"limit": 64 * MIB}, "pids": {"limit": 50}})
    stats = await transport.stats("c1")
    assert stats.memory.limit == 64 * MIB
    assert stats.pids is not None and stats.pids.limit == 50


async def test_a_stopped_task_is_still_sampled(world: World, transport: Transport) -> None:
    await world.task("c1")
    world.finish("c1", code=0)
    await world.wait("c1")
    stats = await transport.stats("c1")
    assert stats.pids is not None and stats.pids.current == 0
    assert sorted(await transport.metrics(["c1"])) == ["c1"]
    assert await transport.pids("c1") == []
