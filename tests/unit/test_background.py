"""The owned background task behind connect() and Daemon."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from supervisor import errors
from supervisor._background import Background

pytestmark = pytest.mark.asyncio


async def test_start_returns_when_ready_and_stop_waits_for_wind_down() -> None:
    bg = Background("t")
    trail: list[str] = []

    async def body() -> None:
        trail.append("up")
        bg.ready()
        await bg.until_stopped()
        await anyio.sleep(0.01)  # winding down takes a moment
        trail.append("down")

    await bg.start(body)
    assert trail == ["up"] and bg.up
    await bg.stop()
    assert trail == ["up", "down"] and bg.error is None


async def test_an_error_before_ready_comes_out_of_start_unwrapped() -> None:
    bg = Background("t")

    async def body() -> None:
        async with anyio.create_task_group():
            raise errors.Unavailable("no socket")

    with pytest.raises(errors.Unavailable, match="no socket"):
        await bg.start(body)
    assert not bg.up


async def test_an_error_after_ready_is_kept_for_the_owner() -> None:
    bg = Background("t")
    fail = anyio.Event()

    async def body() -> None:
        bg.ready()
        await fail.wait()
        raise RuntimeError("watchdog bug")

    await bg.start(body)
    fail.set()
    await bg.stop()
    assert isinstance(bg.error, RuntimeError)


async def test_cancelled_while_starting_stops_the_body() -> None:
    bg = Background("t")
    ended = anyio.Event()

    async def body() -> None:
        try:
            await bg.until_stopped()  # never ready
        finally:
            ended.set()

    with anyio.move_on_after(0.05):
        await bg.start(body)
    assert ended.is_set()


async def test_started_in_one_task_stopped_in_another() -> None:
    # What pytest-asyncio does to fixtures; a task group held across would fail.
    bg = Background("t")
    stopped = anyio.Event()

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep, 3600)
            bg.ready()
            await bg.until_stopped()
            tg.cancel_scope.cancel()
        stopped.set()

    await asyncio.get_running_loop().create_task(bg.start(body))
    await asyncio.get_running_loop().create_task(bg.stop())
    assert stopped.is_set() and bg.error is None
    with pytest.raises(errors.FailedPrecondition):
        await bg.start(body)
