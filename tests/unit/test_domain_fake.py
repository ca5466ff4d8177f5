"""The fake containerd follows containerd 1.6: every answer below was first
recorded from a real containerd 1.6.20 with runc 1.1.5 on this project's
machines, the same calls in the same order (pids and times aside).

Where the real answer came as gRPC UNKNOWN with words that only mean a
state conflict ("cannot start a running process", "cannot pause a paused
container", "cannot exec in a paused state", "cannot delete a paused
process"), the fake raises FailedPrecondition, which is what they mean."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from supervisor import ProcessState, errors
from supervisor._types import StdioPaths, TaskEvent, Topic
from supervisor.backends.base import Sync
from supervisor.backends.fake import ZERO_TIME, FakeTransport
from tests.unit.conftest import settle, spec

pytestmark = pytest.mark.asyncio

NONE = StdioPaths()
RUNC = "io.containerd.runc.v2"
PROC = {"args": ["sleep", "60"], "cwd": "/"}


async def outcome(call: Awaitable[Any]) -> str:
    try:
        await call
    except errors.SupervisorError as exc:
        return type(exc).__name__
    return "ok"


async def blocked(call: Callable[[], Awaitable[Any]]) -> bool:
    """True if ``call`` is still waiting once everything else has run."""
    done = False

    async def run() -> None:
        nonlocal done
        await call()
        done = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await settle()
        tg.cancel_scope.cancel()
    return not done


async def new(t: FakeTransport, cid: str) -> None:
    await t.create_container(cid, spec(), runtime=RUNC, runtime_options=None, labels={})


async def test_state_conflicts_as_containerd_answers_them() -> None:
    t = FakeTransport("rules")
    await new(t, "c1")
    steps: list[tuple[str, Awaitable[Any], str]] = [
        ("create dup", new(t, "c1"), "AlreadyExists"),
        ("create_task", t.create_task("c1", NONE), "ok"),
        ("create_task dup", t.create_task("c1", NONE), "AlreadyExists"),
        ("pause created", t.pause("c1"), "FailedPrecondition"),
        ("resume created", t.resume("c1"), "FailedPrecondition"),
        ("update created", t.update_resources("c1", {"memory": {"limit": 1 << 26}}), "ok"),
        ("exec into created", t.exec("c1", "e0", PROC, NONE), "ok"),
        ("start exec in created", t.start("c1", "e0"), "ok"),
        ("start init", t.start("c1", ""), "ok"),
        ("start init again", t.start("c1", ""), "FailedPrecondition"),
        ("resume running", t.resume("c1"), "FailedPrecondition"),
        ("exec e1", t.exec("c1", "e1", PROC, NONE), "ok"),
        ("exec e1 dup", t.exec("c1", "e1", PROC, NONE), "AlreadyExists"),
        ("kill created exec", t.kill("c1", "e1", 9, False), "FailedPrecondition"),
        ("resize created exec", t.resize("c1", "e1", 10, 10), "ok"),
        ("close_stdin created exec", t.close_stdin("c1", "e1"), "ok"),
        ("delete created exec", t.delete_process("c1", "e1"), "ok"),
        ("get deleted exec", t.get_task("c1", "e1"), "NotFound"),
        ("exec e2", t.exec("c1", "e2", PROC, NONE), "ok"),
        ("start e2", t.start("c1", "e2"), "ok"),
        ("start e2 again", t.start("c1", "e2"), "FailedPrecondition"),
        ("delete running exec", t.delete_process("c1", "e2"), "FailedPrecondition"),
        ("pause", t.pause("c1"), "ok"),
        ("pause again", t.pause("c1"), "FailedPrecondition"),
        ("exec while paused", t.exec("c1", "e3", PROC, NONE), "FailedPrecondition"),
        ("delete paused task", t.delete_task("c1"), "FailedPrecondition"),
        ("resume", t.resume("c1"), "ok"),
        ("kill e2", t.kill("c1", "e2", 9, False), "ok"),
        ("kill e2 again", t.kill("c1", "e2", 15, False), "NotFound"),
        ("resize stopped exec", t.resize("c1", "e2", 10, 10), "FailedPrecondition"),
        ("close_stdin stopped exec", t.close_stdin("c1", "e2"), "ok"),
        ("exec e2 dup when stopped", t.exec("c1", "e2", PROC, NONE), "AlreadyExists"),
        ("exec e6", t.exec("c1", "e6", PROC, NONE), "ok"),
        ("kill init", t.kill("c1", "", 9, False), "ok"),
        ("kill init again", t.kill("c1", "", 9, False), "NotFound"),
        ("kill init again, all", t.kill("c1", "", 9, True), "ok"),
        ("start init stopped", t.start("c1", ""), "FailedPrecondition"),
        ("start e6 after init stopped", t.start("c1", "e6"), "FailedPrecondition"),
        ("exec into stopped", t.exec("c1", "e5", PROC, NONE), "FailedPrecondition"),
        ("pause stopped", t.pause("c1"), "FailedPrecondition"),
        ("resume stopped", t.resume("c1"), "FailedPrecondition"),
        ("update stopped", t.update_resources("c1", {}), "FailedPrecondition"),
        ("resize stopped init", t.resize("c1", "", 10, 10), "ok"),
        ("close_stdin stopped init", t.close_stdin("c1", ""), "ok"),
        ("delete stopped exec", t.delete_process("c1", "e2"), "ok"),
        ("delete it again", t.delete_process("c1", "e2"), "NotFound"),
        ("delete task with a created exec", t.delete_task("c1"), "ok"),
        ("delete task again", t.delete_task("c1"), "NotFound"),
        ("get exec after", t.get_task("c1", "e6"), "NotFound"),
        ("wait after delete", t.wait("c1", ""), "NotFound"),
        ("stats after delete", t.stats("c1"), "NotFound"),
        ("delete container", t.delete_container("c1"), "ok"),
        ("delete container again", t.delete_container("c1"), "NotFound"),
        ("create_task no container", t.create_task("nope", NONE), "NotFound"),
        ("exec no task", t.exec("nope", "x", PROC, NONE), "NotFound"),
        ("kill no task", t.kill("nope", "", 9, False), "NotFound"),
        ("pids no task", t.pids("nope"), "NotFound"),
    ]
    got = [(label, await outcome(call)) for label, call, _ in steps]
    assert got == [(label, want) for label, _, want in steps]


async def test_what_the_processes_report_in_each_state() -> None:
    t = FakeTransport("rules")
    await new(t, "c")
    pid = await t.create_task("c", NONE)
    assert (await t.get_task("c")).state is ProcessState.CREATED
    assert [p.pid for p in await t.pids("c")] == [pid]
    await t.exec("c", "e", PROC, NONE)
    assert (await t.get_task("c", "e")).pid == 0
    assert await blocked(lambda: t.wait("c", "e"))  # a created exec does not end
    assert await t.start("c", "") == pid
    epid = await t.start("c", "e")
    assert sorted(p.pid for p in await t.pids("c")) == [pid, epid]
    await t.pause("c")
    assert (await t.get_task("c", "e")).state is ProcessState.PAUSED  # the task's state
    # a frozen exec takes no signal until thawed; its init process does
    await t.kill("c", "e", signal.SIGKILL, False)
    assert (await t.get_task("c", "e")).state is ProcessState.PAUSED
    await t.resume("c")
    assert (await t.wait("c", "e")).exit_code == 137
    # the init process takes its execs with it, theirs reported first
    await t.exec("c", "f", PROC, NONE)
    await t.start("c", "f")
    await t.kill("c", "", signal.SIGKILL, False)
    assert (await t.wait("c", "f")).exit_code == 137
    record = await t.get_task("c")
    assert record.state is ProcessState.STOPPED and record.exit_status is not None
    assert record.exit_status.exit_code == 137
    assert await t.pids("c") == []
    exits = [(e.process_id, e.exit_code) for e in t.controls.events if e.topic is Topic.EXIT]
    assert exits == [("e", 137), ("f", 137), ("c", 137)]
    # a created task deleted: its exit is published, the reply says "never exited"
    await t.delete_task("c")
    await t.create_task("c", NONE)
    status = await t.delete_task("c")
    assert (status.exit_code, status.exited_at) == (0, ZERO_TIME)
    tail = [(e.topic, e.exit_code) for e in t.controls.events[-3:]]
    assert tail == [(Topic.CREATE, 0), (Topic.EXIT, 137), (Topic.DELETE, 0)]


async def test_a_container_deleted_under_its_task_orphans_it() -> None:
    t = FakeTransport("rules")
    await new(t, "c")
    await t.create_task("c", NONE)
    await t.start("c", "")
    await t.delete_container("c")  # containerd does not check
    assert [r.container_id for r in await t.list_tasks()] == ["c"]
    assert await outcome(t.get_task("c")) == "NotFound"
    assert await outcome(t.stats("c")) == "ok"  # Metrics lists tasks directly
    await new(t, "c")  # the same id finds the old task again
    assert await outcome(t.create_task("c", NONE)) == "AlreadyExists"
    assert not t.controls.is_empty()


async def test_events_carry_what_containerd_sends() -> None:
    t = FakeTransport("rules")
    seen: list[object] = []
    async with t.subscribe([Topic.EXIT, Topic.OOM]) as stream:
        await new(t, "c")
        pid = await t.create_task("c", NONE)
        await t.start("c", "")
        await t.exec("c", "e", PROC, NONE)
        epid = await t.start("c", "e")
        t.controls.oom("c")
        t.controls.exit("c", "e", code=3)
        await t.sync("token")
        async for item in stream:
            seen.append(item)
            if isinstance(item, Sync):
                break
    oom, exit_e, marker = seen
    assert isinstance(oom, TaskEvent) and isinstance(exit_e, TaskEvent)
    assert (oom.topic, oom.container_id, oom.process_id, oom.pid) == (Topic.OOM, "c", "c", 0)
    assert (exit_e.process_id, exit_e.pid, exit_e.exit_code) == ("e", epid, 3)
    assert exit_e.exited_at is not None and exit_e.timestamp is not None
    assert marker == Sync("token")
    kinds = [(e.topic, e.process_id, e.pid) for e in t.controls.events]
    assert kinds[:5] == [
        (Topic.CREATE, "c", pid),
        (Topic.START, "c", pid),
        (Topic.EXEC_ADDED, "e", 0),
        (Topic.EXEC_STARTED, "e", epid),
        (Topic.OOM, "c", 0),
    ]
    assert t.controls.subscriptions == 0


async def test_controls_fail_hold_break_and_close() -> None:
    t = FakeTransport("rules")
    t.controls.fail_next("version", errors.Unavailable("down"))
    assert await outcome(t.version()) == "Unavailable"
    assert await outcome(t.version()) == "ok"
    t.controls.fail_next("create_container", errors.Unavailable("reply lost"), after=True)
    assert await outcome(new(t, "c")) == "Unavailable"
    assert t.controls.container_ids() == ["c"]  # it acted before failing
    with pytest.raises(errors.InvalidArgument):
        t.controls.fail_next("no_such_call", errors.Unknown("x"))
    with pytest.raises(errors.InvalidArgument):
        t.controls.fail_next("version", RuntimeError("x"))  # type: ignore[arg-type]
    assert t.controls.calls["version"] == 2 and t.controls.calls["create_container"] == 1
    async with t.subscribe() as stream:
        t.controls.break_stream()
        with pytest.raises(errors.Unavailable):
            await stream.__anext__()
    await t.create_task("c", NONE)
    await t.start("c", "")
    waits: list[str] = []

    async def waiter() -> None:
        waits.append(await outcome(t.wait("c", "")))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await settle()
        t.controls.restart()  # a pending wait breaks with containerd
    assert waits == ["Unavailable"]
    assert (await t.get_task("c")).state is ProcessState.RUNNING  # the shim lives on
    t.controls.ignore("c", None, signal.SIGTERM)
    await t.kill("c", "", signal.SIGTERM, False)
    assert (await t.get_task("c")).state is ProcessState.RUNNING
    t.controls.set_down(True)
    assert await outcome(t.list_tasks()) == "Unavailable"
    t.controls.set_down(False)
    other = t.controls.reopen()
    await t.aclose()
    assert await outcome(t.version()) == "Unavailable"
    assert await outcome(other.get_task("c")) == "ok"
