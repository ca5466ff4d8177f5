"""Whole lives of containers, tasks and execs on the fake containerd: the
calls each costs, what is left afterwards, and the refusals that change nothing."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import ProcessState, errors
from supervisor._types import StdioPaths
from supervisor.backends.fake import FakeTransport
from tests.unit.conftest import GUARD, connect, fifo_files, open_fds, settle, spec

pytestmark = pytest.mark.asyncio


async def test_a_whole_lifecycle_costs_six_calls_and_leaves_nothing(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    fds = open_fds()
    before = fake.controls.calls.copy()
    container = await client.new_container("life", spec(["sh", "-c", "exit 3"]))
    assert container.bundle_dir.is_dir()
    task = await container.new_task()
    assert fake.controls.processes("life")["life"].state is ProcessState.CREATED
    assert len(fifo_files(state_dir)) == 2  # stdout and stderr
    await task.start()
    assert task.pid == fake.controls.processes("life")["life"].pid > 0
    with pytest.raises(anyio.EndOfStream):  # nothing writes: the fake runs nothing
        await task.stdout.receive()
    fake.controls.exit("life", code=3)
    with anyio.fail_after(GUARD):
        status = await task.wait()
    assert (status.exit_code, status.oom_killed) == (3, False)
    assert status.exited_at is not None
    deleted = await task.delete()
    assert (deleted.exit_code, deleted.exited_at) == (3, status.exited_at)
    await container.delete()
    # wait() costs nothing: it is resolved from the event stream
    assert fake.controls.calls - before == Counter(
        create_container=1, create_task=1, start=1, delete_task=1, get_task=1, delete_container=1
    )
    assert fake.controls.is_empty()
    assert fifo_files(state_dir) == []
    assert not container.bundle_dir.exists()
    assert open_fds() == fds


async def test_without_events_a_wait_is_one_wait_call(fake: FakeTransport, state_dir: Path) -> None:
    async with connect(fake, state_dir, events=False) as client:
        assert fake.controls.calls["subscribe"] == 0
        container = await client.new_container("quiet", spec())
        task = await container.new_task()
        await task.start()
        fake.controls.exit("quiet", code=4)
        with anyio.fail_after(GUARD):
            assert (await task.wait()).exit_code == 4
            assert (await task.wait()).exit_code == 4  # known now: no second call
        assert fake.controls.calls["wait"] == 1
        await task.delete()
        await container.delete()
    assert fake.controls.is_empty()


async def test_an_exec_lifecycle_costs_three_calls(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    container = await client.new_container("host", spec())
    task = await container.new_task()
    await task.start()
    fifos = fifo_files(state_dir)
    before = fake.controls.calls.copy()
    proc = await task.exec("e1", ["sh", "-c", "exit 4"])
    assert proc.pid == 0
    assert fake.controls.processes("host")["e1"].state is ProcessState.CREATED
    await proc.start()
    assert proc.pid == fake.controls.processes("host")["e1"].pid > 0
    fake.controls.exit("host", "e1", code=4)
    with anyio.fail_after(GUARD):
        assert (await proc.wait()).exit_code == 4
    assert (await proc.delete()).exit_code == 4
    assert fake.controls.calls - before == Counter(exec=1, start=1, delete_process=1)
    assert list(fake.controls.processes("host")) == ["host"]
    assert fifo_files(state_dir) == fifos  # the exec's went, the task's stay
    assert fake.controls.processes("host")["host"].state is ProcessState.RUNNING
    await task.delete(force=True)
    await container.delete()
    assert fake.controls.is_empty()


async def test_exec_args_inherit_the_containers_process(
    client: supervisor.Client, fake: FakeTransport
) -> None:
    container = await client.new_container("inherit", spec(env=["A=1"], cwd="/srv"))
    task = await container.new_task()
    await task.start()
    await task.exec("e", ["true"])
    sent = fake.controls.exec_spec("inherit", "e")
    assert (sent["args"], sent["env"][-1], sent["cwd"]) == (["true"], "A=1", "/srv")
    assert sent["terminal"] is False
    assert sent["capabilities"] == container.spec["process"]["capabilities"]
    await task.delete(force=True)
    await container.delete()


async def test_replace_kills_and_deletes_what_holds_the_id(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    old = await client.new_container("again", spec(["sleep", "300"]))
    old_task = await old.new_task()
    await old_task.start()
    with pytest.raises(errors.AlreadyExists):
        await client.new_container("again", spec(["true"]))
    assert fake.controls.processes("again")["again"].state is ProcessState.RUNNING
    new = await client.new_container("again", spec(["sh", "-c", "echo fresh"]), replace=True)
    assert new.spec["process"]["args"] == ["sh", "-c", "echo fresh"]
    with anyio.fail_after(GUARD):
        assert (await old_task.wait()).exit_code == 137  # killed, every process of it
    assert ("again", "again", signal.SIGKILL, True) in fake.controls.signals
    assert fake.controls.container_ids() == ["again"]
    assert fake.controls.processes("again") == {}  # the old task is gone, no new one yet
    stored = await fake.controls.reopen().get_container("again")
    assert stored.spec["process"]["args"] == ["sh", "-c", "echo fresh"]
    task = await new.new_task()
    await task.start()
    fake.controls.exit("again")
    with anyio.fail_after(GUARD):
        assert (await task.wait()).exit_code == 0
    await task.delete()
    await new.delete()
    with pytest.raises(errors.NotFound):  # the caller's old object: already gone
        await old_task.delete()
    assert fake.controls.is_empty()
    assert fifo_files(state_dir) == []


async def test_already_exists_leaves_the_live_container_and_its_stdio_untouched(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    container = await client.new_container("dup", spec())
    task = await container.new_task(stdin=True)
    fifos = fifo_files(state_dir)
    with pytest.raises(errors.AlreadyExists):
        await client.new_container("dup", spec(["true"]))
    with pytest.raises(errors.AlreadyExists):
        await container.new_task()
    assert fifo_files(state_dir) == fifos
    assert task.stdin is not None and task.stdin.fileno >= 0  # type: ignore[attr-defined]
    await task.start()
    await task.delete(force=True)
    await container.delete()
    assert fake.controls.is_empty()


async def test_force_delete_of_a_created_task_and_of_a_created_exec(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    container = await client.new_container("created", spec())
    task = await container.new_task()
    with anyio.fail_after(GUARD):
        assert (await task.delete(force=True)).exit_code == 137
    task = await container.new_task()
    await task.start()
    proc = await task.exec("never", ["true"])
    with anyio.fail_after(GUARD):
        await proc.delete(force=True)
    assert list(fake.controls.processes("created")) == ["created"]
    await task.delete(force=True)
    await container.delete()
    assert fake.controls.is_empty()
    assert fifo_files(state_dir) == []


async def test_a_container_with_a_task_is_not_deleted(
    client: supervisor.Client, fake: FakeTransport
) -> None:
    container = await client.new_container("busy", spec())
    task = await container.new_task()
    with pytest.raises(errors.FailedPrecondition):
        await container.delete()
    assert fake.controls.container_ids() == ["busy"]
    assert container.bundle_dir.is_dir()
    # nor a task that still runs
    await task.start()
    with pytest.raises(errors.FailedPrecondition):
        await task.delete()
    assert fake.controls.processes("busy")["busy"].state is ProcessState.RUNNING
    await task.delete(force=True)
    await container.delete()


async def test_task_calls_reach_containerd(client: supervisor.Client, fake: FakeTransport) -> None:
    container = await client.new_container("calls", spec(terminal=True))
    task = await container.new_task(terminal=True, stdin=True)
    await task.close_stdin()  # before start: held back until the process exists
    assert not fake.controls.stdin_closed("calls")
    await task.start()
    # A terminal's input ends by its EOF key: CloseIO would hang it up.
    assert not fake.controls.stdin_closed("calls")
    assert task.stdin is not None
    with pytest.raises(anyio.ClosedResourceError):  # our end is closed
        await task.stdin.send(b"more")
    await task.resize(80, 25)
    assert fake.controls.terminal_size("calls") == (80, 25)
    await task.pause()
    assert await task.status() is ProcessState.PAUSED
    await task.resume()
    assert await task.status() is ProcessState.RUNNING
    assert [p.pid for p in await task.pids()] == [task.pid]
    await task.update_resources({"memory": {"limit": 64 << 20}})
    assert fake.controls.resources("calls") == {"memory": {"limit": 64 << 20}}
    assert (await task.stats()).memory.limit == 64 << 20
    with pytest.raises(errors.InvalidArgument):
        await task.kill(0)
    await task.kill(signal.SIGTERM)
    with anyio.fail_after(GUARD):
        assert (await task.wait()).exit_code == 128 + signal.SIGTERM
    for op in (task.pause, task.resume, task.start):
        with pytest.raises(errors.FailedPrecondition):
            await op()
    await task.delete()
    await container.delete()


async def test_load_container_and_its_task(client: supervisor.Client, fake: FakeTransport) -> None:
    container = await client.new_container("loaded", spec(), labels={"app": "x"})
    task = await container.new_task()
    await task.start()
    loaded = await client.load_container("loaded")
    assert (loaded.labels, loaded.runtime) == ({"app": "x"}, supervisor.DEFAULT_RUNTIME)
    again = await loaded.task()
    assert again.pid == task.pid and again is not task
    fake.controls.exit("loaded", code=7)
    with anyio.fail_after(GUARD):
        assert (await again.wait()).exit_code == 7
        assert (await task.wait()).exit_code == 7
    await again.delete()
    await settle()
    with pytest.raises(errors.NotFound):
        await task.delete()  # through the other object: gone, its stdio released
    await loaded.delete()
    with pytest.raises(errors.NotFound):
        await client.load_container("loaded")
    assert fake.controls.is_empty()


async def test_a_task_made_by_another_client_loads_without_stdio(
    client: supervisor.Client, fake: FakeTransport
) -> None:
    other = fake.controls.reopen()
    await other.create_container(
        "foreign", spec(), runtime=supervisor.DEFAULT_RUNTIME, runtime_options=None, labels={}
    )
    pid = await other.create_task("foreign", StdioPaths())
    await other.start("foreign", "")
    task = await (await client.load_container("foreign")).task()
    assert (task.pid, await task.status()) == (pid, ProcessState.RUNNING)
    with pytest.raises(errors.FailedPrecondition):
        _ = task.stdout
    await task.delete(force=True)
    await (await client.load_container("foreign")).delete()
    assert fake.controls.is_empty()
