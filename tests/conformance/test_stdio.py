"""What the shim refuses of a process's stdio and command line, when it
refuses it, and what the refusal leaves behind (runc's checks, the runtime
these tests run; the fake follows runc, not runhcs, here)."""

from __future__ import annotations

import pytest

from supervisor._types import ProcessState, StdioPaths
from supervisor.backends.base import Transport
from supervisor.backends.fake import ZERO_TIME

from .conftest import RUNC, World, outcome

pytestmark = pytest.mark.asyncio


def without_stderr(stdio: StdioPaths) -> StdioPaths:
    return StdioPaths(stdio.stdin, stdio.stdout, "", stdio.terminal)


def without_stdout(stdio: StdioPaths) -> StdioPaths:
    return StdioPaths(stdio.stdin, "", stdio.stderr, stdio.terminal)


def with_terminal(stdio: StdioPaths) -> StdioPaths:
    return StdioPaths(stdio.stdin, stdio.stdout, stdio.stderr, True)


async def test_a_task_without_any_stdio(world: World, transport: Transport) -> None:
    await world.container("c1")
    pid = await transport.create_task("c1", StdioPaths())
    assert (await transport.get_task("c1")).stdio == StdioPaths()
    assert await transport.start("c1", "") == pid


@pytest.mark.parametrize("change", [without_stderr, without_stdout], ids=["no-stderr", "no-stdout"])
async def test_a_task_needs_both_outputs_without_a_terminal(
    world: World, transport: Transport, change: object
) -> None:
    assert callable(change)
    await world.container("c1")
    refused = transport.create_task("c1", change(world.stdio("c1")))
    assert await outcome(refused) == "Unknown"  # the shim's own words only
    assert await transport.list_tasks() == []
    # Nothing is left: the container takes a task again.
    assert await transport.create_task("c1", world.stdio("c1", "again")) > 0


async def test_the_terminal_flag_must_match_the_spec(world: World, transport: Transport) -> None:
    await world.container("c1")
    stdio = with_terminal(world.stdio("c1"))
    assert await outcome(transport.create_task("c1", stdio)) == "Unknown"
    spec = world.spec()
    spec["process"]["terminal"] = True
    await transport.create_container("c2", spec, runtime=RUNC, runtime_options=None, labels={})
    assert await outcome(transport.create_task("c2", world.stdio("c2"))) == "Unknown"
    assert await transport.list_tasks() == []


@pytest.mark.parametrize("args", [None, []], ids=["missing", "empty"])
async def test_a_task_needs_a_command(
    world: World, transport: Transport, args: list[str] | None
) -> None:
    spec = world.spec()
    if args is None:
        del spec["process"]["args"]
    else:
        spec["process"]["args"] = args
    await transport.create_container("c1", spec, runtime=RUNC, runtime_options=None, labels={})
    assert await outcome(transport.create_task("c1", world.stdio("c1"))) == "Unknown"
    assert await transport.list_tasks() == []


async def test_an_exec_is_refused_only_when_started(world: World, transport: Transport) -> None:
    await world.task("c1")
    no_command = {"cwd": "/"}
    await transport.exec("c1", "e1", no_command, world.stdio("c1", "e1"))
    await transport.exec("c1", "e2", world.process(), without_stderr(world.stdio("c1", "e2")))
    for exec_id in ("e1", "e2"):
        assert await outcome(transport.start("c1", exec_id)) == "Unknown"
        # The exec stays as it was, and is deleted as one never started.
        # (Without stderr runc has started the process by then: it runs on
        # in the container, untracked, until the init process ends.)
        record = await transport.get_task("c1", exec_id)
        assert (record.pid, record.state) == (0, ProcessState.CREATED)
        status = await transport.delete_process("c1", exec_id)
        assert (status.exit_code, status.exited_at) == (0, ZERO_TIME)
    assert (await transport.get_task("c1")).state is ProcessState.RUNNING


async def test_a_spec_that_is_not_json_is_refused(
    world: World, transport: Transport, request: pytest.FixtureRequest
) -> None:
    # Python writes NaN where JSON has no such value: containerd stores the
    # bytes, and the shim fails on them only when the task is created.
    spec = world.spec()
    spec["annotations"] = {"x": float("nan")}
    created = transport.create_container("c1", spec, runtime=RUNC, runtime_options=None, labels={})
    assert await outcome(created) == "InvalidArgument"
    assert await transport.list_containers() == []


@pytest.mark.parametrize(
    "change",
    [
        {"args": "sh"},
        {"cwd": 5},
        {"env": "A=1"},
        {"user": {"uid": -1, "gid": 0}},
        {"terminal": "yes"},
    ],
    ids=["args-string", "cwd-number", "env-string", "uid-negative", "terminal-string"],
)
async def test_a_process_spec_of_the_wrong_type(
    world: World, transport: Transport, change: dict[str, object]
) -> None:
    await world.task("c1")
    # The shim's Go JSON decoder refuses an exec's spec when it is added.
    added = transport.exec("c1", "e1", world.process() | change, world.stdio("c1", "e1"))
    assert await outcome(added) == "Unknown"
    assert await outcome(transport.get_task("c1", "e1")) == "NotFound"
    # A container's, when its task is created.
    spec = world.spec()
    spec["process"] |= change
    await transport.create_container("c2", spec, runtime=RUNC, runtime_options=None, labels={})
    assert await outcome(transport.create_task("c2", world.stdio("c2"))) == "Unknown"
    assert [t.container_id for t in await transport.list_tasks()] == ["c1"]


@pytest.mark.parametrize("cwd", ["", "relative"], ids=["empty", "relative"])
async def test_a_working_directory_must_be_absolute(
    world: World, transport: Transport, cwd: str
) -> None:
    await world.task("c1")
    await transport.exec("c1", "e1", world.process() | {"cwd": cwd}, world.stdio("c1", "e1"))
    assert await outcome(transport.start("c1", "e1")) == "Unknown"
    assert (await transport.get_task("c1", "e1")).state is ProcessState.CREATED
    spec = world.spec()
    spec["process"]["cwd"] = cwd
    await transport.create_container("c2", spec, runtime=RUNC, runtime_options=None, labels={})
    assert await outcome(transport.create_task("c2", world.stdio("c2"))) == "Unknown"
    assert [t.container_id for t in await transport.list_tasks()] == ["c1"]


async def test_a_task_and_an_exec_on_a_terminal(world: World, transport: Transport) -> None:
    spec = world.spec()
    spec["process"]["terminal"] = True
    await transport.create_container("c1", spec, runtime=RUNC, runtime_options=None, labels={})
    # With a terminal there is no stderr: the terminal carries all output.
    stdio = with_terminal(without_stderr(world.stdio("c1")))
    pid = await transport.create_task("c1", stdio)
    assert (await transport.get_task("c1")).stdio == stdio
    assert await transport.start("c1", "") == pid
    await transport.resize("c1", "", 100, 40)
    process = world.process() | {"terminal": True}
    exec_stdio = with_terminal(without_stderr(world.stdio("c1", "e1")))
    await transport.exec("c1", "e1", process, exec_stdio)
    await transport.start("c1", "e1")
    await transport.resize("c1", "e1", 100, 40)
    world.finish("c1", "e1", code=6)
    assert (await world.wait("c1", "e1")).exit_code == 6
    world.finish("c1", code=5)
    assert (await world.wait("c1")).exit_code == 5
