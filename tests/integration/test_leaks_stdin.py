"""Sending to a process's stdin ends, whatever the process does: once it
has exited nothing reads its input any more (the shim keeps the FIFO open,
so a full pipe gives no EPIPE, only a write that would wait for good), and
a send then raises ``FailedPrecondition``, also one already waiting on a
full pipe when the process exits."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import anyio
import pytest

import supervisor
from supervisor import Daemon, DaemonTimeouts, errors
from tests._containerd import short_tmpdir
from tests.integration.helpers import started_with_stdin

pytestmark = pytest.mark.asyncio

# Well past what the FIFO, the shim's copy and a terminal's buffers hold.
_LARGE = b"x" * (4 << 20)


@contextlib.asynccontextmanager
async def _running(
    client: supervisor.Client, rootfs: str, cid: str, script: str, terminal: bool
) -> AsyncIterator[tuple[supervisor.Container, supervisor.Task]]:
    """A started container with its stdin open, deleted (forced) at the end."""
    container, task = await started_with_stdin(client, rootfs, cid, script, terminal=terminal)
    try:
        yield container, task
    finally:
        with anyio.fail_after(60):
            await task.delete(force=True)
            await container.delete()


@pytest.mark.parametrize("terminal", [True, False], ids=["tty", "pipe"])
async def test_a_send_to_a_process_that_exited_raises(
    client: supervisor.Client, rootfs: str, terminal: bool
) -> None:
    async with _running(client, rootfs, "gone", "exit 3", terminal) as (container, task):
        with anyio.fail_after(30):
            assert (await task.wait()).exit_code == 3
        stdin = task.stdin
        assert stdin is not None
        # Bounded only so that a hang fails the test instead of the suite.
        with anyio.fail_after(60), pytest.raises(errors.FailedPrecondition, match="exited"):
            await stdin.send(_LARGE)
        # Still a broken stream to anyio's eyes (what its users catch).
        with anyio.fail_after(60), pytest.raises(anyio.BrokenResourceError):
            await stdin.send(b"more")


@pytest.mark.parametrize("events", [True, False], ids=["events", "no-events"])
@pytest.mark.parametrize("terminal", [True, False], ids=["tty", "pipe"])
async def test_a_send_waiting_on_a_full_pipe_ends_when_the_process_exits(
    supervisor_client_factory: Callable[..., AbstractAsyncContextManager[supervisor.Client]],
    rootfs: str,
    terminal: bool,
    events: bool,
) -> None:
    async with supervisor_client_factory(events=events) as client:
        # It never reads its input: the send fills every buffer and waits.
        async with _running(client, rootfs, "full", "exec sleep 600", terminal) as (
            container,
            task,
        ):
            stdin = task.stdin
            assert stdin is not None
            outcome: list[BaseException | None] = []

            async def send() -> None:
                try:
                    await stdin.send(_LARGE)
                except errors.FailedPrecondition as exc:
                    outcome.append(exc)
                else:
                    outcome.append(None)

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(send)
                    await task.kill(signal.SIGKILL)
                    assert (await task.wait()).exit_code == 137
            assert len(outcome) == 1 and isinstance(outcome[0], errors.FailedPrecondition)


async def test_a_caller_deadline_ends_a_send_to_a_process_that_does_not_read(
    client: supervisor.Client, rootfs: str
) -> None:
    # A pipe, not a terminal: a terminal in canonical mode drops what
    # overflows its line, so a send to it never waits.
    async with _running(client, rootfs, "slow", "exec sleep 600", False) as (container, task):
        stdin = task.stdin
        assert stdin is not None
        with anyio.move_on_after(0.5) as scope:
            await stdin.send(_LARGE)
        assert scope.cancelled_caught
        assert await task.status() is supervisor.ProcessState.RUNNING


async def test_a_child_that_still_reads_gets_what_is_sent_after_the_exit(
    client: supervisor.Client, rootfs: str
) -> None:
    # An exec that leaves a background job holding its stdin: the exec's
    # exit does not mean nobody reads, and a send must not refuse then.
    async with _running(client, rootfs, "parent", "exec sleep 600", False) as (container, task):
        script = "exec 3<&0; (wc -c <&3 >/tmp/got) & exit 0"
        process = await task.exec("e1", ["sh", "-c", script], stdin=True)
        await process.start()
        with anyio.fail_after(30):
            assert (await process.wait()).exit_code == 0
        stdin = process.stdin
        assert stdin is not None
        with anyio.fail_after(60):
            await stdin.send(_LARGE)  # far more than the pipes hold: it is read
            await process.close_stdin()
            while True:  # until the job has counted to the end of its input
                probe = await task.exec("probe", ["cat", "/tmp/got"])
                await probe.start()
                out, _ = await probe.communicate()
                await probe.delete()
                if out.strip():
                    break
                await anyio.sleep(0.1)
        assert int(out) == len(_LARGE)
        await process.delete()


async def test_a_send_ends_when_the_process_exits_after_containerd_was_away(
    rootfs: str,
) -> None:
    # Without events the send asks containerd for the exit; a containerd
    # killed (and restarted by the Daemon) while it waits must not leave the
    # send waiting on a pipe nobody will empty.
    base = short_tmpdir("sv-stdin-")
    timeouts = DaemonTimeouts(health_interval=0.2, health_timeout=0.5, stop=5)
    try:
        async with Daemon(base / "root", base / "state", timeouts=timeouts) as daemon:
            async with supervisor.connect(
                daemon.address, namespace="stdin-away", state_dir=base / "sv", events=False
            ) as client:
                async with _running(client, rootfs, "away", "exec sleep 600", False) as (_, task):
                    stdin = task.stdin
                    assert stdin is not None
                    outcome: list[BaseException] = []

                    async def send() -> None:
                        try:
                            await stdin.send(_LARGE)
                        except errors.FailedPrecondition as exc:
                            outcome.append(exc)

                    with anyio.fail_after(60):
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(send)
                            await anyio.wait_all_tasks_blocked()
                            before = daemon.pid
                            assert before is not None
                            os.kill(before, signal.SIGKILL)
                            while daemon.pid in (None, before):  # noqa: ASYNC110 - no event for it
                                await anyio.sleep(0.05)
                            while True:  # until the new containerd answers the kill
                                try:
                                    await task.kill(signal.SIGKILL)
                                    break
                                except (errors.Unavailable, errors.DeadlineExceeded):
                                    await anyio.sleep(0.05)
                    assert len(outcome) == 1 and isinstance(outcome[0], errors.StdinNotRead)
    finally:
        shutil.rmtree(base, ignore_errors=True)
