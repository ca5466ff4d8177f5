"""Cancel a whole container life at every point in time: afterwards, cleaning
up through the objects the caller holds must leave nothing behind (httpcore's
cancellation tests, against a real containerd)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import anyio
import pytest

import supervisor
from supervisor import errors
from tests.integration.conftest import fifo_files, open_fds

pytestmark = pytest.mark.asyncio

# From before the first await to past the end of a lifecycle (~80 ms here).
DELAYS = [0, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.012, 0.016, 0.024, 0.032, 0.048, 0.064, 0.1]


async def clean_up(held: dict[str, Any]) -> None:
    """What a careful caller does with what it holds after a cancellation."""
    for key in ("exec", "task"):
        proc = held.get(key)
        if proc is not None:
            with contextlib.suppress(errors.NotFound):
                await proc.delete(force=True)
    container = held.get("container")
    if container is not None:
        with contextlib.suppress(errors.NotFound):
            await container.delete()


@pytest.mark.parametrize("delay", DELAYS)
async def test_cancelled_lifecycle_leaves_nothing(
    client: supervisor.Client, rootfs: str, state_dir: Path, delay: float
) -> None:
    fds = open_fds()
    held: dict[str, Any] = {}
    spec = supervisor.default_spec(["sh", "-c", "echo hi"], rootfs)
    with anyio.move_on_after(delay):
        held["container"] = await client.new_container("c", spec)
        held["task"] = task = await held["container"].new_task()
        await task.start()
        await task.wait()
        await task.delete()
        del held["task"]
        await held["container"].delete()
        del held["container"]
    await clean_up(held)
    assert await client.containers() == []
    assert fifo_files(state_dir) == []
    assert open_fds() == fds


@pytest.mark.parametrize("delay", DELAYS)
async def test_cancelled_exec_leaves_nothing(
    client: supervisor.Client, rootfs: str, state_dir: Path, delay: float
) -> None:
    container = await client.new_container(
        "host", supervisor.default_spec(["sleep", "60"], rootfs)
    )
    task = await container.new_task()
    await task.start()
    fds = open_fds()
    held: dict[str, Any] = {}
    with anyio.move_on_after(delay):
        held["exec"] = proc = await task.exec("e", supervisor.process_spec(["echo", "hi"]))
        await proc.start()
        await proc.wait()
        await proc.delete()
        del held["exec"]
    await clean_up(held)
    assert [p.pid for p in await task.pids()] == [task.pid]  # only init is left
    assert open_fds() == fds
    # the exec id is free again: nothing of the cancelled one is left
    again = await task.exec("e", supervisor.process_spec(["true"]))
    await again.start()
    assert (await again.wait()).exit_code == 0
    await again.delete()
    await task.delete(force=True)
    await container.delete()
    assert fifo_files(state_dir) == []


@pytest.mark.parametrize("delay", [0, 0.0005, 0.001, 0.002, 0.004, 0.008])
async def test_cancelled_delete_still_releases_everything(
    client: supervisor.Client, rootfs: str, state_dir: Path, delay: float
) -> None:
    # No retry here: a delete that was cancelled once containerd acted must
    # not leave fds, FIFOs or the bundle directory of what is gone.
    fds = open_fds()
    container = await client.new_container("d", supervisor.default_spec(["true"], rootfs))
    task = await container.new_task()
    await task.start()
    await task.wait()
    with anyio.move_on_after(delay):
        await task.delete()
    try:
        await (await client.load_container("d")).task()
    except errors.NotFound:  # containerd deleted it: so must we have, already
        assert fifo_files(state_dir) == []
        assert open_fds() == fds
    else:  # cancelled before containerd acted: deleting again is the caller's job
        await task.delete()
    with anyio.move_on_after(delay):
        await container.delete()
    if await client.containers():
        await container.delete()
    assert await client.containers() == []
    assert fifo_files(state_dir) == []
    assert not (state_dir / client.namespace / "d").exists()
    assert open_fds() == fds
