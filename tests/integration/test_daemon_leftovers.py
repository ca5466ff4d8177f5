"""A task directory that a containerd killed mid-create left behind no longer
wedges its container id: the Daemon removes it before it starts containerd
again (killing the shim that served it, whose create can never end), and
leaves the directories of tasks alone.

containerd 1.6 killed between making a task's bundle directory and the
shim's create leaves the directory without the ``runtime`` file; its
successor's clean-up needs that file, fails, and every later create of a task
for that id fails ("mkdir ...: file exists"). The tests make a real task and
then take away what the shim's create wrote (``runtime``, ``init.pid``,
``options.json``, ``log.json`` and runc's state) and what it started, which
leaves the directory (and the shim, or not) as that kill does; killing that
mid-create moment itself cannot be timed.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import Daemon, DaemonTimeouts, errors
from supervisor.daemon._orphans import shims_of
from tests._containerd import short_tmpdir

pytestmark = [pytest.mark.asyncio, pytest.mark.disruptive]

FAST = DaemonTimeouts(
    health_interval=0.2, health_timeout=0.5, health_failures=2, stop=5, reap_interval=600
)
# What the shim's create writes (before and as it runs runc create).
CREATE_WROTE = ("runtime", "init.pid", "options.json", "log.json")


@pytest.fixture
def base() -> Iterator[Path]:
    directory = short_tmpdir("sv-left-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _bundle(base: Path, ns: str, cid: str) -> Path:
    return base / "state" / "daemon" / "io.containerd.runtime.v2.task" / ns / cid


def _as_a_kill_mid_create_leaves(base: Path, ns: str, cid: str) -> None:
    bundle = _bundle(base, ns, cid)
    for name in CREATE_WROTE:
        (bundle / name).unlink(missing_ok=True)
    shutil.rmtree(base / "state" / "runc" / ns / cid)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


async def _restarted(daemon: Daemon, before: int) -> None:
    pid = daemon.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with anyio.fail_after(60):  # a bound for a hang, not a speed
        while daemon.restarts == before or daemon.pid in (None, pid):  # noqa: ASYNC110
            await anyio.sleep(0.05)


@pytest.mark.parametrize("shim", ["dead", "alive"])
async def test_a_task_left_half_made_by_a_killed_containerd_does_not_wedge_its_id(
    base: Path, rootfs: str, shim: str
) -> None:
    # With its shim alive, containerd would load it, find no task, have it
    # reaped, fail to clean up after it, and refuse the id while it runs.
    ns, cid = f"left-{os.getpid()}", f"wedged-{shim}"
    async with Daemon(base / "root", base / "state", timeouts=FAST) as daemon:
        async with supervisor.connect(
            daemon.address, namespace=ns, state_dir=base / "sv"
        ) as client:
            spec = supervisor.default_spec(["sleep", "600"], rootfs)
            container = await client.new_container(cid, spec)
            await container.new_task(output="null")
            (served,) = shims_of(daemon.address)
            _as_a_kill_mid_create_leaves(base, ns, cid)
            for pid in [*_children(served.pid), *([served.pid] if shim == "dead" else [])]:
                os.kill(pid, signal.SIGKILL)
            await _restarted(daemon, 0)
            # As containerd 1.6 would have it, this create fails for good.
            with anyio.fail_after(60):
                while True:
                    try:
                        task = await container.new_task(output="null")
                        break
                    except (errors.Unavailable, errors.DeadlineExceeded):
                        await anyio.sleep(0.1)
            await task.start()
            assert await task.status() is supervisor.ProcessState.RUNNING
            await container.delete(force=True)
        assert not _bundle(base, ns, cid).exists()
        assert not (base / "root" / "io.containerd.runtime.v2.task" / ns / cid).exists()


async def test_the_directory_of_a_live_task_is_left_alone(base: Path, rootfs: str) -> None:
    ns, cid = f"left-{os.getpid()}", "alive"
    async with Daemon(base / "root", base / "state", timeouts=FAST) as daemon:
        async with supervisor.connect(
            daemon.address, namespace=ns, state_dir=base / "sv"
        ) as client:
            spec = supervisor.default_spec(["sleep", "600"], rootfs)
            container = await client.new_container(cid, spec)
            created = await container.new_task(output="null")
            running = await (await client.new_container("running", spec)).new_task(output="null")
            await running.start()
            await _restarted(daemon, 0)
            assert _bundle(base, ns, cid).is_dir() and _bundle(base, ns, "running").is_dir()
            with anyio.fail_after(60):
                while True:
                    try:
                        states = (await created.status(), await running.status())
                        break
                    except (errors.Unavailable, errors.DeadlineExceeded):
                        await anyio.sleep(0.1)
            assert states == (supervisor.ProcessState.CREATED, supervisor.ProcessState.RUNNING)
            await container.delete(force=True)
            await running.container.delete(force=True)
