"""``Task.stop``'s steps on the in-memory fake: the signals in their order,
nothing sent for refused arguments or an exited task, and a bound on every
wait when containerd stops answering or the exit never comes."""

from __future__ import annotations

import dataclasses
import signal
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import errors
from supervisor.backends.fake import FakeTransport
from tests.unit.conftest import FAST, GUARD, connect, spec

pytestmark = pytest.mark.asyncio

TERM, KILL = int(signal.SIGTERM), int(signal.SIGKILL)


async def _running(client: supervisor.Client, cid: str = "c") -> supervisor.Task:
    container = await client.new_container(cid, spec())
    task = await container.new_task(output="null")
    await task.start()
    return task


async def test_the_signal_then_sigkill_to_every_process(
    client: supervisor.Client, fake: FakeTransport
) -> None:
    task = await _running(client)
    fake.controls.ignore("c", None, TERM)
    with anyio.fail_after(GUARD):
        status = await task.stop(timeout=0)
    assert status.exit_code == 137
    assert fake.controls.signals == [("c", "c", TERM, False), ("c", "c", KILL, True)]


async def test_a_graceful_exit_gets_no_sigkill(
    client: supervisor.Client, fake: FakeTransport
) -> None:
    task = await _running(client)
    with anyio.fail_after(GUARD):
        status = await task.stop(timeout=GUARD, signal="SIGUSR1")
    assert status.exit_code == 128 + int(signal.SIGUSR1)
    assert fake.controls.signals == [("c", "c", int(signal.SIGUSR1), False)]


async def test_an_exited_task_gets_no_signal(
    client: supervisor.Client, fake: FakeTransport
) -> None:
    task = await _running(client)
    fake.controls.exit("c", code=3)
    with anyio.fail_after(GUARD):
        assert (await task.wait()).exit_code == 3
        assert (await task.stop()).exit_code == 3
    assert fake.controls.signals == []


@pytest.mark.parametrize("kw", [{"timeout": -1}, {"signal": "NOPE"}, {"signal": 65}])
async def test_refused_arguments_send_nothing(
    client: supervisor.Client, fake: FakeTransport, kw: dict[str, object]
) -> None:
    task = await _running(client)
    calls = sum(fake.controls.calls.values())
    with pytest.raises(errors.InvalidArgument):
        await task.stop(**kw)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument):
        await task.container.stop(**kw)  # type: ignore[arg-type, attr-defined]
    assert fake.controls.signals == []
    assert sum(fake.controls.calls.values()) == calls


async def test_containerd_gone_is_a_typed_error(
    client: supervisor.Client, fake: FakeTransport
) -> None:
    task = await _running(client)
    fake.controls.set_down(True)
    with anyio.fail_after(GUARD), pytest.raises(errors.Unavailable):
        await task.stop(timeout=0)
    fake.controls.set_down(False)


async def test_an_exit_that_never_comes_is_bounded(fake: FakeTransport, state_dir: Path) -> None:
    # SIGKILL is taken but no exit is ever heard of (the events lost, say):
    # DeadlineExceeded after timeouts.cleanup, not a hang.
    timeouts = dataclasses.replace(FAST, cleanup=0.2)
    async with connect(fake, state_dir, timeouts=timeouts) as client:
        task = await _running(client)
        fake.controls.ignore("c", None, TERM)
        fake.controls.drop_events()
        with anyio.fail_after(GUARD), pytest.raises(errors.DeadlineExceeded, match="SIGKILL"):
            await task.stop(timeout=0)
        fake.controls.drop_events(False)
        await task.delete(force=True)
