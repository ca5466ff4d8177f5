"""Stopping with a grace period (``Task.stop``, ``Container.stop``) against
the real containerd: the signal, the grace, then SIGKILL; the image's
``StopSignal``; a stopped or never-started task; arguments refused."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import pytest_asyncio

import supervisor
from supervisor import errors
from supervisor._types import ProcessState
from tests._image_layout import image_tar

pytestmark = pytest.mark.asyncio

# PID 1 of a pid namespace gets no signal it has no handler for: this one
# ignores SIGTERM as `httpd -f` does.
IGNORES_TERM = ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"]


def _handler(signal: str, code: int) -> list[str]:
    return ["sh", "-c", f"trap 'exit {code}' {signal}; echo ready; while :; do sleep 0.1; done"]


async def _started(
    client: supervisor.Client, rootfs: str, cid: str, args: list[str]
) -> tuple[supervisor.Container, supervisor.Task]:
    """A container whose task has said "ready" (its trap is set)."""
    container = await client.new_container(cid, supervisor.default_spec(args, rootfs))
    task = await container.new_task()
    await task.start()
    with anyio.fail_after(20):
        async for line in task.aiter_lines():
            if line.strip() == "ready":
                break
    return container, task


async def _gone(container: supervisor.Container, task: supervisor.Task) -> None:
    await task.delete(force=True)
    await container.delete()


async def test_stop_kills_a_process_that_ignores_the_signal(
    client: supervisor.Client, rootfs: str
) -> None:
    container, task = await _started(client, rootfs, "ignores", IGNORES_TERM)
    with anyio.fail_after(30):
        status = await task.stop(timeout=0.2)
    assert status.exit_code == 137
    assert await task.status() is ProcessState.STOPPED
    assert await task.wait() == status
    await _gone(container, task)


async def test_stop_returns_the_status_of_a_graceful_exit(
    client: supervisor.Client, rootfs: str
) -> None:
    container, task = await _started(client, rootfs, "graceful", _handler("TERM", 7))
    with anyio.fail_after(30):
        status = await task.stop(timeout=60)
    assert status.exit_code == 7
    await _gone(container, task)


@pytest.mark.parametrize("signal", ["SIGINT", "INT", "int", 2])
async def test_stop_with_a_signal_by_name_or_number(
    client: supervisor.Client, rootfs: str, signal: str | int
) -> None:
    container, task = await _started(client, rootfs, "by-name", _handler("INT", 3))
    with anyio.fail_after(30):
        status = await task.stop(timeout=60, signal=signal)
    assert status.exit_code == 3
    await _gone(container, task)


async def test_stop_of_an_exited_task_returns_its_status_at_once(
    client: supervisor.Client, rootfs: str
) -> None:
    spec = supervisor.default_spec(["sh", "-c", "exit 4"], rootfs)
    container = await client.new_container("exited", spec)
    task = await container.new_task(output="null")
    await task.start()
    await task.wait()
    # A second client, which learns of the exit only by asking.
    loaded = await client.load_container("exited")
    with anyio.fail_after(30):
        assert (await task.stop(timeout=60)).exit_code == 4
        again = await loaded.stop(timeout=60)
    assert again is not None and again.exit_code == 4
    await _gone(container, task)


async def test_stop_of_a_task_never_started(client: supervisor.Client, rootfs: str) -> None:
    spec = supervisor.default_spec(["sleep", "1000"], rootfs)
    container = await client.new_container("created", spec)
    task = await container.new_task(output="null")
    with anyio.fail_after(30):
        status = await task.stop(timeout=60)
    assert status.exit_code == 137
    assert await task.status() is ProcessState.STOPPED
    await _gone(container, task)


async def test_stop_of_a_paused_task(client: supervisor.Client, rootfs: str) -> None:
    container, task = await _started(client, rootfs, "paused", _handler("TERM", 9))
    await task.pause()
    with anyio.fail_after(30):
        status = await task.stop(timeout=60)
    assert status.exit_code == 9
    await _gone(container, task)


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"timeout": -1}, "zero or more"),
        ({"timeout": math.nan}, "finite"),
        ({"timeout": "5"}, "number of seconds"),
        ({"signal": "SIGNOPE"}, "unknown signal"),
        ({"signal": 0}, "out of range"),
        ({"signal": 1.5}, "must be an int"),
    ],
)
async def test_invalid_arguments_send_nothing(
    client: supervisor.Client, rootfs: str, kw: dict[str, Any], words: str
) -> None:
    container, task = await _started(client, rootfs, "invalid", _handler("TERM", 7))
    with pytest.raises(errors.InvalidArgument, match=words):
        await task.stop(**kw)
    with pytest.raises(errors.InvalidArgument, match=words):
        await container.stop(**kw)
    assert await task.status() is ProcessState.RUNNING
    # The trap is still armed: nothing was sent.
    with anyio.fail_after(30):
        assert (await task.stop()).exit_code == 7
    await _gone(container, task)


async def test_container_stop_without_a_task_is_none(
    client: supervisor.Client, rootfs: str
) -> None:
    container = await client.new_container("no-task", supervisor.default_spec(["true"], rootfs))
    assert await container.stop() is None
    await container.delete()


async def test_container_stop_of_a_task_made_elsewhere(
    client: supervisor.Client, rootfs: str
) -> None:
    container, task = await _started(client, rootfs, "elsewhere", IGNORES_TERM)
    other = await client.load_container("elsewhere")
    with anyio.fail_after(30):
        status = await other.stop(timeout=0)
    assert status is not None and status.exit_code == 137
    with anyio.fail_after(30):
        assert (await task.wait()).exit_code == 137
    await _gone(container, task)


REF = "example.com/stop/app:1"


@pytest_asyncio.fixture
async def stop_image(client: supervisor.Client, tmp_path: Path) -> AsyncIterator[str]:
    config = {
        "Entrypoint": _handler("USR1", 5),
        "Env": ["PATH=/bin:/usr/bin"],
        "StopSignal": "SIGUSR1",
    }
    await client.import_image(image_tar(tmp_path / "stop.tar", REF, config), name=REF)
    yield REF
    for found in await client.images():
        await client.remove_image(found.name)


async def test_stop_sends_the_images_stop_signal(
    client: supervisor.Client, stop_image: str
) -> None:
    container = await client.new_container("from-image", image=stop_image)
    task = await container.new_task()
    await task.start()
    with anyio.fail_after(20):
        async for line in task.aiter_lines():
            if line.strip() == "ready":
                break
    with anyio.fail_after(30):
        status = await task.stop(timeout=60)
    assert status.exit_code == 5
    await _gone(container, task)
    # Loaded from containerd's record, the container knows it too.
    container = await client.new_container("from-image-2", image=stop_image)
    loaded = await client.load_container("from-image-2")
    task = await container.new_task()
    await task.start()
    with anyio.fail_after(20):
        async for line in task.aiter_lines():
            if line.strip() == "ready":
                break
    with anyio.fail_after(30):
        status2 = await loaded.stop(timeout=60)
    assert status2 is not None and status2.exit_code == 5
    await _gone(container, task)
