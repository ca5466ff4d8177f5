"""Cancel creates at every point: afterwards either the caller holds the new
object, or nothing of it is left in containerd, on disk or in the client
(httpcore's cancellation tests, on the fake so that every await point is hit)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import supervisor
from supervisor import ProcessState, errors
from supervisor.backends.fake import FakeTransport
from tests.unit.conftest import GUARD, fifo_files, open_fds, spec

pytestmark = pytest.mark.asyncio

# More scheduler rounds than any of the creates below takes on the fake.
MAX_ROUNDS = 60


async def cancelled_after(rounds: int, op: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run ``op`` and cancel it after ``rounds`` scheduler rounds; what it
    returned, if it finished first (an empty list if it was cancelled)."""
    done: list[Any] = []
    scope = anyio.CancelScope()

    async def run() -> None:
        with scope:
            done.append(await op())

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        for _ in range(rounds):
            await anyio.lowlevel.checkpoint()
        scope.cancel()
    return done


def tracked(client: supervisor.Client) -> int:
    """Process slots the client keeps (a leak shows here)."""
    return len(client._session.tracker)


async def test_new_container_cancelled_at_each_point(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    undone = 0
    for rounds in range(MAX_ROUNDS):
        deleted = fake.controls.calls["delete_container"]
        done = await cancelled_after(rounds, lambda: client.new_container("c", spec()))
        if done:
            await done[0].delete()
            break
        undone += fake.controls.calls["delete_container"] - deleted
        assert fake.controls.is_empty(), rounds
        assert not (state_dir / fake.namespace / "c").exists(), rounds
    else:
        pytest.fail("new_container never finished")
    assert undone > 0  # some cancellation came after containerd made it
    assert fake.controls.is_empty()


async def test_new_task_cancelled_at_each_point(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    container = await client.new_container("c", spec())
    fds = open_fds()
    undone = 0
    for rounds in range(MAX_ROUNDS):
        deleted = fake.controls.calls["delete_task"]
        done = await cancelled_after(rounds, container.new_task)
        if done:
            await done[0].delete(force=True)
            break
        undone += fake.controls.calls["delete_task"] - deleted
        assert fake.controls.processes("c") == {}, rounds
        assert fifo_files(state_dir) == [], rounds
        assert open_fds() == fds, rounds
        assert tracked(client) == 0, rounds
    else:
        pytest.fail("new_task never finished")
    assert undone > 0
    await container.delete()
    assert fake.controls.is_empty() and fifo_files(state_dir) == [] and open_fds() == fds


async def test_exec_cancelled_at_each_point(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    container = await client.new_container("c", spec())
    task = await container.new_task()
    await task.start()
    fifos = fifo_files(state_dir)
    fds = open_fds()
    undone = 0
    for rounds in range(MAX_ROUNDS):
        deleted = fake.controls.calls["delete_process"]
        done = await cancelled_after(rounds, lambda: task.exec("e", ["true"]))
        if done:
            await done[0].delete(force=True)
            break
        undone += fake.controls.calls["delete_process"] - deleted
        assert list(fake.controls.processes("c")) == ["c"], rounds
        assert fifo_files(state_dir) == fifos, rounds
        assert open_fds() == fds, rounds
        assert list(task.execs) == [], rounds
    else:
        pytest.fail("exec never finished")
    assert undone > 0
    assert list(fake.controls.processes("c")) == ["c"] and fifo_files(state_dir) == fifos
    await task.delete(force=True)
    await container.delete()
    assert fake.controls.is_empty()


@pytest.mark.parametrize("after", [False, True], ids=["before-acting", "after-acting"])
@pytest.mark.parametrize("method", ["create_container", "create_task", "exec"])
async def test_a_create_cancelled_while_containerd_works_is_undone(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path, method: str, after: bool
) -> None:
    task = None
    if method != "create_container":
        container = await client.new_container("c", spec())
        if method == "exec":
            task = await container.new_task()
            await task.start()
    fifos = fifo_files(state_dir)
    fds = open_fds()

    async def create() -> object:
        if method == "create_container":
            return await client.new_container("c", spec())
        if method == "create_task":
            return await container.new_task(stdin=True)
        assert task is not None
        return await task.exec("e", ["true"], stdin=True)

    gate = fake.controls.hold(method, after=after)
    result: list[object] = []
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def run() -> None:
                with scope:
                    result.append(await create())

            tg.start_soon(run)
            await gate.wait()
            scope.cancel()  # the call is shielded: it must learn what containerd did
            gate.release()
    assert result == []
    assert fake.controls.calls[method] == 1
    if method == "create_container":
        assert fake.controls.is_empty()
    else:
        expected = ["c"] if method == "exec" else []
        assert list(fake.controls.processes("c")) == expected
    assert fifo_files(state_dir) == fifos
    assert open_fds() == fds
    if task is not None:
        await task.delete(force=True)
    if method != "create_container":
        await container.delete()
    assert fake.controls.is_empty()


async def test_a_start_cancelled_while_containerd_starts_it_leaves_it_started(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    container = await client.new_container("c", spec())
    task = await container.new_task()
    gate = fake.controls.hold("start", after=True)
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def run() -> None:
                with scope:
                    await task.start()

            tg.start_soon(run)
            await gate.wait()
            scope.cancel()
            gate.release()
    assert task.pid == fake.controls.processes("c")["c"].pid
    assert await task.status() is ProcessState.RUNNING
    with pytest.raises(errors.FailedPrecondition):
        await task.start()
    fake.controls.exit("c", code=1)
    with anyio.fail_after(GUARD):
        assert (await task.wait()).exit_code == 1
    await task.delete()
    await container.delete()
    assert fake.controls.is_empty() and fifo_files(state_dir) == []


async def test_a_delete_cancelled_after_containerd_acted_still_releases_everything(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    fds = open_fds()
    container = await client.new_container("c", spec())
    task = await container.new_task()
    await task.start()
    fake.controls.exit("c")
    gate = fake.controls.hold("delete_task", after=True)
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def run() -> None:
                with scope:
                    await task.delete()

            tg.start_soon(run)
            await gate.wait()
            scope.cancel()
            gate.release()
    assert fake.controls.processes("c") == {}
    assert fifo_files(state_dir) == []
    assert open_fds() == fds
    gate = fake.controls.hold("delete_container", after=True)
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def run_container() -> None:
                with scope:
                    await container.delete()

            tg.start_soon(run_container)
            await gate.wait()
            scope.cancel()
            gate.release()
    assert fake.controls.is_empty()
    assert not container.bundle_dir.exists()
