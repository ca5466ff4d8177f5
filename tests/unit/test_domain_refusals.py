"""Refused and failed calls change nothing: a closed client, bad or taken
exec ids, an exec whose start fails; and waits that must end."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import ExitStatus, ProcessState, errors
from supervisor.backends.fake import FakeTransport
from tests.unit.conftest import FAST, GUARD, connect, fifo_files, open_fds, settle, spec

pytestmark = pytest.mark.asyncio


async def test_a_closed_client_refuses_every_call_and_wakes_its_waits(
    fake: FakeTransport, state_dir: Path
) -> None:
    woken: list[BaseException] = []

    async def waiter(proc: supervisor.Process) -> None:
        try:
            await proc.wait()
        except errors.Closed as exc:
            woken.append(exc)

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            async with connect(fake, state_dir) as client:
                container = await client.new_container("c", spec())
                task = await container.new_task(stdin=True)
                await task.start()
                proc = await task.exec("e", ["sleep", "1"])
                tg.start_soon(waiter, task)
                tg.start_soon(waiter, proc)
                await settle()
                assert woken == []
    assert len(woken) == 2
    assert client.closed
    before = fake.controls.calls.copy()
    calls: list[Callable[[], Awaitable[object]]] = [
        client.version,
        lambda: client.new_container("d", spec()),
        lambda: client.load_container("c"),
        client.containers,
        client.restore,
        container.new_task,
        container.delete,
        task.wait,
        task.status,
        lambda: task.kill(signal.SIGKILL),
        task.pause,
        task.resume,
        task.pids,
        task.stats,
        lambda: task.update_resources({"memory": {"limit": 1 << 26}}),
        lambda: task.exec("f", ["true"]),
        lambda: task.resize(80, 25),
        task.close_stdin,
        task.delete,
        lambda: task.delete(force=True),
        proc.start,
        proc.wait,
        lambda: proc.delete(force=True),
    ]
    for call in calls:
        with pytest.raises(errors.Closed):
            await call()
    assert fake.controls.calls == before  # refused before anything reached containerd


async def test_a_closed_client_does_not_hand_out_a_cached_task(
    fake: FakeTransport, state_dir: Path
) -> None:
    async with connect(fake, state_dir) as client:
        container = await client.new_container("c", spec())
        await container.new_task()
    with pytest.raises(errors.Closed):
        await container.task()


async def test_an_exec_id_equal_to_the_container_id_is_refused(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    container = await client.new_container("same", spec())
    task = await container.new_task()
    await task.start()
    fifos = fifo_files(state_dir)
    for bad in ("same", "", "a..b", "x" * 77):
        with pytest.raises(errors.InvalidArgument):
            await task.exec(bad, ["true"])
    assert fake.controls.calls["exec"] == 0
    assert list(fake.controls.processes("same")) == ["same"]
    assert fifo_files(state_dir) == fifos
    await task.delete(force=True)
    await container.delete()


async def test_a_taken_exec_id_is_refused_without_touching_the_exec_that_has_it(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    container = await client.new_container("host", spec())
    task = await container.new_task()
    await task.start()
    first = await task.exec("e", ["cat"], stdin=True)
    fifos = fifo_files(state_dir)
    paths = fake.controls.processes("host")["e"].stdio
    fds = open_fds()
    with pytest.raises(errors.AlreadyExists):
        await task.exec("e", ["true"], stdin=True)
    assert fifo_files(state_dir) == fifos
    assert open_fds() == fds
    assert fake.controls.processes("host")["e"].stdio == paths
    assert task.execs == {"e": first}
    # the first still works through its own ends
    assert first.stdin is not None
    await first.stdin.send(b"still here\n")
    await first.start()
    fake.controls.exit("host", "e", code=0)
    with anyio.fail_after(GUARD):
        assert (await first.wait()).exit_code == 0
    await first.delete()
    await task.delete(force=True)
    await container.delete()
    assert fake.controls.is_empty() and fifo_files(state_dir) == []


async def test_a_failed_exec_start_deletes_the_exec_and_its_stdio(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    container = await client.new_container("host", spec())
    task = await container.new_task()
    await task.start()
    fifos = fifo_files(state_dir)
    fds = open_fds()
    proc = await task.exec("missing", ["/no/such/binary"])
    fake.controls.fail_next(
        "start",
        errors.CommandNotFound(
            'exec: "/no/such/binary": stat /no/such/binary: no such file or directory',
            container_id="host",
            process_id="missing",
        ),
    )
    with pytest.raises(errors.CommandNotFound):
        await proc.start()
    assert list(fake.controls.processes("host")) == ["host"]
    assert fake.controls.calls["delete_process"] == 1
    assert fifo_files(state_dir) == fifos
    assert open_fds() == fds
    assert task.execs == {}
    # its waiters hear what a shell says of a command it cannot find
    with anyio.fail_after(GUARD):
        assert (await proc.wait()).exit_code == 127
    # and the id is free again
    again = await task.exec("missing", ["true"])
    await again.start()
    await again.delete(force=True)
    await task.delete(force=True)
    await container.delete()
    assert fake.controls.is_empty()


async def test_an_exec_start_lost_with_containerd_keeps_the_exec_and_its_stdio(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    # containerd started it and died before answering: the outcome is
    # unknown, and the exec (perhaps running) must keep its stdio and slot.
    container = await client.new_container("host", spec())
    task = await container.new_task()
    await task.start()
    proc = await task.exec("lost", ["sleep", "60"])
    fifos = fifo_files(state_dir)
    fake.controls.fail_next("start", errors.Unavailable("connection lost"), after=True)
    with pytest.raises(errors.Unavailable):
        await proc.start()
    assert fake.controls.calls["delete_process"] == 0
    assert "lost" in fake.controls.processes("host")
    assert task.execs == {"lost": proc}
    assert fifo_files(state_dir) == fifos
    await task.delete(force=True)
    await container.delete()


async def test_a_failed_exec_start_whose_delete_fails_stays_deletable(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    container = await client.new_container("host", spec())
    task = await container.new_task()
    await task.start()
    proc = await task.exec("missing", ["/no/such/binary"])
    fifos = fifo_files(state_dir)
    fake.controls.fail_next("start", errors.CommandNotFound("exec: not found", container_id="host"))
    fake.controls.fail_next("delete_process", errors.Unavailable("connection lost"))
    with pytest.raises(errors.CommandNotFound):
        await proc.start()
    # containerd still has it: our side is kept, and a later delete finishes it
    assert "missing" in fake.controls.processes("host")
    assert task.execs == {"missing": proc} and fifo_files(state_dir) == fifos
    await proc.delete(force=True)
    assert "missing" not in fake.controls.processes("host") and task.execs == {}
    await task.delete(force=True)
    await container.delete()
    assert fake.controls.is_empty()


async def test_an_exec_whose_start_failed_is_never_started_again(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    # containerd 1.6's shim panics when such an exec is started again and
    # then exits: the whole task would be lost.
    container = await client.new_container("host", spec())
    task = await container.new_task()
    await task.start()
    proc = await task.exec("missing", ["/no/such/binary"])
    fake.controls.fail_next("start", errors.CommandNotFound("exec: not found", container_id="host"))
    fake.controls.fail_next("delete_process", errors.Unavailable("connection lost"))
    with pytest.raises(errors.CommandNotFound):
        await proc.start()
    with pytest.raises(errors.FailedPrecondition, match="start failed already"):
        await proc.start()
    assert fake.controls.processes("host")["missing"].pid == 0  # never started
    await proc.delete(force=True)
    await task.delete(force=True)
    await container.delete()
    assert fake.controls.is_empty()


async def _wait_of_an_exec_deleted_before_start(
    client: supervisor.Client, fake: FakeTransport
) -> None:
    container = await client.new_container("host", spec())
    task = await container.new_task()
    await task.start()
    proc = await task.exec("never", ["true"])
    waited: list[ExitStatus] = []

    async def waiter() -> None:
        waited.append(await proc.wait())

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await settle()
        assert waited == []
        status = await proc.delete()
        await settle()  # no clock involved: the fake does no I/O
        tg.cancel_scope.cancel()
    assert waited == [status]
    assert list(fake.controls.processes("host")) == ["host"]
    await task.delete(force=True)
    await container.delete()


async def test_wait_of_an_exec_deleted_before_start_returns(
    client: supervisor.Client, fake: FakeTransport
) -> None:
    await _wait_of_an_exec_deleted_before_start(client, fake)


async def test_wait_of_an_exec_deleted_before_start_returns_without_events(
    fake: FakeTransport, state_dir: Path
) -> None:
    async with connect(fake, state_dir, events=False) as client:
        await _wait_of_an_exec_deleted_before_start(client, fake)


async def test_force_delete_of_an_exec_in_a_paused_task(
    fake: FakeTransport, state_dir: Path
) -> None:
    quick = supervisor.Timeouts(
        resubscribe_initial=FAST.resubscribe_initial,
        resubscribe_max=FAST.resubscribe_max,
        cleanup=0.2,
    )
    async with connect(fake, state_dir, timeouts=quick) as client:
        container = await client.new_container("frozen", spec())
        task = await container.new_task()
        await task.start()
        proc = await task.exec("e", ["sleep", "60"])
        await proc.start()
        await task.pause()
        assert await proc.status() is ProcessState.PAUSED
        try:
            with anyio.fail_after(GUARD):
                await proc.delete(force=True)
            assert list(fake.controls.processes("frozen")) == ["frozen"]
        finally:
            await task.delete(force=True)
            await container.delete()


async def test_deleting_a_container_closes_the_stdio_of_a_task_deleted_elsewhere(
    client: supervisor.Client, fake: FakeTransport, state_dir: Path
) -> None:
    fds = open_fds()
    container = await client.new_container("gone", spec())
    task = await container.new_task()
    await task.start()
    # Another client (another connection to the same containerd) ends it.
    other = fake.controls.reopen()
    await other.kill("gone", "", 9, True)
    await other.delete_task("gone")
    await other.aclose()
    await container.delete()
    assert open_fds() == fds
    assert fifo_files(state_dir) == []
