"""The application's own restart: a second client over the same state
directory finds what the first left, reports each exit the first did not
handle (once), and none it did."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import ProcessState
from supervisor.backends.fake import FakeTransport
from tests.unit.conftest import GUARD, NS, Recorder, connect, open_fds, spec

pytestmark = pytest.mark.asyncio


async def _leave_running(fake: FakeTransport, state_dir: Path, *ids: str) -> None:
    """A first run of the application: containers started, then it goes away."""
    async with connect(fake, state_dir) as first:
        for cid in ids:
            container = await first.new_container(cid, spec())
            await (await container.new_task()).start()


async def test_restore_finds_everything_in_three_calls_and_reports_a_stopped_task_once(
    fake: FakeTransport, state_dir: Path
) -> None:
    await _leave_running(fake, state_dir, "runs", "ended")
    fake.controls.exit("ended", code=6)  # while no client listens
    again = fake.controls.reopen()
    async with connect(again, state_dir) as first_without_backend:
        await first_without_backend.new_container("empty", spec())
    rec = Recorder()
    again = fake.controls.reopen()
    async with connect(again, state_dir, backend=rec) as client:
        before = again.controls.calls.copy()
        restored = await client.restore()
        # Two lists, and one Metrics call for every task found stopped (its
        # cgroup's OOM-kill counter).
        assert again.controls.calls - before == Counter(list_containers=1, list_tasks=1, metrics=1)
        by_id = {c.id: t for c, t in restored}
        assert sorted(by_id) == ["empty", "ended", "runs"]
        assert by_id["empty"] is None
        ended, runs = by_id["ended"], by_id["runs"]
        assert ended is not None and runs is not None
        with anyio.fail_after(GUARD):
            assert (await ended.wait()).exit_code == 6
        await rec.barrier(again, "ended")
        # restoring or loading again reports nothing new
        await client.restore()
        await (await client.load_container("ended")).task()
        await rec.barrier(again, "ended")
        assert rec.exits() == Counter({("ended", "ended"): 1})
        assert runs.pid == fake.controls.processes("runs")["runs"].pid
        assert await runs.status() is ProcessState.RUNNING
        fake.controls.exit("runs", code=2)
        with anyio.fail_after(GUARD):
            assert (await runs.wait()).exit_code == 2
        await rec.barrier(again, "runs")
        assert rec.exits() == Counter({("ended", "ended"): 1, ("runs", "runs"): 1})
        for container, task in await client.restore():
            if task is not None:
                await task.delete()
            await container.delete()
    assert fake.controls.is_empty()


async def test_an_exit_handled_before_a_restart_is_not_reported_again(
    fake: FakeTransport, state_dir: Path
) -> None:
    ledger = state_dir / ".exits" / NS
    first = Recorder(fail_exits_of=frozenset({"failed"}))
    async with connect(fake, state_dir, backend=first) as client:
        for cid in ("handled", "failed"):
            container = await client.new_container(cid, spec())
            task = await container.new_task()
            await task.start()
            fake.controls.exit(cid, code=3)
            with anyio.fail_after(GUARD):
                assert (await task.wait()).exit_code == 3
            await first.barrier(fake, cid)
        assert first.exits() == Counter({("handled", "handled"): 1, ("failed", "failed"): 1})
    # the handler of "failed" raised: only "handled" is on record
    assert [p.name for p in ledger.iterdir()] == ["handled@handled"]
    second = Recorder()
    again = fake.controls.reopen()
    async with connect(again, state_dir, backend=second) as client:
        restored = dict(await client.restore())
        for task in restored.values():
            assert task is not None
            with anyio.fail_after(GUARD):
                assert (await task.wait()).exit_code == 3
        for cid in ("handled", "failed"):
            await second.barrier(again, cid)
        assert second.exits() == Counter({("failed", "failed"): 1})
        for container, task in restored.items():
            assert task is not None
            await task.delete()
            await container.delete()
    assert list(ledger.iterdir()) == []  # deletes take the records along
    assert fake.controls.is_empty()


async def test_an_exit_the_first_run_never_heard_is_reported_by_the_next(
    fake: FakeTransport, state_dir: Path
) -> None:
    first = Recorder()
    async with connect(fake, state_dir, backend=first) as client:
        container = await client.new_container("pending", spec())
        task = await container.new_task()
        await task.start()
        fake.controls.drop_events(True)  # the exit happens, but this run never hears it
        fake.controls.exit("pending", code=8)
    fake.controls.drop_events(False)
    assert first.exits() == Counter()
    second = Recorder()
    again = fake.controls.reopen()
    async with connect(again, state_dir, backend=second) as client:
        task = await (await client.load_container("pending")).task()
        with anyio.fail_after(GUARD):
            assert (await task.wait()).exit_code == 8
        await second.barrier(again, "pending")
        assert second.exits() == Counter({("pending", "pending"): 1})
        await task.delete()
        await (await client.load_container("pending")).delete()


async def test_records_of_containers_deleted_elsewhere_are_pruned_at_connect(
    fake: FakeTransport, state_dir: Path
) -> None:
    ledger = state_dir / ".exits" / NS
    rec = Recorder()
    async with connect(fake, state_dir, backend=rec) as client:
        container = await client.new_container("elsewhere", spec())
        task = await container.new_task()
        await task.start()
        fake.controls.exit("elsewhere")
        await rec.barrier(fake, "elsewhere")
    assert [p.name for p in ledger.iterdir()] == ["elsewhere@elsewhere"]
    other = fake.controls.reopen()  # another client deletes it, no ledger involved
    await other.delete_task("elsewhere")
    await other.delete_container("elsewhere")
    again = fake.controls.reopen()
    async with connect(again, state_dir, backend=Recorder()):
        assert again.controls.calls["list_containers"] == 1
        assert list(ledger.iterdir()) == []


@pytest.mark.asyncio
async def test_loading_a_task_never_removes_fifos_of_an_exec_being_created(
    client: supervisor.Client, fake: FakeTransport
) -> None:
    # Another client of the same state dir makes its exec's FIFOs before
    # containerd knows the exec: a task loaded meanwhile must leave them.
    import os

    container = await client.new_container("busy", spec())
    task = await container.new_task()
    await task.start()
    foreign = [container.bundle_dir / f"exec.other.0123abcd-{s}" for s in ("stdout", "stderr")]
    for path in foreign:
        os.mkfifo(path, 0o600)
    again = await client.load_container("busy")
    loaded = await again.task()
    assert loaded.execs == {}
    assert all(path.exists() for path in foreign)
    for path in foreign:
        path.unlink()
    await task.delete(force=True)
    await container.delete()


async def _leave_with_an_exec(fake: FakeTransport, state_dir: Path, cid: str) -> FakeTransport:
    """A first run leaves a started task with a started exec ``e1``; the
    connection of the next run."""
    async with connect(fake, state_dir) as first:
        container = await first.new_container(cid, spec())
        task = await container.new_task()
        await task.start()
        await (await task.exec("e1", ["sleep", "60"])).start()
    return fake.controls.reopen()


async def test_restore_without_attaching_opens_nothing_and_can_attach_later(
    fake: FakeTransport, state_dir: Path
) -> None:
    # A look-only restore must not take the FIFOs' read ends: another
    # reader (the first run, another object) keeps the whole output.
    again = await _leave_with_an_exec(fake, state_dir, "runs")
    async with connect(again, state_dir) as client:
        before = open_fds()
        ((container, task),) = await client.restore(attach=False)
        assert task is not None and sorted(task.execs) == ["e1"]
        assert open_fds() == before
        for proc in (task, task.execs["e1"]):
            with pytest.raises(supervisor.errors.FailedPrecondition, match="attach=False"):
                proc.stdout  # noqa: B018
        # Attaching later attaches these same objects.
        assert await container.task() is task
        assert len(open_fds() - before) == 4  # two output FIFOs each
        assert task.stdout is not None and task.execs["e1"].stdout is not None
        again.controls.exit("runs", "e1")
        again.controls.exit("runs")
        await task.execs["e1"].delete()
        await task.delete()
        await container.delete()
    assert open_fds() == before


async def test_deleting_an_unattached_process_removes_its_files(
    fake: FakeTransport, state_dir: Path
) -> None:
    again = await _leave_with_an_exec(fake, state_dir, "c")
    async with connect(again, state_dir) as client:
        ((container, task),) = await client.restore(attach=False)
        assert task is not None
        fifos = sorted(p.name for p in container.bundle_dir.iterdir() if p.is_fifo())
        assert len(fifos) == 4, fifos
        again.controls.exit("c", "e1")
        await task.execs["e1"].delete()
        left = sorted(p.name for p in container.bundle_dir.iterdir() if p.is_fifo())
        assert len(left) == 2 and not any(name.startswith("exec.e1.") for name in left), left
        await task.delete(force=True)
        assert not any(p.is_fifo() for p in container.bundle_dir.iterdir())
        await container.delete()


async def test_loading_a_task_again_shares_its_open_stdio(
    fake: FakeTransport, state_dir: Path
) -> None:
    # An application that restores (or loads) periodically must not open the
    # FIFOs once more per call: the fds would pile up until the task ends.
    again = await _leave_with_an_exec(fake, state_dir, "runs")
    async with connect(again, state_dir) as client:
        ((_, task),) = await client.restore()
        assert task is not None
        after_first = open_fds()
        for _ in range(3):
            ((_, other),) = await client.restore()
            assert other is not None and other is not task
            assert other.stdout is task.stdout
            assert other.execs["e1"].stdout is task.execs["e1"].stdout
            loaded = await (await client.load_container("runs")).task()
            assert loaded.stdout is task.stdout
        assert open_fds() == after_first
        # Deleting through any one of them closes the shared ends.
        again.controls.exit("runs", "e1")
        again.controls.exit("runs")
        await other.execs["e1"].delete()
        await other.delete()
        await (await client.load_container("runs")).delete()
    assert fake.controls.is_empty()
