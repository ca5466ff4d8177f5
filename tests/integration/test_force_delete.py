"""Force deletes leave nothing behind, whatever state the task is in:
paused, being paused, being thawed (issue 20, item 3)."""

from __future__ import annotations

import contextlib

import anyio
import pytest

import supervisor
from supervisor import errors

pytestmark = pytest.mark.asyncio

_CYCLES = 30


@pytest.mark.cgroup
async def test_paused_tasks_are_force_deleted_every_time(
    client: supervisor.Client, rootfs: str
) -> None:
    container = await client.new_container(
        "paused", supervisor.default_spec(["sleep", "60"], rootfs)
    )
    for _ in range(_CYCLES):
        task = await container.new_task(output="null")
        await task.start()
        await task.pause()
        status = await task.delete(force=True)
        assert status.exit_code == 137
    await container.delete()
    assert await client.containers() == []


@pytest.mark.cgroup
@pytest.mark.parametrize("step", ["pausing", "thawing"])
async def test_tasks_caught_between_freeze_steps_are_force_deleted(
    client: supervisor.Client, rootfs: str, step: str
) -> None:
    # The pause (or resume) is still in flight when the force delete reads
    # the task's state: the delete must finish the job whatever it reads.
    container = await client.new_container(step, supervisor.default_spec(["sleep", "60"], rootfs))
    for _ in range(_CYCLES):
        task = await container.new_task(output="null")
        await task.start()
        if step == "thawing":
            await task.pause()
        change = task.pause if step == "pausing" else task.resume

        async def racing(change: object = change) -> None:
            assert callable(change)
            # Losing the race to the kill is fine: the task may be gone.
            with contextlib.suppress(errors.SupervisorError):
                await change()

        async with anyio.create_task_group() as tg:
            tg.start_soon(racing)
            await anyio.lowlevel.checkpoint()
            status = await task.delete(force=True)
        assert status.exit_code == 137
    await container.delete()
    assert await client.containers() == []


@pytest.mark.cgroup
async def test_running_deletes_the_container_of_a_paused_task(
    client: supervisor.Client, rootfs: str
) -> None:
    spec = supervisor.default_spec(["sleep", "60"], rootfs)
    for i in range(_CYCLES // 3):
        async with client.running(f"block-{i}", spec, output="null") as task:
            await task.pause()
        assert await client.containers() == []
