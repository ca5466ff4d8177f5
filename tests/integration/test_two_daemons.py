"""Two embedded containerds on one machine, with the same namespace and the
same container ids, side by side: neither may see, share or kill what the
other runs (issue 20, item 5).

containerd keeps ids apart only within itself. What the client names (runc's
state directory, the container's cgroup, the bundle directory) must
therefore differ per containerd, or the second create fails ("container with
given ID already exists") and its clean-up, or any delete, kills the first
one's processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import supervisor
from supervisor import Daemon, DaemonTimeouts, _platform, errors
from supervisor.testing._namespaces import purge
from tests._containerd import alive, short_tmpdir

pytestmark = pytest.mark.asyncio

FAST = DaemonTimeouts(health_interval=0.2, health_timeout=0.5, health_failures=2, stop=5)


@pytest.fixture
def base() -> Iterator[Path]:
    directory = short_tmpdir("sv-two-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def ns() -> str:
    # Of this run alone: on the code this test guards, runc's state for it
    # lands in the machine-wide /run/containerd/runc/<ns>.
    return f"two-{os.getpid()}-{time.monotonic_ns() % 10**9}"


@contextlib.asynccontextmanager
async def two_daemons(base: Path, ns: str) -> AsyncIterator[tuple[Daemon, Daemon]]:
    async with (
        Daemon(base / "root-a", base / "a", timeouts=FAST) as a,
        Daemon(base / "root-b", base / "b", timeouts=FAST) as b,
    ):
        try:
            yield a, b
        finally:
            # A Daemon leaves running shims behind when it stops, by design.
            for daemon in (a, b):
                await purge(daemon.address, ns, base / "purge")
            _remove_cgroup_parents(a, b, ns)


def _cgroups(pid: int) -> set[str]:
    """The cgroup paths of ``pid``, one per hierarchy (v1) or the one (v2)."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    return {line.split(":", 2)[2] for line in lines if line.split(":", 2)[2] != "/"}


def _remove_cgroup_parents(a: Daemon, b: Daemon, ns: str) -> None:
    # runc removes a container's own cgroup, not the levels above it. v1:
    # one hierarchy per controller below /sys/fs/cgroup; v2: that one.
    mount = Path("/sys/fs/cgroup")
    hierarchies = [mount, *(p for p in mount.iterdir() if p.is_dir())]
    for daemon in (a, b):
        top = f"containerd-{_platform.instance_scope(daemon.address)}"
        for hierarchy in hierarchies:
            for level in (hierarchy / top / ns, hierarchy / top):
                with contextlib.suppress(OSError):
                    level.rmdir()


async def sleeper(
    client: supervisor.Client, rootfs: str, cid: str
) -> tuple[supervisor.Container, supervisor.Task]:
    container = await client.new_container(cid, supervisor.default_spec(["sleep", "300"], rootfs))
    task = await container.new_task()
    await task.start()
    return container, task


async def running(task: supervisor.Task) -> bool:
    return await task.status() == supervisor.ProcessState.RUNNING and alive(task.pid)


def runc_state(root: Path, ns: str, cid: str) -> Path:
    return root / ns / cid / "state.json"


@pytest.mark.cgroup
async def test_same_ids_side_by_side_each_delete_leaves_the_other_running(
    base: Path, ns: str, rootfs: str
) -> None:
    state_dirs: list[Path] = []
    try:
        async with (
            two_daemons(base, ns) as (a, b),
            supervisor.connect(a.address, namespace=ns) as ca,
            supervisor.connect(b.address, namespace=ns) as cb,
        ):
            # Default state directories: one per containerd, so the bundles
            # (<state>/<ns>/<id>, FIFOs included) are not shared either.
            state_dirs += [ca.state_dir, cb.state_dir]
            assert ca.state_dir != cb.state_dir
            await _side_by_side(a, b, ca, cb, ns, rootfs)
    finally:
        # Scoped by these two containerds' temporary sockets: nobody else's.
        for directory in state_dirs:
            shutil.rmtree(directory, ignore_errors=True)


async def _side_by_side(
    a: Daemon, b: Daemon, ca: supervisor.Client, cb: supervisor.Client, ns: str, rootfs: str
) -> None:
    container_a, task_a = await sleeper(ca, rootfs, "job")
    container_b, task_b = await sleeper(cb, rootfs, "job")
    assert await running(task_a) and await running(task_b)
    assert task_a.pid != task_b.pid

    # runc's state under each Daemon's own directory, none machine-wide.
    assert runc_state(a.runc_root, ns, "job").is_file()
    assert runc_state(b.runc_root, ns, "job").is_file()
    assert not runc_state(Path("/run/containerd/runc"), ns, "job").exists()
    # Cgroups apart: runc's delete kills whatever shares the cgroup.
    assert _cgroups(task_a.pid).isdisjoint(_cgroups(task_b.pid))
    assert f"/{ns}/job" not in _cgroups(task_a.pid) | _cgroups(task_b.pid)

    # A plain delete in b.
    await task_b.kill(signal.SIGKILL)
    assert (await task_b.wait()).exit_code == 137
    await task_b.delete()
    await container_b.delete()
    assert await running(task_a)
    assert (ca.state_dir / ns / "job").is_dir()

    # The same id again in b, then a forced delete of a running task there.
    container_b, task_b = await sleeper(cb, rootfs, "job")
    assert await running(task_a) and await running(task_b)
    await task_b.delete(force=True)
    await container_b.delete()
    assert await running(task_a)

    # And the other way round: b's task survives a's forced delete.
    container_b, task_b = await sleeper(cb, rootfs, "job")
    await task_a.delete(force=True)
    await container_a.delete()
    assert await running(task_b)
    assert not runc_state(a.runc_root, ns, "job").exists()
    assert runc_state(b.runc_root, ns, "job").is_file()
    await task_b.delete(force=True)
    await container_b.delete()


async def test_a_failed_create_leaves_the_other_running(base: Path, ns: str, rootfs: str) -> None:
    async with (
        two_daemons(base, ns) as (a, b),
        supervisor.connect(a.address, namespace=ns, state_dir=base / "sv-a") as ca,
        supervisor.connect(b.address, namespace=ns, state_dir=base / "sv-b") as cb,
    ):
        container_a, task_a = await sleeper(ca, rootfs, "job")
        # runc create fails in b; the shim cleans up with `runc delete --force`,
        # which must find nothing of a's.
        broken = await cb.new_container(
            "job", supervisor.default_spec(["/no/such/program"], rootfs)
        )
        with pytest.raises(errors.SupervisorError):
            await broken.new_task()
        await broken.delete()
        assert await running(task_a)
        assert runc_state(a.runc_root, ns, "job").is_file()
        # b's containerd can run that id afterwards, and a's still runs.
        container_b, task_b = await sleeper(cb, rootfs, "job")
        assert await running(task_a) and await running(task_b)
        for container, task in ((container_a, task_a), (container_b, task_b)):
            await task.delete(force=True)
            await container.delete()


async def test_runc_root_beside_the_socket_and_the_callers_own_root_wins(
    base: Path, ns: str, rootfs: str
) -> None:
    own_root = base / "own-runc"
    async with (
        two_daemons(base, ns) as (a, _),
        supervisor.connect(a.address, namespace=ns, state_dir=base / "sv-a") as ca,
    ):
        assert a.runc_root == Path(a.address).parent / "runc"
        assert a.runc_root.is_dir() and (a.runc_root.stat().st_mode & 0o022) == 0
        assert f'runtime_root = "{a.runc_root}"' in a.config_path.read_text()
        container = await ca.new_container(
            "mine",
            supervisor.default_spec(["sleep", "300"], rootfs),
            runtime_options={"root": str(own_root)},
        )
        task = await container.new_task()
        await task.start()
        assert runc_state(own_root, ns, "mine").is_file()
        assert not runc_state(a.runc_root, ns, "mine").exists()
        await task.delete(force=True)
        await container.delete()
