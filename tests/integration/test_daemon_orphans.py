"""Shims a containerd lost are reaped while the Daemon runs, not only when it
starts one: a shim older than the running containerd whose task that
containerd forgot later (its task deleted by a shim serving the same id) is
killed at the next look.

The lost shim is a stand-in: a process whose command line reads exactly like
a runc shim's for our containerd (``Mimic``), so that killing it touches
nothing real; the task it shadows is a real one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import Daemon, DaemonTimeouts, errors
from supervisor.daemon._orphans import reap_orphans, shims_of
from tests._containerd import short_tmpdir
from tests.unit.test_daemon_adopt import Mimic

pytestmark = pytest.mark.asyncio

FAST = DaemonTimeouts(
    health_interval=0.2, health_timeout=0.5, health_failures=2, stop=5, reap_interval=0.2
)


@pytest.fixture
def base() -> Iterator[Path]:
    directory = short_tmpdir("sv-orph-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _shim_argv(address: str, namespace: str, cid: str) -> list[str]:
    return [
        "/usr/bin/containerd-shim-runc-v2",
        "-namespace",
        namespace,
        "-id",
        cid,
        "-address",
        address,
    ]


async def test_a_shim_whose_task_containerd_forgets_later_is_reaped(
    base: Path, rootfs: str
) -> None:
    ns, cid = f"orph-{os.getpid()}", "shadowed"
    root, state = base / "root", base / "state"
    # A task of an earlier containerd, which the next one loads at its start.
    async with Daemon(root, state, timeouts=FAST) as daemon:
        address = daemon.address
        async with supervisor.connect(address, namespace=ns, state_dir=base / "sv") as client:
            spec = supervisor.default_spec(["sleep", "600"], rootfs)
            container = await client.new_container(cid, spec)
            task = await container.new_task(output="null")
            await task.start()
    # A lost shim of the same id, older than the containerd started next.
    lost = Mimic(_shim_argv(address, ns, cid))
    try:
        assert lost.pid in {s.pid for s in shims_of(address)}
        async with Daemon(root, state, timeouts=FAST) as daemon:
            async with supervisor.connect(address, namespace=ns, state_dir=base / "sv") as client:
                # Its task is known at the start: the lost shim is spared then.
                assert lost.process.poll() is None
                await (await client.load_container(cid)).delete(force=True)
                with anyio.fail_after(30):  # a bound for a hang, not a speed
                    while lost.process.poll() is None:  # noqa: ASYNC110 - a process, no event
                        await anyio.sleep(0.05)
                assert lost.process.returncode == -signal.SIGKILL
                assert shims_of(address) == []
    finally:
        lost.stop()


@contextlib.asynccontextmanager
async def _pending_create(
    base: Path, rootfs: str, cid: str, bundle: Path
) -> AsyncIterator[tuple[Daemon, supervisor.Container, Mimic]]:
    """A Daemon that does not reap by itself, a container ``cid`` without a
    task, and a stand-in shim of it younger than containerd, in ``bundle``:
    what a create in flight looks like."""
    ns = f"orph-{os.getpid()}"
    bundle.mkdir()
    slow = DaemonTimeouts(health_interval=0.2, health_timeout=0.5, stop=5, reap_interval=600)
    async with Daemon(base / "root", base / "state", timeouts=slow) as daemon:
        assert daemon.pid is not None
        async with supervisor.connect(
            daemon.address, namespace=ns, state_dir=base / "sv"
        ) as client:
            container = await client.new_container(cid, supervisor.default_spec(["true"], rootfs))
            lost = Mimic(_shim_argv(daemon.address, ns, cid), cwd=bundle)
            try:
                yield daemon, container, lost
            finally:
                lost.stop()
            with contextlib.suppress(errors.NotFound):
                await container.delete()


@pytest.mark.parametrize("gone", ["bundle", "container"])
async def test_a_younger_shim_is_reaped_once_its_bundle_or_its_container_is_gone(
    base: Path, rootfs: str, gone: str
) -> None:
    # Younger than the running containerd, with its bundle and its container:
    # a create of this containerd's own may be in flight, until the bundle
    # (made before the shim) or the container (made before the bundle) is gone.
    bundle = base / "bundle"
    async with _pending_create(base, rootfs, "pending", bundle) as (daemon, container, lost):
        assert daemon.pid is not None
        assert await reap_orphans(daemon.address, daemon.pid, 5.0) == 0
        assert lost.process.poll() is None
        if gone == "bundle":
            bundle.rmdir()
        else:
            await container.delete()
        assert await reap_orphans(daemon.address, daemon.pid, 5.0) == 1
        assert lost.process.wait(timeout=10) == -signal.SIGKILL


async def test_a_younger_shim_without_a_task_for_too_long_is_reaped(
    base: Path, rootfs: str
) -> None:
    # Its bundle and its container are there (the caller of the create was
    # killed, its container kept): once it has served no task for longer
    # than lost_create across looks, it is a leftover.
    async with _pending_create(base, rootfs, "stuck", base / "bundle") as (daemon, _, lost):
        assert daemon.pid is not None
        pending: dict[tuple[int, int], float] = {}
        # First seen now: a create in flight, for all we know.
        assert await reap_orphans(daemon.address, daemon.pid, 5.0, pending, 0.5) == 0
        assert lost.process.poll() is None and len(pending) == 1
        await anyio.sleep(0.6)  # past lost_create since the first look
        assert await reap_orphans(daemon.address, daemon.pid, 5.0, pending, 0.5) == 1
        assert lost.process.wait(timeout=10) == -signal.SIGKILL
        assert pending == {}


async def test_a_shims_own_start_and_delete_commands_are_not_shims(base: Path) -> None:
    address = str(base / "containerd.sock")
    for command in ("start", "delete"):
        helper = Mimic([*_shim_argv(address, "ns", command), command], cwd=base)
        try:
            assert shims_of(address) == []
        finally:
            helper.stop()
