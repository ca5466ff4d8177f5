"""A task directory that a containerd killed mid-create left behind no longer
wedges its container id: the Daemon removes it before it starts containerd
again, and never removes one whose shim is alive.

containerd 1.6 killed between making a task's bundle directory and the
shim's create leaves the directory without the ``runtime`` file; its
successor's clean-up needs that file, fails, and every later create of a task
for that id fails ("mkdir ...: file exists"). The tests make a real task and
then take away what the shim's create wrote (``runtime``, ``init.pid``,
``options.json``, ``log.json`` and runc's state), which leaves the directory
as that kill does; killing that mid-create moment itself cannot be timed.
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


async def test_a_task_left_half_made_by_a_killed_containerd_does_not_wedge_its_id(
    base: Path, rootfs: str
) -> None:
    ns, cid = f"left-{os.getpid()}", "wedged"
    async with Daemon(base / "root", base / "state", timeouts=FAST) as daemon:
        async with supervisor.connect(
            daemon.address, namespace=ns, state_dir=base / "sv"
        ) as client:
            spec = supervisor.default_spec(["sleep", "600"], rootfs)
            container = await client.new_container(cid, spec)
            await container.new_task(output="null")
            (shim,) = shims_of(daemon.address)
            _as_a_kill_mid_create_leaves(base, ns, cid)
            for pid in [*_children(shim.pid), shim.pid]:
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


async def test_the_directory_of_a_live_shim_is_never_removed(base: Path, rootfs: str) -> None:
    # Even without what marks a create as done: its shim is alive.
    ns, cid = f"left-{os.getpid()}", "alive"
    async with Daemon(base / "root", base / "state", timeouts=FAST) as daemon:
        async with supervisor.connect(
            daemon.address, namespace=ns, state_dir=base / "sv"
        ) as client:
            spec = supervisor.default_spec(["sleep", "600"], rootfs)
            container = await client.new_container(cid, spec)
            task = await container.new_task(output="null")
            await task.start()
            bundle = _bundle(base, ns, cid)
            kept = {name: (bundle / name).read_bytes() for name in CREATE_WROTE}
            for name in CREATE_WROTE:
                (bundle / name).unlink()
            await _restarted(daemon, 0)
            assert bundle.is_dir()
            # Put back, so that containerd can delete the task as usual.
            for name, data in kept.items():
                (bundle / name).write_bytes(data)
            with anyio.fail_after(60):
                while True:
                    try:
                        status = await task.status()
                        break
                    except (errors.Unavailable, errors.DeadlineExceeded):
                        await anyio.sleep(0.1)
            assert status is supervisor.ProcessState.RUNNING
            await container.delete(force=True)
