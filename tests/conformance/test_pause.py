"""Pause and resume: the states they move a task between, and the states
in which containerd refuses them."""

from __future__ import annotations

import signal

import pytest

from supervisor._types import ProcessState, StdioPaths
from supervisor.backends.base import Transport
from supervisor.backends.fake import ZERO_TIME

from .conftest import World, outcome

pytestmark = [pytest.mark.asyncio, pytest.mark.cgroup]


async def test_pause_and_resume_a_running_task(world: World, transport: Transport) -> None:
    pid = await world.task("c1")
    epid = await world.exec("c1", "e1")
    await transport.pause("c1")
    paused = await transport.get_task("c1")
    assert (paused.pid, paused.state, paused.exit_status) == (pid, ProcessState.PAUSED, None)
    assert [t.state for t in await transport.list_tasks()] == [ProcessState.PAUSED]
    # An exec reports the state of its (frozen) task.
    assert (await transport.get_task("c1", "e1")).state is ProcessState.PAUSED
    assert sorted(p.pid for p in await transport.pids("c1")) == sorted([pid, epid])
    await transport.resume("c1")
    assert (await transport.get_task("c1")).state is ProcessState.RUNNING
    assert (await transport.get_task("c1", "e1")).state is ProcessState.RUNNING
    # Thawed, the processes run on as before.
    world.finish("c1", "e1", code=7)
    assert (await world.wait("c1", "e1")).exit_code == 7
    world.finish("c1", code=8)
    assert (await world.wait("c1")).exit_code == 8


async def test_what_a_paused_task_refuses(world: World, transport: Transport) -> None:
    await world.task("c1")
    await transport.pause("c1")
    assert await outcome(transport.pause("c1")) == "FailedPrecondition"
    assert await outcome(transport.delete_task("c1")) == "FailedPrecondition"
    added = transport.exec("c1", "e1", world.process(), world.stdio("c1", "e1"))
    assert await outcome(added) == "FailedPrecondition"
    assert await outcome(transport.get_task("c1", "e1")) == "NotFound"
    assert (await transport.get_task("c1")).state is ProcessState.PAUSED
    await transport.resume("c1")
    assert await outcome(transport.resume("c1")) == "FailedPrecondition"


async def test_a_paused_task_is_killed(world: World, transport: Transport) -> None:
    await world.task("c1")
    await transport.pause("c1")
    await transport.kill("c1", "", signal.SIGKILL, False)
    assert (await world.wait("c1")).exit_code == 128 + signal.SIGKILL
    assert (await transport.get_task("c1")).state is ProcessState.STOPPED


async def test_pause_and_resume_refusals(world: World, transport: Transport) -> None:
    assert await outcome(transport.pause("nope")) == "NotFound"
    assert await outcome(transport.resume("nope")) == "NotFound"
    await world.task("c1", start=False)
    assert await outcome(transport.pause("c1")) == "FailedPrecondition"
    assert await outcome(transport.resume("c1")) == "FailedPrecondition"
    assert (await transport.get_task("c1")).state is ProcessState.CREATED
    await transport.start("c1", "")
    assert await outcome(transport.resume("c1")) == "FailedPrecondition"
    world.finish("c1", code=0)
    await world.wait("c1")
    assert await outcome(transport.pause("c1")) == "FailedPrecondition"
    assert await outcome(transport.resume("c1")) == "FailedPrecondition"
    assert (await transport.get_task("c1")).state is ProcessState.STOPPED
    none = StdioPaths()
    assert await outcome(transport.exec("c1", "e1", world.process(), none)) == (
        "FailedPrecondition"
    )


async def test_a_frozen_exec_takes_its_signal_when_thawed(
    world: World, transport: Transport
) -> None:
    await world.task("c1")
    await world.exec("c1", "e1")
    await transport.pause("c1")
    await transport.kill("c1", "e1", signal.SIGKILL, False)
    assert (await transport.get_task("c1", "e1")).state is ProcessState.PAUSED
    await transport.resume("c1")
    assert (await world.wait("c1", "e1")).exit_code == 128 + signal.SIGKILL
    assert (await transport.get_task("c1")).state is ProcessState.RUNNING


@pytest.mark.parametrize("signum", [signal.SIGTERM, 0], ids=["SIGTERM", "zero"])
async def test_a_signal_to_all_thaws_a_frozen_task_under_containerd(
    world: World, transport: Transport, signum: int
) -> None:
    await world.task("c1")
    await world.exec("c1", "e1")
    await transport.pause("c1")
    # runc freezes, signals every process and thaws the cgroup; containerd
    # still says paused, and can no longer resume it.
    await transport.kill("c1", "", signum, True)
    if signum:
        assert (await world.wait("c1", "e1")).exit_code == 128 + signum
    assert (await transport.get_task("c1")).state is ProcessState.PAUSED
    assert await outcome(transport.resume("c1")) == "Unknown"
    assert await outcome(transport.pause("c1")) == "FailedPrecondition"
    assert (await transport.get_task("c1")).state is ProcessState.PAUSED
    # Its processes run, and take their signals at once.
    world.finish("c1", code=3)
    assert (await world.wait("c1")).exit_code == 3
    assert (await transport.get_task("c1")).state is ProcessState.STOPPED
    assert (await transport.delete_task("c1")).exit_code == 3


async def test_what_a_paused_task_still_takes(world: World, transport: Transport) -> None:
    await world.task("c1")
    await world.exec("c1", "e1", start=False)
    await world.exec("c1", "e2")
    world.finish("c1", "e2", code=4)
    await world.wait("c1", "e2")
    await transport.pause("c1")
    await transport.update_resources("c1", {"pids": {"limit": 30}})
    await transport.resize("c1", "", 80, 24)
    await transport.close_stdin("c1", "e1")
    # Every exec reports the task's state, started, stopped or not.
    for exec_id in ("e1", "e2"):
        record = await transport.get_task("c1", exec_id)
        assert (record.state, record.exit_status) == (ProcessState.PAUSED, None)
    # runc will not exec into a frozen container (gRPC UNKNOWN, told by its words).
    assert await outcome(transport.start("c1", "e1")) == "FailedPrecondition"
    await transport.resume("c1")
    record = await transport.get_task("c1", "e1")
    assert (record.pid, record.state) == (0, ProcessState.CREATED)
    stopped = await transport.get_task("c1", "e2")
    assert stopped.state is ProcessState.STOPPED
    assert stopped.exit_status is not None and stopped.exit_status.exit_code == 4
    # (Not started again: containerd 1.6.20's shim panics when an exec whose
    # start failed is started and then exits, and the whole task is lost.)
    status = await transport.delete_process("c1", "e1")
    assert (status.exit_code, status.exited_at) == (0, ZERO_TIME)
