"""The backend hears every task event once, in order per container, also
across a containerd crash and restart."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import EventInfo, EventType
from tests._containerd import PrivateContainerd, short_tmpdir
from tests.integration.conftest import purge_namespace
from tests.integration.helpers import Recorder, read_all

pytestmark = pytest.mark.asyncio


async def test_backend_hears_the_lifecycle_in_order(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        spec = supervisor.default_spec(["sleep", "60"], rootfs)
        container = await client.new_container("ordered", spec)
        task = await container.new_task()
        await task.start()
        proc = await task.exec("e1", supervisor.process_spec(["sh", "-c", "exit 4"]))
        await proc.start()
        assert (await proc.wait()).exit_code == 4
        await proc.delete()
        await task.pause()
        await task.resume()
        await task.kill(signal.SIGKILL)
        assert (await task.wait()).exit_code == 137
        await rec.wait_for(lambda: rec.exits()[("ordered", "ordered")] == 1)
        await task.delete()
        await container.delete()
    kinds = [(e, i.process_id) for e, i in rec.of("ordered")]
    assert kinds == [
        (EventType.CREATE, "ordered"),
        (EventType.START, "ordered"),
        (EventType.EXEC_ADDED, "e1"),
        (EventType.EXEC_STARTED, "e1"),
        (EventType.EXIT, "e1"),
        (EventType.PAUSED, "ordered"),
        (EventType.RESUMED, "ordered"),
        (EventType.EXIT, "ordered"),
    ]
    exits = {i.process_id: i for e, i in rec.of("ordered") if e is EventType.EXIT}
    assert exits["e1"].exit_code == 4 and exits["e1"].pid == proc.pid
    assert exits["ordered"].exit_code == 137 and exits["ordered"].pid == task.pid
    assert exits["ordered"].exited_at is not None


async def test_oom_event_then_exit_carrying_it_and_cleared_on_restart(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        spec = supervisor.default_spec(["sleep", "60"], rootfs, memory_limit=16 << 20)
        container = await client.new_container("oomy", spec)
        task = await container.new_task()
        await task.start()
        # An exec is OOM-killed; the init process is not, yet the container's flag is set.
        hog = await task.exec(
            "hog",
            supervisor.process_spec(["sh", "-c", "dd if=/dev/zero of=/tmp/fill bs=1M count=64"]),
        )
        await hog.start()
        with anyio.fail_after(30):
            await hog.wait()
        await rec.wait_for(lambda: any(e is EventType.OOM for e, _ in rec.of("oomy")))
        await hog.delete()
        await task.kill(signal.SIGKILL)
        status = await task.wait()
        assert status.oom_killed
        await rec.wait_for(lambda: rec.exits()[("oomy", "oomy")] == 1)
        init_exit = [i for e, i in rec.of("oomy") if e is EventType.EXIT and i.process_id == "oomy"]
        assert init_exit[0].oom_killed
        assert (await task.delete()).oom_killed
        # the next run of the same container starts with the flag cleared
        task = await container.new_task()
        await task.start()
        await task.kill(signal.SIGKILL)
        assert not (await task.wait()).oom_killed
        await task.delete()
        await container.delete()


async def test_other_namespaces_are_never_delivered(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    rec = Recorder()
    other = namespace[:60] + "-other"
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ):
        async with supervisor.connect(
            containerd_address, namespace=other, state_dir=state_dir
        ) as noisy:
            spec = supervisor.default_spec(["true"], rootfs)
            c = await noisy.new_container("elsewhere", spec)
            t = await c.new_task()
            await t.start()
            await t.wait()
            await t.delete()
            await c.delete()
    await purge_namespace(containerd_address, other)
    assert rec.events == []


async def test_exit_exactly_once_for_many_containers(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:

        async def one(i: int) -> None:
            spec = supervisor.default_spec(["sh", "-c", f"exit {i}"], rootfs)
            c = await client.new_container(f"many-{i}", spec)
            t = await c.new_task()
            await t.start()
            assert (await t.wait()).exit_code == i
            await t.delete()
            await c.delete()

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(one, i)
        await rec.wait_for(lambda: len(rec.exits()) == 20)
        await anyio.sleep(0.3)  # a duplicate would arrive about now
    assert rec.exits() == Counter({(f"many-{i}", f"many-{i}"): 1 for i in range(20)})
    for i in range(20):
        (code,) = [inf.exit_code for e, inf in rec.of(f"many-{i}") if e is EventType.EXIT]
        assert code == i


@pytest.fixture
def own_containerd() -> Iterator[PrivateContainerd]:
    """A containerd of this test's own: it gets killed."""
    directory = short_tmpdir("sv-crash-")
    ctrd = PrivateContainerd(directory)
    ctrd.start()
    try:
        yield ctrd
    finally:
        if ctrd.pid is None:
            ctrd.start()
        ctrd.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def test_exits_during_a_containerd_crash_are_delivered_once(
    own_containerd: PrivateContainerd, state_dir: Path, rootfs: str
) -> None:
    rec = Recorder()
    # runc keeps state per namespace under /run/containerd/runc, shared by
    # every containerd on the machine: a namespace of this run's own.
    ns = f"crash-{os.getpid()}-{int(time.time())}"
    async with supervisor.connect(
        own_containerd.address, namespace=ns, backend=rec, state_dir=state_dir
    ) as client:
        tasks = {}
        # a: exits while containerd is down (sleep 1); b: killed after the
        # restart; c: exits before the crash; d: exec exiting during the outage.
        for name, args in (
            ("a", ["sh", "-c", "sleep 1; exit 21"]),
            ("b", ["sleep", "300"]),
            ("c", ["sh", "-c", "exit 23"]),
        ):
            container = await client.new_container(name, supervisor.default_spec(args, rootfs))
            task = await container.new_task()
            await task.start()
            tasks[name] = (container, task)
        d = await tasks["b"][1].exec("d", supervisor.process_spec(["sh", "-c", "sleep 1; exit 24"]))
        await d.start()
        assert (await tasks["c"][1].wait()).exit_code == 23
        await rec.wait_for(lambda: rec.exits()[("c", "c")] == 1)

        own_containerd.kill(signal.SIGKILL)
        await anyio.sleep(2.5)  # a and d exit while nobody listens
        own_containerd.start()

        with anyio.fail_after(30):
            assert (await tasks["a"][1].wait()).exit_code == 21
            assert (await d.wait()).exit_code == 24
        await rec.wait_for(lambda: rec.exits()[("a", "a")] == 1 and rec.exits()[("b", "d")] == 1)
        # the same client keeps working: a new container, and b still manageable
        await tasks["b"][1].kill(signal.SIGKILL)
        assert (await tasks["b"][1].wait()).exit_code == 137
        container = await client.new_container("after", supervisor.default_spec(["true"], rootfs))
        task = await container.new_task()
        await task.start()
        assert (await task.wait()).exit_code == 0
        tasks["after"] = (container, task)
        await rec.wait_for(
            lambda: rec.exits()[("b", "b")] == 1 and rec.exits()[("after", "after")] == 1
        )
        await anyio.sleep(1)  # give the shims' retried publishes time to show up twice
        await d.delete()
        for container, task in tasks.values():
            await task.delete()
            await container.delete()
    assert rec.exits() == Counter(
        {("a", "a"): 1, ("b", "b"): 1, ("c", "c"): 1, ("b", "d"): 1, ("after", "after"): 1}
    )
    codes = {(c, i.process_id): i.exit_code for c, e, i in rec.events if e is EventType.EXIT}
    assert codes == {
        ("a", "a"): 21,
        ("b", "b"): 137,
        ("c", "c"): 23,
        ("b", "d"): 24,
        ("after", "after"): 0,
    }


async def test_per_container_order_survives_concurrency(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:

        async def one(i: int) -> None:
            spec = supervisor.default_spec(["sh", "-c", "echo hi"], rootfs)
            c = await client.new_container(f"o{i}", spec)
            t = await c.new_task()
            await t.start()
            await read_all(t.stdout)
            await t.wait()
            await t.delete()
            await c.delete()

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(one, i)
        await rec.wait_for(lambda: len(rec.exits()) == 10)
    per: dict[str, list[EventType]] = defaultdict(list)
    for c, e, _ in rec.events:
        per[c].append(e)
    for i in range(10):
        assert per[f"o{i}"] == [EventType.CREATE, EventType.START, EventType.EXIT]


async def test_exits_while_the_application_was_away_are_delivered_on_load(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    # The embedding application restarts: one client closes with tasks
    # running, a new one connects later and loads what it left.
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as first:
        for cid, script in (("gone", "sleep 0.3; exit 9"), ("stays", "sleep 2; exit 4")):
            container = await first.new_container(
                cid, supervisor.default_spec(["sh", "-c", script], rootfs)
            )
            await (await container.new_task()).start()
    await anyio.sleep(1)  # "gone" exits while no client is connected
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as second:
        tasks = {}
        for container in await second.containers():
            tasks[container.id] = await container.task()
            await container.task()  # loading twice must not report twice
        assert (await tasks["gone"].wait()).exit_code == 9
        await rec.wait_for(lambda: rec.exits()[("gone", "gone")] == 1)
        with anyio.fail_after(20):
            assert (await tasks["stays"].wait()).exit_code == 4
        await rec.wait_for(lambda: rec.exits()[("stays", "stays")] == 1)
        await anyio.sleep(0.3)  # a duplicate would show up about now
        for cid, task in tasks.items():
            await task.delete()
            await (await second.load_container(cid)).delete()
    assert rec.exits() == Counter({("gone", "gone"): 1, ("stays", "stays"): 1})
    codes = {c: i.exit_code for c, e, i in rec.events if e is EventType.EXIT}
    assert codes == {"gone": 9, "stays": 4}


class Raising(Recorder):
    """A backend whose EXIT handler fails (after seeing the event)."""

    async def process_event(self, container_id: str, event: EventType, info: EventInfo) -> None:
        await super().process_event(container_id, event, info)
        if event is EventType.EXIT:
            raise RuntimeError("handler bug")


async def test_an_exit_handled_before_a_restart_is_not_reported_again(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    ledger = state_dir / ".exits" / namespace
    first = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=first, state_dir=state_dir
    ) as client:
        for cid in ("handled", "failed"):
            container = await client.new_container(
                cid, supervisor.default_spec(["sh", "-c", "exit 3"], rootfs)
            )
            task = await container.new_task()
            await task.start()
            assert (await task.wait()).exit_code == 3
        await first.wait_for(lambda: len(first.exits()) == 2)
    # "failed" was never handled: drop its record as if the handler had raised
    (ledger / "failed@failed").unlink()
    assert [p.name for p in ledger.iterdir()] == ["handled@handled"]
    # the application restarts and restores its containers
    second = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=second, state_dir=state_dir
    ) as client:
        for container in await client.containers():
            task = await container.task()
            assert (await task.wait()).exit_code == 3
        await second.wait_for(lambda: len(second.exits()) == 1)
        await anyio.sleep(0.3)  # a second report would arrive about now
        assert second.exits() == Counter({("failed", "failed"): 1})
        for container in await client.containers():
            await (await container.task()).delete()
            await container.delete()
    assert list(ledger.iterdir()) == []  # deletes take the records along


async def test_a_raising_handler_leaves_its_exit_to_be_reported_again(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    first = Raising()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=first, state_dir=state_dir
    ) as client:
        container = await client.new_container(
            "boom", supervisor.default_spec(["sh", "-c", "exit 5"], rootfs)
        )
        task = await container.new_task()
        await task.start()
        await first.wait_for(lambda: first.exits()[("boom", "boom")] == 1)
    second = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=second, state_dir=state_dir
    ) as client:
        task = await (await client.load_container("boom")).task()
        await second.wait_for(lambda: second.exits()[("boom", "boom")] == 1)
        await task.delete()
        await (await client.load_container("boom")).delete()


async def test_records_of_containers_deleted_elsewhere_are_pruned(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    ledger = state_dir / ".exits" / namespace
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        container = await client.new_container(
            "elsewhere", supervisor.default_spec(["true"], rootfs)
        )
        task = await container.new_task()
        await task.start()
        await rec.wait_for(lambda: len(rec.exits()) == 1)
    assert [p.name for p in ledger.iterdir()] == ["elsewhere@elsewhere"]
    # deleted by a client without a backend (or by ctr): no ledger involved
    async with supervisor.connect(
        containerd_address, namespace=namespace, events=False, state_dir=state_dir / "other"
    ) as other:
        gone = await other.load_container("elsewhere")
        await (await gone.task()).delete()
        await gone.delete()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=Recorder(), state_dir=state_dir
    ):
        assert list(ledger.iterdir()) == []


async def test_restore_finds_everything_in_three_rpcs_and_reports_stopped_tasks(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    from grpclib.events import SendRequest, listen

    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as first:
        for cid, args in (("runs", ["sleep", "60"]), ("ended", ["sh", "-c", "exit 6"])):
            container = await first.new_container(cid, supervisor.default_spec(args, rootfs))
            await (await container.new_task()).start()
        await first.new_container("idle", supervisor.default_spec(["true"], rootfs))
        await anyio.sleep(0.3)  # "ended" exits while only a backend-less client is there
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        rpcs: list[str] = []

        async def count(event: SendRequest) -> None:
            rpcs.append(event.method_name)

        listen(client._session.raw_transport._channel, SendRequest, count)  # type: ignore[attr-defined]
        restored = {c.id: (c, t) for c, t in await client.restore()}
        # Two lists, one Metrics call for the tasks found stopped (OOM kills).
        assert sorted(m.rsplit("/", 1)[-1] for m in rpcs) == ["List", "List", "Metrics"]
        assert set(restored) == {"runs", "ended", "idle"}
        assert restored["idle"][1] is None
        ended, runs = restored["ended"][1], restored["runs"][1]
        assert ended is not None and runs is not None
        assert (await ended.wait()).exit_code == 6
        await rec.wait_for(lambda: rec.exits() == Counter({("ended", "ended"): 1}))
        await runs.kill(signal.SIGKILL)
        assert (await runs.wait()).exit_code == 137
        await rec.wait_for(lambda: rec.exits()[("runs", "runs")] == 1)
        for container, task in restored.values():
            if task is not None:
                await task.delete()
            await container.delete()  # knows it has no task left: no extra lookup
    assert rec.exits() == Counter({("ended", "ended"): 1, ("runs", "runs"): 1})
