"""Execs: added, started, exited, deleted, and the exec ids and states
containerd refuses."""

from __future__ import annotations

import signal

import pytest

from supervisor._types import ProcessState, StdioPaths
from supervisor.backends.base import Transport
from supervisor.backends.fake import ZERO_TIME

from .conftest import World, outcome

pytestmark = pytest.mark.asyncio


async def test_an_exec_from_added_to_deleted(world: World, transport: Transport) -> None:
    pid = await world.task("c1")
    stdio = world.stdio("c1", "e1")
    await transport.exec("c1", "e1", world.process(), stdio)
    added = await transport.get_task("c1", "e1")
    assert (added.container_id, added.process_id) == ("c1", "e1")
    assert (added.pid, added.state, added.exit_status) == (0, ProcessState.CREATED, None)
    assert added.stdio == stdio
    epid = await transport.start("c1", "e1")
    assert epid > 0 and epid != pid
    running = await transport.get_task("c1", "e1")
    assert (running.pid, running.state, running.exit_status) == (epid, ProcessState.RUNNING, None)
    # The task's own record and list stay the init process's.
    assert (await transport.get_task("c1")).pid == pid
    assert [t.pid for t in await transport.list_tasks()] == [pid]
    assert sorted(p.pid for p in await transport.pids("c1")) == sorted([pid, epid])
    summaries = {(s.pid, s.exec_id) for s in await transport.process_summaries("c1")}
    assert summaries == {(pid, ""), (epid, "e1")}
    world.finish("c1", "e1", code=5)
    status = await world.wait("c1", "e1")
    assert status.exit_code == 5 and status.exited_at is not None
    assert status.exited_at > ZERO_TIME
    stopped = await transport.get_task("c1", "e1")
    assert (stopped.pid, stopped.state) == (epid, ProcessState.STOPPED)
    assert stopped.exit_status == status
    assert [p.pid for p in await transport.pids("c1")] == [pid]
    # The init process runs on.
    assert (await transport.get_task("c1")).state is ProcessState.RUNNING
    assert await transport.delete_process("c1", "e1") == status
    assert await outcome(transport.get_task("c1", "e1")) == "NotFound"
    assert await outcome(transport.delete_process("c1", "e1")) == "NotFound"
    assert await outcome(transport.wait("c1", "e1")) == "NotFound"
    # Its id is free again.
    await world.exec("c1", "e1", start=False)
    assert (await transport.get_task("c1", "e1")).state is ProcessState.CREATED


async def test_a_killed_exec(world: World, transport: Transport) -> None:
    await world.task("c1")
    epid = await world.exec("c1", "e1")
    await transport.kill("c1", "e1", signal.SIGKILL, False)
    status = await world.wait("c1", "e1")
    assert status.exit_code == 128 + signal.SIGKILL
    assert (await transport.get_task("c1", "e1")).pid == epid
    assert await outcome(transport.kill("c1", "e1", signal.SIGKILL, False)) == "NotFound"
    assert await outcome(transport.start("c1", "e1")) == "FailedPrecondition"
    assert (await transport.get_task("c1")).state is ProcessState.RUNNING


async def test_the_init_process_takes_its_execs_with_it(world: World, transport: Transport) -> None:
    await world.task("c1")
    await world.exec("c1", "e1")
    await world.exec("c1", "e2", start=False)
    world.finish("c1", code=2)
    assert (await world.wait("c1")).exit_code == 2
    assert (await world.wait("c1", "e1")).exit_code == 128 + signal.SIGKILL
    assert (await transport.get_task("c1", "e1")).state is ProcessState.STOPPED
    # The exec never started stays as it was, and can no longer start.
    assert (await transport.get_task("c1", "e2")).state is ProcessState.CREATED
    assert await outcome(transport.start("c1", "e2")) == "FailedPrecondition"
    assert await outcome(transport.exec("c1", "e3", world.process(), StdioPaths())) == (
        "FailedPrecondition"
    )
    # Deleting the task deletes its execs.
    assert (await transport.delete_task("c1")).exit_code == 2
    assert await outcome(transport.get_task("c1", "e1")) == "NotFound"


async def test_an_exec_into_a_created_task(world: World, transport: Transport) -> None:
    await world.task("c1", start=False)
    epid = await world.exec("c1", "e1")
    assert epid > 0
    assert (await transport.get_task("c1", "e1")).state is ProcessState.RUNNING
    assert (await transport.get_task("c1")).state is ProcessState.CREATED
    world.finish("c1", "e1", code=6)
    assert (await world.wait("c1", "e1")).exit_code == 6


async def test_exec_refusals(world: World, transport: Transport) -> None:
    proc, none = world.process(), StdioPaths()
    assert await outcome(transport.exec("nope", "e1", proc, none)) == "NotFound"
    await world.container("c1")
    assert await outcome(transport.exec("c1", "e1", proc, none)) == "NotFound"  # no task
    await world.task("c2")
    await world.exec("c2", "e1", start=False)
    # A second exec of one id, whatever the first one's state.
    again = world.stdio("c2", "again")
    assert await outcome(transport.exec("c2", "e1", proc, again)) == "AlreadyExists"
    await transport.start("c2", "e1")
    assert await outcome(transport.exec("c2", "e1", proc, again)) == "AlreadyExists"
    assert await outcome(transport.start("c2", "e1")) == "FailedPrecondition"
    assert await outcome(transport.delete_process("c2", "e1")) == "FailedPrecondition"
    world.finish("c2", "e1", code=0)
    await world.wait("c2", "e1")
    assert await outcome(transport.exec("c2", "e1", proc, again)) == "AlreadyExists"
    # An unknown exec id is not found.
    for call in (
        transport.get_task("c2", "nope"),
        transport.start("c2", "nope"),
        transport.kill("c2", "nope", signal.SIGKILL, False),
        transport.wait("c2", "nope"),
        transport.delete_process("c2", "nope"),
        transport.resize("c2", "nope", 80, 24),
        transport.close_stdin("c2", "nope"),
    ):
        assert await outcome(call) == "NotFound", call
    # A stopped exec can no longer be resized.
    assert await outcome(transport.resize("c2", "e1", 80, 24)) == "FailedPrecondition"
    assert await outcome(transport.close_stdin("c2", "e1")) == "ok"
    # An exec not started takes no signal and has no pid; it can be
    # resized, closed and deleted as it is.
    await world.exec("c2", "e2", start=False)
    assert await outcome(transport.kill("c2", "e2", signal.SIGKILL, False)) == "FailedPrecondition"
    assert len(await transport.pids("c2")) == 1
    assert await outcome(transport.resize("c2", "e2", 80, 24)) == "ok"
    assert await outcome(transport.close_stdin("c2", "e2")) == "ok"
    status = await transport.delete_process("c2", "e2")
    assert (status.exit_code, status.exited_at) == (0, ZERO_TIME)
    assert await outcome(transport.get_task("c2", "e2")) == "NotFound"


@pytest.mark.parametrize(
    "bad_id", ["", "-e", "a b", "a/b", "x" * 77], ids=["empty", "dash", "space", "slash", "long"]
)
async def test_an_invalid_exec_id_is_refused(
    world: World, transport: Transport, bad_id: str
) -> None:
    await world.task("c1")
    added = transport.exec("c1", bad_id, world.process(), world.stdio("c1", "bad"))
    assert await outcome(added) == "InvalidArgument"
    assert [p.exec_id for p in await transport.process_summaries("c1")] == [""]


async def test_delete_process_needs_an_exec_id(
    world: World, transport: Transport, request: pytest.FixtureRequest
) -> None:
    # containerd 1.6 hands DeleteProcess with no exec id to the shim as a
    # delete of the init process: a stopped one is deleted under
    # containerd's task record, a created one leaves its shim running for
    # good. Only the transport can refuse it; until it does, the call is
    # made here on a running task, which containerd refuses.
    await world.task("c1")
    assert await outcome(transport.delete_process("c1", "")) == "InvalidArgument"
    assert (await transport.get_task("c1")).state is ProcessState.RUNNING


async def test_an_exec_named_as_its_container_is_an_exec(
    world: World, transport: Transport
) -> None:
    # The library refuses such an id (Task.exec); containerd takes it, and
    # an exec id names the exec, never the init process.
    pid = await world.task("c1")
    await transport.exec("c1", "c1", world.process(), world.stdio("c1", "same"))
    added = await transport.get_task("c1", "c1")
    assert (added.process_id, added.pid, added.state) == ("c1", 0, ProcessState.CREATED)
    assert (await transport.get_task("c1")).pid == pid
    epid = await transport.start("c1", "c1")
    assert epid not in (0, pid)
    assert (await transport.get_task("c1", "c1")).pid == epid
    await transport.kill("c1", "c1", signal.SIGKILL, False)
    assert (await world.wait("c1", "c1")).exit_code == 128 + signal.SIGKILL
    init = await transport.get_task("c1")
    assert (init.pid, init.state) == (pid, ProcessState.RUNNING)
    assert (await transport.delete_process("c1", "c1")).exit_code == 128 + signal.SIGKILL
    assert await outcome(transport.get_task("c1", "c1")) == "NotFound"
    assert (await transport.get_task("c1")).state is ProcessState.RUNNING
