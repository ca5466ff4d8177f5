"""Unknown outcomes of creates are resolved inside the library, and
``Container.delete(force=True)`` removes whatever task a container has
(issue 20, item 4); OOM kills found after the application's restart
(item 2), on the in-memory fake."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import EventType, ProcessState, errors
from supervisor.backends.fake import FakeTransport
from tests.unit.conftest import GUARD, Recorder, connect, fifo_files, spec

pytestmark = pytest.mark.asyncio

_LOST = errors.Unavailable("containerd connection failed: connection reset")


# -- a new_task() or exec() whose outcome is unknown -----------------------------


@pytest.mark.parametrize(
    "error",
    [_LOST, errors.DeadlineExceeded("no reply in time"), errors.Cancelled("stream reset")],
    ids=["unavailable", "deadline", "cancelled"],
)
async def test_a_task_made_by_a_create_whose_reply_was_lost_is_deleted(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path, error: Exception
) -> None:
    container = await client.new_container("c", spec())
    fake.controls.fail_next("create_task", error, after=True)  # containerd made it
    with pytest.raises(type(error)):
        await container.new_task()
    assert fake.controls.processes("c") == {}
    assert fifo_files(state_dir) == []
    # Nothing stands in the way: a new task, or the container's delete.
    task = await container.new_task()
    await task.delete()
    await container.delete()
    assert fake.controls.is_empty()
    assert len(client._session.tracker) == 0


async def test_the_task_is_deleted_once_containerd_answers_again(
    client: supervisor.Client, fake: FakeTransport
) -> None:
    container = await client.new_container("c", spec())
    fake.controls.fail_next("create_task", _LOST, after=True)
    for _ in range(3):  # containerd does not answer at first (restarting)
        fake.controls.fail_next("get_task", _LOST)
    with pytest.raises(errors.Unavailable):
        await container.new_task()
    assert fake.controls.processes("c") == {}
    await container.delete()


async def test_a_create_refused_before_acting_costs_one_question(
    client: supervisor.Client, fake: FakeTransport
) -> None:
    container = await client.new_container("c", spec())
    fake.controls.fail_next("create_task", _LOST)  # never reached containerd
    before = fake.controls.calls.copy()
    with pytest.raises(errors.Unavailable):
        await container.new_task()
    assert fake.controls.calls - before == Counter(create_task=1, get_task=1)
    await container.delete()


async def test_a_task_someone_else_made_meanwhile_is_left_alone(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    container = await client.new_container("c", spec())
    fake.controls.fail_next("create_task", _LOST)  # ours never reached containerd
    other_fake = fake.controls.reopen()
    hold = fake.controls.hold("get_task")

    async def attempt() -> None:
        with pytest.raises(errors.Unavailable):
            await container.new_task()

    async with connect(other_fake, state_dir / "other") as other:
        async with anyio.create_task_group() as tg:
            tg.start_soon(attempt)
            with anyio.fail_after(GUARD):
                await hold.wait()
            theirs = await (await other.load_container("c")).new_task()
            hold.release()
        assert set(fake.controls.processes("c")) == {"c"}  # theirs, untouched
        await theirs.delete()
    await container.delete()


async def test_the_wait_for_containerd_is_bounded(fake: FakeTransport, state_dir: Path) -> None:
    timeouts = supervisor.Timeouts(cleanup=0.2, resubscribe_initial=0.001, resubscribe_max=0.01)
    async with connect(fake, state_dir, timeouts=timeouts) as client:
        container = await client.new_container("c", spec())
        fake.controls.fail_next("create_task", _LOST, after=True)
        hold = fake.controls.hold("get_task")  # containerd hangs: no answer at all
        with anyio.fail_after(GUARD), pytest.raises(errors.Unavailable):
            await container.new_task()
        hold.release()
        # Not known to be gone: the documented clean-up finishes it.
        assert set(fake.controls.processes("c")) == {"c"}
        await container.delete(force=True)
    assert fake.controls.is_empty()


async def test_an_exec_made_by_a_call_whose_reply_was_lost_is_deleted(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    container = await client.new_container("c", spec())
    task = await container.new_task()
    await task.start()
    fake.controls.fail_next("exec", _LOST, after=True)
    with pytest.raises(errors.Unavailable):
        await task.exec("e", ["true"])
    assert set(fake.controls.processes("c")) == {"c"}
    assert task.execs == {}
    proc = await task.exec("e", ["true"])  # the id is free again
    await proc.delete(force=True)
    await task.delete(force=True)
    await container.delete()
    assert fifo_files(state_dir) == []


# -- Container.delete(force=True) -----------------------------------------------


async def test_force_delete_of_a_container_without_a_task(
    client: supervisor.Client, fake: FakeTransport
) -> None:
    await (await client.new_container("c", spec())).delete(force=True)
    assert fake.controls.is_empty()


@pytest.mark.parametrize("state", ["created", "running", "paused", "stopped"])
async def test_force_delete_removes_a_task_nobody_holds(
    fake: FakeTransport, state_dir: Path, state: str
) -> None:
    # The first run leaves a task (and an exec) behind, as a crash would.
    async with connect(fake, state_dir) as first:
        container = await first.new_container("c", spec())
        task = await container.new_task()
        if state != "created":
            await task.start()
            proc = await task.exec("e", ["sleep", "60"])
            await proc.start()
        if state == "paused":
            await task.pause()
        if state == "stopped":
            fake.controls.exit("c", "e", code=0)
            fake.controls.exit("c", code=3)
    rec = Recorder()
    async with connect(fake.controls.reopen(), state_dir, backend=rec) as client:
        container = await client.load_container("c")
        await container.delete(force=True)
        assert await client.containers() == []
        if state == "stopped":
            # The exit nobody heard is reported on the way out, once.
            await rec.wait_for(lambda: rec.exits()[("c", "c")] == 1)
        assert len(client._session.tracker) == 0
    assert fake.controls.is_empty()
    assert fifo_files(state_dir) == []


async def test_force_delete_through_the_task_object_held(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    container = await client.new_container("c", spec())
    task = await container.new_task()
    await task.start()
    proc = await task.exec("e", ["sleep", "60"])
    await proc.start()
    fake.controls.ignore("c", None, 15)
    await container.delete(force=True)
    with anyio.fail_after(GUARD):
        assert (await task.wait()).exit_code == 137
        assert (await proc.wait()).exit_code == 137
    assert fake.controls.is_empty()
    assert fifo_files(state_dir) == []
    assert len(client._session.tracker) == 0


async def test_plain_delete_still_refuses_a_container_with_a_task(
    client: supervisor.Client, fake: FakeTransport
) -> None:
    container = await client.new_container("c", spec())
    task = await container.new_task()
    with pytest.raises(errors.FailedPrecondition):
        await container.delete()
    assert (await task.status()) is ProcessState.CREATED
    await container.delete(force=True)
    assert fake.controls.is_empty()


# -- OOM kills found after the application's restart ----------------------------


async def test_restore_reports_an_oom_kill_it_did_not_hear_in_one_more_call(
    fake: FakeTransport, state_dir: Path
) -> None:
    async with connect(fake, state_dir) as first:
        for cid in ("oom", "plain", "runs"):
            await (await (await first.new_container(cid, spec())).new_task()).start()
    fake.controls.drop_events()  # nobody listens: the OOM and the exits are lost
    fake.controls.oom("oom")
    fake.controls.exit("oom", code=137)
    fake.controls.exit("plain", code=137)
    fake.controls.drop_events(False)
    rec = Recorder()
    again = fake.controls.reopen()
    async with connect(again, state_dir, backend=rec) as client:
        before = again.controls.calls.copy()
        restored = {c.id: t for c, t in await client.restore()}
        assert again.controls.calls - before == Counter(list_containers=1, list_tasks=1, metrics=1)
        oom, plain = restored["oom"], restored["plain"]
        assert oom is not None and plain is not None
        assert (await oom.wait()).oom_killed
        assert not (await plain.wait()).oom_killed
        await rec.barrier(again, "oom")
        await rec.barrier(again, "plain")
        assert rec.of("oom") == [(EventType.OOM, "oom"), (EventType.EXIT, "oom")]
        assert rec.exit_info("oom").oom_killed
        assert rec.of("plain") == [(EventType.EXIT, "plain")]
        assert (await oom.delete()).oom_killed
        for container, task in await client.restore():
            if task is not None:
                await task.delete(force=True)
            await container.delete()
    assert fake.controls.is_empty()


async def test_restoring_only_running_tasks_asks_no_metrics(
    fake: FakeTransport, state_dir: Path
) -> None:
    async with connect(fake, state_dir) as first:
        await (await (await first.new_container("runs", spec())).new_task()).start()
    fake.controls.oom("runs")  # an exec's, say: the init runs on
    again = fake.controls.reopen()
    async with connect(again, state_dir) as client:
        ((container, task),) = await client.restore()
        assert again.controls.calls["metrics"] == 0
        assert task is not None
        await container.delete(force=True)


async def test_metrics_refused_still_reports_the_exit(fake: FakeTransport, state_dir: Path) -> None:
    async with connect(fake, state_dir) as first:
        await (await (await first.new_container("oom", spec())).new_task()).start()
    fake.controls.drop_events()
    fake.controls.oom("oom")
    fake.controls.exit("oom", code=137)
    fake.controls.drop_events(False)
    again = fake.controls.reopen()
    again.controls.fail_next("metrics", errors.Unknown("no metrics for this runtime"))
    rec = Recorder()
    async with connect(again, state_dir, backend=rec) as client:
        ((container, task),) = await client.restore()
        assert task is not None
        status = await task.wait()
        assert status.exit_code == 137 and not status.oom_killed
        await rec.barrier(again, "oom")
        assert rec.of("oom") == [(EventType.EXIT, "oom")]
        await container.delete(force=True)


async def test_a_restore_that_cannot_ask_adopts_nothing(
    fake: FakeTransport, state_dir: Path
) -> None:
    async with connect(fake, state_dir) as first:
        await (await (await first.new_container("oom", spec())).new_task()).start()
    fake.controls.exit("oom", code=137)
    again = fake.controls.reopen()
    again.controls.fail_next("metrics", _LOST)
    async with connect(again, state_dir) as client:
        with pytest.raises(errors.Unavailable):
            await client.restore()
        assert len(client._session.tracker) == 0
        ((container, task),) = await client.restore()
        assert task is not None
        await container.delete(force=True)
    assert fake.controls.is_empty()
