"""Tasks: create, start, the states a task goes through, kill, wait, the
exit status fields, and delete with what it refuses."""

from __future__ import annotations

import signal

import pytest

from supervisor._types import ProcessState, StdioPaths
from supervisor.backends.base import Transport
from supervisor.backends.fake import ZERO_TIME

from .conftest import World, outcome

pytestmark = pytest.mark.asyncio


async def test_a_task_from_created_to_deleted(world: World, transport: Transport) -> None:
    await world.container("c1")
    stdio = world.stdio("c1")
    pid = await transport.create_task("c1", stdio)
    assert pid > 0
    created = await transport.get_task("c1")
    assert (created.container_id, created.process_id) == ("c1", "c1")
    assert (created.pid, created.state, created.exit_status) == (pid, ProcessState.CREATED, None)
    assert created.stdio == stdio
    assert await transport.start("c1", "") == pid
    running = await transport.get_task("c1")
    assert (running.pid, running.state, running.exit_status) == (pid, ProcessState.RUNNING, None)
    [listed] = await transport.list_tasks()
    assert (listed.container_id, listed.process_id, listed.pid) == ("c1", "c1", pid)
    assert listed.state is ProcessState.RUNNING
    world.finish("c1", code=3)
    status = await world.wait("c1")
    assert status.exit_code == 3
    assert status.exited_at is not None and status.exited_at > ZERO_TIME
    stopped = await transport.get_task("c1")
    assert (stopped.pid, stopped.state) == (pid, ProcessState.STOPPED)
    assert stopped.exit_status is not None
    assert stopped.exit_status.exit_code == 3
    assert stopped.exit_status.exited_at == status.exited_at
    # A second wait on a stopped process answers the same at once.
    assert await world.wait("c1") == status
    deleted = await transport.delete_task("c1")
    assert (deleted.exit_code, deleted.exited_at) == (3, status.exited_at)
    assert await outcome(transport.get_task("c1")) == "NotFound"
    assert await transport.list_tasks() == []
    assert await outcome(transport.delete_task("c1")) == "NotFound"
    assert await outcome(transport.wait("c1", "")) == "NotFound"
    # The container stays, and takes a new task.
    assert (await transport.get_container("c1")).id == "c1"
    assert await transport.create_task("c1", world.stdio("c1")) > 0


async def test_kill_ends_the_task_with_the_signal(world: World, transport: Transport) -> None:
    pid = await world.task("c1")
    await transport.kill("c1", "", signal.SIGKILL, False)
    status = await world.wait("c1")
    assert status.exit_code == 128 + signal.SIGKILL
    record = await transport.get_task("c1")
    assert (record.pid, record.state) == (pid, ProcessState.STOPPED)
    # A finished process takes no signal; a kill of every process is forgiven.
    assert await outcome(transport.kill("c1", "", signal.SIGKILL, False)) == "NotFound"
    assert await outcome(transport.kill("c1", "", signal.SIGTERM, False)) == "NotFound"
    assert await outcome(transport.kill("c1", "", signal.SIGKILL, True)) == "ok"
    assert (await transport.delete_task("c1")).exit_code == 128 + signal.SIGKILL


async def test_signal_zero_probes_without_killing(world: World, transport: Transport) -> None:
    await world.task("c1")
    await transport.kill("c1", "", 0, False)
    assert (await transport.get_task("c1")).state is ProcessState.RUNNING


async def test_a_created_task_is_deleted_as_never_exited(
    world: World, transport: Transport
) -> None:
    await world.task("c1", start=False)
    status = await transport.delete_task("c1")
    assert (status.exit_code, status.exited_at) == (0, ZERO_TIME)
    assert await transport.list_tasks() == []


async def test_a_created_task_can_be_killed(world: World, transport: Transport) -> None:
    await world.task("c1", start=False)
    await transport.kill("c1", "", signal.SIGKILL, False)
    status = await world.wait("c1")
    assert status.exit_code == 128 + signal.SIGKILL
    assert (await transport.get_task("c1")).state is ProcessState.STOPPED
    assert (await transport.delete_task("c1")).exit_code == 128 + signal.SIGKILL


async def test_task_refusals(world: World, transport: Transport) -> None:
    none = StdioPaths()
    assert await outcome(transport.create_task("nope", none)) == "NotFound"
    await world.container("c1")
    # A container with no task yet.
    for call in (
        transport.get_task("c1"),
        transport.start("c1", ""),
        transport.kill("c1", "", signal.SIGKILL, False),
        transport.wait("c1", ""),
        transport.delete_task("c1"),
        transport.pids("c1"),
        transport.stats("c1"),
        transport.pause("c1"),
        transport.resume("c1"),
        transport.update_resources("c1", {}),
        transport.close_stdin("c1", ""),
    ):
        assert await outcome(call) == "NotFound", call
    assert await transport.list_tasks() == []
    pid = await transport.create_task("c1", world.stdio("c1"))
    assert await outcome(transport.create_task("c1", world.stdio("c1", "again"))) == "AlreadyExists"
    assert [(t.pid, t.state) for t in await transport.list_tasks()] == [(pid, ProcessState.CREATED)]
    await transport.start("c1", "")
    assert await outcome(transport.start("c1", "")) == "FailedPrecondition"
    assert await outcome(transport.delete_task("c1")) == "FailedPrecondition"
    assert (await transport.get_task("c1")).state is ProcessState.RUNNING
    world.finish("c1", code=0)
    await world.wait("c1")
    assert await outcome(transport.start("c1", "")) == "FailedPrecondition"
    assert await outcome(transport.update_resources("c1", {})) == "FailedPrecondition"
    assert (await transport.delete_task("c1")).exit_code == 0


async def test_the_pids_of_a_task(world: World, transport: Transport) -> None:
    pid = await world.task("c1", start=False)
    assert [p.pid for p in await transport.pids("c1")] == [pid]
    await transport.start("c1", "")
    assert [p.pid for p in await transport.pids("c1")] == [pid]
    [summary] = await transport.process_summaries("c1")
    assert (summary.pid, summary.exec_id) == (pid, "")


async def test_resize_and_close_stdin_of_the_init_process(
    world: World, transport: Transport
) -> None:
    await world.task("c1")
    # Without a terminal a resize changes nothing, and is no error.
    await transport.resize("c1", "", 80, 24)
    # The shim lets go of its end of the stdin FIFO; ours (the test's, as
    # the library's keep-alive writer would be) still feeds the process.
    await transport.close_stdin("c1", "")
    assert (await transport.get_task("c1")).state is ProcessState.RUNNING
    world.finish("c1", code=4)
    assert (await world.wait("c1")).exit_code == 4
    await transport.resize("c1", "", 80, 24)
    await transport.close_stdin("c1", "")


async def test_a_container_deleted_under_its_task_orphans_the_task(
    world: World, transport: Transport
) -> None:
    pid = await world.task("c1")
    await transport.delete_container("c1")  # containerd does not look for a task
    assert [(t.container_id, t.pid) for t in await transport.list_tasks()] == [("c1", pid)]
    assert await outcome(transport.get_task("c1")) == "NotFound"
    assert await outcome(transport.kill("c1", "", signal.SIGKILL, True)) == "NotFound"
    # Metrics lists the tasks themselves: the orphan is still sampled.
    assert sorted(await transport.metrics(["c1"])) == ["c1"]
    # The same id finds the old task again, and can end it.
    await world.container("c1")
    assert await outcome(transport.create_task("c1", world.stdio("c1", "again"))) == "AlreadyExists"
    assert (await transport.get_task("c1")).pid == pid
    await transport.kill("c1", "", signal.SIGKILL, False)
    assert (await world.wait("c1")).exit_code == 128 + signal.SIGKILL
    await transport.delete_task("c1")


async def test_update_resources(world: World, transport: Transport) -> None:
    await world.task("c1", start=False)
    await transport.update_resources("c1", {"memory": {"limit": 64 << 20}})
    await transport.start("c1", "")
    await transport.update_resources("c1", {"pids": {"limit": 20}})
    refused = transport.update_resources("c1", {"bad": {1, 2}})
    assert await outcome(refused) == "InvalidArgument"
    assert (await transport.get_task("c1")).state is ProcessState.RUNNING


async def test_many_tasks_are_listed(world: World, transport: Transport) -> None:
    pids = {cid: await world.task(cid, start=cid != "b") for cid in ("c", "a", "b")}
    listed = {t.container_id: (t.pid, t.state) for t in await transport.list_tasks()}
    assert listed == {
        "a": (pids["a"], ProcessState.RUNNING),
        "b": (pids["b"], ProcessState.CREATED),
        "c": (pids["c"], ProcessState.RUNNING),
    }


async def test_signals_to_one_process_and_to_all(world: World, transport: Transport) -> None:
    await world.task("c1")
    await world.exec("c1", "e1")
    await world.exec("c1", "e2")
    # The init process (a pid namespace's init with no handler) survives
    # SIGTERM; an exec does not.
    await transport.kill("c1", "", signal.SIGTERM, False)
    await transport.kill("c1", "e1", signal.SIGTERM, False)
    assert (await world.wait("c1", "e1")).exit_code == 128 + signal.SIGTERM
    assert (await transport.get_task("c1")).state is ProcessState.RUNNING
    # A signal to all reaches every process of the task.
    await transport.kill("c1", "", signal.SIGTERM, True)
    assert (await world.wait("c1", "e2")).exit_code == 128 + signal.SIGTERM
    assert (await transport.get_task("c1")).state is ProcessState.RUNNING
    await transport.kill("c1", "", signal.SIGKILL, True)
    assert (await world.wait("c1")).exit_code == 128 + signal.SIGKILL


@pytest.mark.parametrize(
    "resources",
    [
        {"memory": {"limit": "64M"}},
        {"memory": {"limit": 1.5}},
        {"memory": {"swappiness": -1}},
        {"memory": {"disableOOMKiller": 1}},
        {"cpu": {"shares": -1}},
        {"cpu": {"cpus": 1}},
        {"pids": {"limit": True}},
        {"pids": 5},
    ],
    ids=[
        "string",
        "fraction",
        "negative-uint",
        "int-for-bool",
        "negative-shares",
        "int-for-string",
        "bool-for-int",
        "not-an-object",
    ],
)
async def test_resources_of_the_wrong_type_are_refused(
    world: World, transport: Transport, resources: dict[str, object]
) -> None:
    await world.task("c1")
    # The shim's Go JSON decoder refuses them (gRPC UNKNOWN).
    assert await outcome(transport.update_resources("c1", resources)) == "Unknown"
    # Fields it does not know it ignores.
    await transport.update_resources("c1", {"unknown": {"x": 1}, "memory": {"limit": None}})
    assert (await transport.get_task("c1")).state is ProcessState.RUNNING
