"""What the backend hears, and the OOM flag: events in order per container,
each EXIT exactly once (sent twice, or missed while the stream was broken
and found by reconciliation), and nothing from another namespace."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import supervisor
from supervisor import EventType, ProcessState
from supervisor._types import TaskEvent, Topic
from supervisor.backends.fake import FakeTransport
from tests.unit.conftest import GUARD, Recorder, connect, spec

pytestmark = pytest.mark.asyncio


async def test_backend_hears_the_lifecycle_in_order(fake: FakeTransport, state_dir: Path) -> None:
    rec = Recorder()
    async with connect(fake, state_dir, backend=rec) as client:
        container = await client.new_container("ordered", spec())
        task = await container.new_task()
        await task.start()
        proc = await task.exec("e1", ["sh", "-c", "exit 4"])
        await proc.start()
        fake.controls.exit("ordered", "e1", code=4)
        with anyio.fail_after(GUARD):
            assert (await proc.wait()).exit_code == 4
        await proc.delete()
        await task.pause()
        await task.resume()
        await task.kill(signal.SIGKILL)
        with anyio.fail_after(GUARD):
            assert (await task.wait()).exit_code == 137
        await rec.barrier(fake, "ordered")
        await task.delete()
        await container.delete()
    assert rec.of("ordered") == [
        (EventType.CREATE, "ordered"),
        (EventType.START, "ordered"),
        (EventType.EXEC_ADDED, "e1"),
        (EventType.EXEC_STARTED, "e1"),
        (EventType.EXIT, "e1"),
        (EventType.PAUSED, "ordered"),
        (EventType.RESUMED, "ordered"),
        (EventType.EXIT, "ordered"),
    ]
    e1 = rec.exit_info("ordered", "e1")
    assert (e1.exit_code, e1.pid, e1.oom_killed) == (4, proc.pid, False)
    init = rec.exit_info("ordered")
    assert (init.exit_code, init.pid) == (137, task.pid)
    assert init.exited_at is not None
    assert [i.timestamp is not None for c, e, i in rec.events if e is not EventType.EXIT] == [
        True
    ] * 6


async def test_an_exit_off_the_stream_carries_its_timestamp(
    fake: FakeTransport, state_dir: Path
) -> None:
    rec = Recorder()
    async with connect(fake, state_dir, backend=rec) as client:
        container = await client.new_container("stamped", spec())
        task = await container.new_task()
        await task.start()
        fake.controls.exit("stamped", code=1)
        await rec.barrier(fake, "stamped")
        (published,) = [ev for ev in fake.controls.events if ev.topic is Topic.EXIT]
        assert rec.exit_info("stamped").timestamp == published.timestamp
        await task.delete()
        await container.delete()


async def test_an_init_exit_takes_the_execs_with_it(fake: FakeTransport, state_dir: Path) -> None:
    rec = Recorder()
    async with connect(fake, state_dir, backend=rec) as client:
        container = await client.new_container("pidns", spec())
        task = await container.new_task()
        await task.start()
        proc = await task.exec("child", ["sleep", "60"])
        await proc.start()
        await task.kill(signal.SIGTERM)
        with anyio.fail_after(GUARD):
            assert (await proc.wait()).exit_code == 137
            assert (await task.wait()).exit_code == 128 + signal.SIGTERM
        await rec.barrier(fake, "pidns")
        assert rec.exits() == Counter({("pidns", "child"): 1, ("pidns", "pidns"): 1})
        await proc.delete()
        await task.delete()
        await container.delete()


@pytest.mark.parametrize("with_backend", [False, True])
async def test_oom_flag_set_before_exit_cleared_by_a_new_task_set_by_an_exec(
    fake: FakeTransport, state_dir: Path, with_backend: bool
) -> None:
    rec = Recorder() if with_backend else None
    async with connect(fake, state_dir, backend=rec) as client:
        container = await client.new_container("oomy", spec())
        # the init process is OOM-killed
        task = await container.new_task()
        await task.start()
        fake.controls.oom("oomy")
        fake.controls.exit("oomy", code=137)
        with anyio.fail_after(GUARD):
            status = await task.wait()
        assert status.oom_killed
        assert (await task.delete()).oom_killed
        # the next task of the same container starts with the flag cleared
        task = await container.new_task()
        await task.start()
        fake.controls.exit("oomy", code=0)
        with anyio.fail_after(GUARD):
            assert not (await task.wait()).oom_killed
        assert not (await task.delete()).oom_killed
        # an exec is OOM-killed: its own status does not say (only the init
        # process's carries the flag), the container's next exit does
        task = await container.new_task()
        await task.start()
        hog = await task.exec("hog", ["dd", "if=/dev/zero", "of=/tmp/fill"])
        await hog.start()
        fake.controls.oom("oomy")
        fake.controls.exit("oomy", "hog", code=137)
        with anyio.fail_after(GUARD):
            assert not (await hog.wait()).oom_killed
        await hog.delete()
        await task.kill(signal.SIGKILL)
        with anyio.fail_after(GUARD):
            assert (await task.wait()).oom_killed
        if rec is not None:
            await rec.barrier(fake, "oomy")
            exits = [(i.process_id, i.oom_killed) for c, e, i in rec.events if e is EventType.EXIT]
            assert exits == [("oomy", True), ("oomy", False), ("hog", False), ("oomy", True)]
            assert [e for e, _ in rec.of("oomy")].count(EventType.OOM) == 2
        assert (await task.delete()).oom_killed
        await container.delete()


async def test_an_exit_sent_twice_is_heard_once(fake: FakeTransport, state_dir: Path) -> None:
    rec = Recorder()
    async with connect(fake, state_dir, backend=rec) as client:
        container = await client.new_container("twice", spec())
        task = await container.new_task()
        await task.start()
        proc = await task.exec("e", ["true"])
        await proc.start()
        fake.controls.exit("twice", "e", code=1)
        fake.controls.exit("twice", code=2)
        exits = [ev for ev in fake.controls.events if ev.topic is Topic.EXIT]
        assert len(exits) == 2
        for ev in exits:  # containerd re-sends exits after its own restart
            fake.controls.publish(ev)
        with anyio.fail_after(GUARD):
            assert (await task.wait()).exit_code == 2
        await rec.barrier(fake, "twice")
        assert rec.exits() == Counter({("twice", "e"): 1, ("twice", "twice"): 1})
        await proc.delete()
        await task.delete()
        await container.delete()
        # a copy arriving after the delete is still not news
        for ev in exits:
            fake.controls.publish(ev)
        await rec.barrier(fake, "twice")
    assert rec.exits() == Counter({("twice", "e"): 1, ("twice", "twice"): 1})


async def test_exits_missed_while_the_stream_was_broken_are_found_once(
    fake: FakeTransport, state_dir: Path
) -> None:
    rec = Recorder()
    async with connect(fake, state_dir, backend=rec) as client:
        tasks = {}
        for cid in ("a", "b", "c"):
            container = await client.new_container(cid, spec())
            tasks[cid] = await container.new_task()
            await tasks[cid].start()
        proc = await tasks["b"].exec("d", ["sleep", "1"])
        await proc.start()
        subscribed = fake.controls.calls["subscribe"]
        gate = fake.controls.hold("subscribe")  # the outage lasts until released
        fake.controls.break_stream()
        # while nobody listens: a exits, b's exec exits, c is deleted by
        # another client (nothing of it is left to find)
        fake.controls.exit("a", code=21)
        fake.controls.exit("b", "d", code=24)
        fake.controls.exit("c", code=3)
        await fake.controls.reopen().delete_task("c")
        with anyio.fail_after(GUARD):
            await gate.wait()
        gate.release()
        with anyio.fail_after(GUARD):
            assert (await tasks["a"].wait()).exit_code == 21
            assert (await proc.wait()).exit_code == 24
            assert (await tasks["c"].wait()).exit_code == 255  # lost
        assert fake.controls.calls["subscribe"] == subscribed + 1
        assert fake.controls.calls["list_tasks"] >= 1  # the reconciliation
        assert (await tasks["b"].status()) is ProcessState.RUNNING
        # containerd then sends the missed exits after all: still not news
        for ev in fake.controls.events:
            if ev.topic is Topic.EXIT:
                fake.controls.publish(ev)
        fake.controls.exit("b", code=0)
        with anyio.fail_after(GUARD):
            await tasks["b"].wait()
        for cid in ("a", "b", "c"):
            await rec.barrier(fake, cid)
    assert rec.exits() == Counter({("a", "a"): 1, ("b", "d"): 1, ("c", "c"): 1, ("b", "b"): 1})
    codes = {(c, i.process_id): i.exit_code for c, e, i in rec.events if e is EventType.EXIT}
    assert codes == {("a", "a"): 21, ("b", "d"): 24, ("c", "c"): 255, ("b", "b"): 0}


async def test_a_containerd_outage_is_ridden_through(fake: FakeTransport, state_dir: Path) -> None:
    rec = Recorder()
    async with connect(fake, state_dir, backend=rec) as client:
        container = await client.new_container("outage", spec())
        task = await container.new_task()
        await task.start()
        fake.controls.set_down(True)
        fake.controls.exit("outage", code=9)  # the shim outlives containerd
        with pytest.raises(supervisor.errors.Unavailable):
            await task.status()
        await anyio.sleep(0.05)  # the client tries to resubscribe meanwhile
        assert fake.controls.subscriptions == 0
        fake.controls.set_down(False)
        with anyio.fail_after(GUARD):
            assert (await task.wait()).exit_code == 9
        await rec.barrier(fake, "outage")
        assert rec.exits() == Counter({("outage", "outage"): 1})
        await task.delete()
        await container.delete()


async def test_events_dropped_then_a_restart_still_report_each_exit_once(
    fake: FakeTransport, state_dir: Path
) -> None:
    rec = Recorder()
    async with connect(fake, state_dir, backend=rec) as client:
        container = await client.new_container("quiet", spec())
        task = await container.new_task()
        await task.start()
        fake.controls.drop_events(True)  # published, but this client was not subscribed
        fake.controls.exit("quiet", code=5)
        fake.controls.drop_events(False)
        await anyio.lowlevel.checkpoint()
        assert rec.exits() == Counter()
        fake.controls.restart()
        with anyio.fail_after(GUARD):
            assert (await task.wait()).exit_code == 5
        await rec.barrier(fake, "quiet")
        assert rec.exits() == Counter({("quiet", "quiet"): 1})
        await task.delete()
        await container.delete()


async def test_other_namespaces_are_never_delivered(fake: FakeTransport, state_dir: Path) -> None:
    rec = Recorder()
    noisy = fake.controls.reopen("elsewhere")
    async with connect(fake, state_dir, backend=rec) as client:
        async with connect(noisy, state_dir / "other") as other:
            container = await other.new_container("c", spec())
            task = await container.new_task()
            await task.start()
            noisy.controls.exit("c")
            with anyio.fail_after(GUARD):
                await task.wait()
            await task.delete()
            await container.delete()
        mine = await client.new_container("mine", spec())
        await rec.barrier(fake, "mine")
        await mine.delete()
    assert [c for c, _, _ in rec.events] == []


async def test_a_raising_handler_does_not_stop_later_events(
    fake: FakeTransport, state_dir: Path
) -> None:
    rec = Recorder(fail_exits_of=frozenset({"boom"}))
    async with connect(fake, state_dir, backend=rec) as client:
        for cid in ("boom", "fine"):
            container = await client.new_container(cid, spec())
            task = await container.new_task()
            await task.start()
            fake.controls.exit(cid, code=1)
            with anyio.fail_after(GUARD):
                await task.wait()
        fake.controls.publish(TaskEvent(fake.namespace, Topic.OOM, "boom", "boom"))
        await rec.barrier(fake, "boom")
        await rec.barrier(fake, "fine")
        assert rec.exits() == Counter({("boom", "boom"): 1, ("fine", "fine"): 1})
        assert rec.of("boom")[-1] == (EventType.OOM, "boom")
