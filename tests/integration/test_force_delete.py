"""Force deletes leave nothing behind, whatever state the task is in:
paused, being paused, being thawed (issue 20, item 3)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import errors
from tests.integration.conftest import fifo_files

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


@pytest.mark.parametrize(
    "state", ["created", "running", pytest.param("paused", marks=pytest.mark.cgroup), "stopped"]
)
async def test_container_force_delete_removes_a_task_nobody_holds(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, state: str
) -> None:
    # A first run leaves a task with an exec behind, as a crash would.
    args = ["sh", "-c", "exit 3"] if state == "stopped" else ["sleep", "60"]
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as first:
        container = await first.new_container("left", supervisor.default_spec(args, rootfs))
        task = await container.new_task(output="null")
        if state != "created":
            await task.start()
        if state in ("running", "paused"):
            proc = await task.exec("side", ["sleep", "60"])
            await proc.start()
        if state == "paused":
            await task.pause()
        if state == "stopped":
            with anyio.fail_after(20):
                await task.wait()
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as client:
        await (await client.load_container("left")).delete(force=True)
        assert await client.containers() == []
        assert await client._session.transport.list_tasks() == []
        assert len(client._session.tracker) == 0
    assert fifo_files(state_dir) == []


async def test_container_force_delete_through_the_objects_held(
    client: supervisor.Client, state_dir: Path, rootfs: str
) -> None:
    spec = supervisor.default_spec(["sh", "-c", "trap '' TERM; sleep 60"], rootfs)
    container = await client.new_container("held", spec)
    task = await container.new_task()
    await task.start()
    proc = await task.exec("side", ["sleep", "60"])
    await proc.start()
    await container.delete(force=True)
    with anyio.fail_after(20):
        assert (await task.wait()).exit_code == 137
        assert (await proc.wait()).exit_code == 137
    assert await client.containers() == []
    assert await client._session.transport.list_tasks() == []
    assert fifo_files(state_dir) == []
