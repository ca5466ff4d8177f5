"""No internal task group lets an ``ExceptionGroup`` out of a public call:
:func:`supervisor._cleanup.task_group` gives the error itself."""

from __future__ import annotations

import anyio
import pytest

import supervisor
from supervisor import errors
from supervisor._cleanup import task_group
from supervisor.backends.fake import FakeTransport
from tests.unit.conftest import GUARD, spec


@pytest.mark.asyncio
async def test_communicate_raises_the_failure_of_closing_stdin_itself(
    client: supervisor.Client, fake: FakeTransport
) -> None:
    container = await client.new_container("c", spec())
    task = await container.new_task(stdin=True)
    await task.start()
    fake.controls.fail_next("close_stdin", errors.Unavailable("containerd went away"))
    with anyio.fail_after(GUARD), pytest.raises(errors.Unavailable, match="went away"):
        await task.communicate(b"input")
    fake.controls.exit("c")
    await task.delete(force=True)
    await container.delete()


@pytest.mark.asyncio
async def test_one_failure_leaves_as_itself() -> None:
    async def fail() -> None:
        raise errors.NotFound("gone")

    with pytest.raises(errors.NotFound, match="gone"):
        async with task_group() as tg:
            tg.start_soon(fail)
            await anyio.sleep_forever()


@pytest.mark.asyncio
async def test_different_failures_at_once_leave_as_unknown_with_the_group_chained() -> None:
    started = anyio.Event()

    async def fail_a() -> None:
        await started.wait()
        raise ValueError("a")

    async def fail_b() -> None:
        with anyio.CancelScope(shield=True):
            started.set()
            await anyio.lowlevel.checkpoint()
        raise errors.NotFound("b")

    with pytest.raises(errors.Unknown) as caught:
        async with task_group() as tg:
            tg.start_soon(fail_b)
            tg.start_soon(fail_a)
    assert isinstance(caught.value.__cause__, BaseExceptionGroup)
