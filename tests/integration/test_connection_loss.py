"""A call whose connection breaks must leave its caller's task as it found
it: grpclib wakes such a call with a native ``Task.cancel()`` and raises its
own error instead, so the cancel request stays counted on the task, and anyio
then never swallows the expiry of a cancel scope that was open around the
call (it takes the extra request for a cancellation from outside). The
caller's ``move_on_after`` becomes a bare ``CancelledError`` that ends its
task; inside a task group, every sibling is cancelled with it. Seen as silent
workers in the chaos soak (issue 20, item 4): each ended "by CancelledError:
Cancelled via cancel scope ...; reason: deadline exceeded"."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import DaemonTimeouts, errors
from supervisor.daemon import Daemon
from tests._containerd import short_tmpdir

pytestmark = [pytest.mark.asyncio, pytest.mark.disruptive]

FAST = DaemonTimeouts(health_interval=0.2, health_timeout=0.5, health_failures=2, stop=5)


@pytest.fixture
def base() -> Iterator[Path]:
    directory = short_tmpdir("sv-loss-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_scope_around_a_call_that_lost_its_connection_still_catches_its_deadline(
    base: Path, rootfs: str
) -> None:
    async with (
        Daemon(base / "root", base / "state", timeouts=FAST) as daemon,
        supervisor.connect(daemon.address, namespace="loss", state_dir=base / "sv") as client,
    ):
        container = await client.new_container(
            "c", supervisor.default_spec(["sleep", "60"], rootfs)
        )
        task = await container.new_task(output="null")
        await task.start()
        pid = daemon.pid
        assert pid is not None
        # Hung, then killed while our call waits on it: the call's stream
        # is terminated under it, not refused.
        os.kill(pid, signal.SIGSTOP)
        with anyio.move_on_after(3) as scope:
            async with anyio.create_task_group() as tg:

                async def kill_it() -> None:
                    await anyio.sleep(0.5)
                    os.kill(pid, signal.SIGKILL)

                tg.start_soon(kill_it)
                with pytest.raises(errors.Unavailable):
                    await task.status()
            await anyio.sleep(30)  # the scope's own deadline ends this
        assert scope.cancelled_caught
        with anyio.fail_after(30):
            while True:
                try:
                    await container.delete(force=True)
                    break
                except (errors.Unavailable, errors.DeadlineExceeded):
                    await anyio.sleep(0.1)
