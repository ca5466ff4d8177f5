"""Cancel a whole container life at every point in time: afterwards, cleaning
up through the objects the caller holds must leave nothing behind (httpcore's
cancellation tests, against a real containerd)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

import supervisor
from supervisor import errors
from tests.integration.conftest import fifo_files, open_fds
from tests.integration.helpers import Recorder

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
    container = await client.new_container("host", supervisor.default_spec(["sleep", "60"], rootfs))
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


async def test_many_lifecycles_leave_no_residue(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    # Steady state: after many whole lives (with a backend, so the queue,
    # the ledger and the event path all run), everything is back to where
    # it started: fds, asyncio tasks, tracker slots, queue keys, files.
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:

        async def life(i: int) -> None:
            container = await client.new_container(
                f"r{i}", supervisor.default_spec(["sh", "-c", "echo hi; exec sleep 60"], rootfs)
            )
            task = await container.new_task()
            await task.start()
            assert await task.stdout.receive() == b"hi\n"
            proc = await task.exec("e", supervisor.process_spec(["true"]))
            await proc.start()
            await proc.wait()
            await proc.delete()
            await task.kill(signal.SIGKILL)
            await task.wait()
            await task.delete()
            await container.delete()

        await life(-1)  # lazily made loop and channel resources are not residue
        await rec.wait_for(lambda: len(rec.exits()) == 2)
        fds, tasks = open_fds(), len(asyncio.all_tasks())
        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(life, i)
        await rec.wait_for(lambda: len(rec.exits()) == 82)
        await anyio.sleep(0.2)  # let the queue's per-key workers wind down
        assert open_fds() == fds
        assert len(asyncio.all_tasks()) == tasks
        session = client._session
        assert len(session.tracker) == 0
        queue = session.monitor._queue
        assert queue is not None and len(queue) == 0
        assert fifo_files(state_dir) == []
        assert not any((state_dir / ".exits" / namespace).glob("*"))
        assert [p for p in (state_dir / namespace).glob("*")] == []
