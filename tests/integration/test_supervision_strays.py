"""Health probe processes that no exec names any more, against the real
containerd: each is killed before the next probe starts, in the run that
left it and in the application's next run.

Such a process is what the supervision soak found once (a third process in
a container whose probes run one at a time): containerd killed while a
probe's exec was starting takes the shim's request with it, the shim kills
``runc exec`` half way, and the probe's process runs on while the exec it
belonged to is deleted as never started. The same is left, without any
fault, by a probe killed at its timeout whose command had started children.
Here the process is made deterministically: a probe that starts children,
and a process given the probes' marker by hand.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

import supervisor
from supervisor import HealthCheck
from supervisor.supervision._strays import MARKER

pytestmark = pytest.mark.asyncio


def _spec(rootfs: str, script: str) -> dict[str, Any]:
    return supervisor.default_spec(["sh", "-c", script], rootfs)


def _alive(pid: int) -> bool:
    # A killed process whose parent (here the container's init, a sleep)
    # never reaps it stays a zombie: dead all the same.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


async def _live_sleepers(task: supervisor.Task, argv: str) -> list[int]:
    return [p.pid for p in await task.pids() if _alive(p.pid) and _cmdline(p.pid) == argv]


async def _probe_after(task: supervisor.Task, since: datetime) -> None:
    """Until a probe that began after ``since`` has a result (which comes
    with no event to wait on: polled, bounded)."""
    with anyio.fail_after(30):
        while not any(r.start > since for r in task.health().log):
            await anyio.sleep(0.02)


def _now() -> datetime:
    return datetime.now(UTC)


async def test_children_of_a_probe_killed_at_its_timeout_do_not_pile_up(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as client:
        # Each probe starts two sleeps and is killed at its timeout: only
        # its shell is the exec's process, the sleeps outlive it.
        check = HealthCheck(
            ["CMD-SHELL", "sleep 997 & sleep 997; true"], interval=0.05, timeout=0.3, retries=99
        )
        container = await client.new_container(
            "kids", _spec(rootfs, "exec sleep 100000"), healthcheck=check
        )
        task = await container.new_task(output="null")
        await task.start()
        for _ in range(4):
            await _probe_after(task, _now())
        # Four probes have timed out: what the earlier ones started is
        # gone, only the current (or last) probe's two sleeps may be alive.
        sleepers = await _live_sleepers(task, "sleep 997")
        assert len(sleepers) <= 2, sleepers
        await container.delete(force=True)


async def test_a_probe_process_no_exec_names_is_killed_before_the_next_probe(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as client:
        check = HealthCheck(["CMD", "true"], interval=0.05, timeout=5)
        container = await client.new_container(
            "lost", _spec(rootfs, "exec sleep 100000"), healthcheck=check
        )
        task = await container.new_task(output="null")
        await task.start()
        await _probe_after(task, _now())
        stray = await _plant_stray(task, "health-lost1")
        # Another container's probe (in a shared pid namespace, say), or a
        # process that only looks like one: not ours to kill.
        foreign = await _plant_stray(task, "health-x", owner=f"{namespace}/other/")
        await _probe_after(task, _now())
        assert not await _alive_in(task, stray)
        assert await _alive_in(task, foreign)
        await container.delete(force=True)


async def test_a_probe_process_left_by_an_earlier_run_is_killed(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, tmp_path: Path
) -> None:
    check = HealthCheck(["CMD", "true"], interval=0.05, timeout=5)
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as client:
        container = await client.new_container(
            "left", _spec(rootfs, "exec sleep 100000"), healthcheck=check
        )
        task = await container.new_task(output="null")
        await task.start()
        await _probe_after(task, _now())
    # No application runs: a client of another state directory (which
    # supervises nothing here) leaves a process with the probes' marker.
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=tmp_path / "other"
    ) as other:
        task = await (await other.load_container("left")).task(attach=False)
        stray = await _plant_stray(task, "health-lost2")
        assert await _alive_in(task, stray)
    # The application's next run: its first probe comes after the stray is gone.
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as client:
        pairs = await client.restore()
        container, task = next((c, t) for c, t in pairs if c.id == "left" and t is not None)
        await _probe_after(task, _now())
        assert not await _alive_in(task, stray)
        await container.delete(force=True)


async def _plant_stray(task: supervisor.Task, probe_id: str, owner: str | None = None) -> int:
    """A process with the probes' marker that no exec names: started in
    the background by an exec that then ends and is deleted. Its pid in
    the container (the probes may kill it at once: looked at from inside)."""
    if owner is None:
        owner = f"{task._session.namespace}/{task.container.id}/"
    marker = f"{MARKER}={owner}{probe_id}"
    out = await _run_in(task, f"{marker} sleep 998 </dev/null >/dev/null 2>&1 & echo $!")
    return int(out)


async def _alive_in(task: supervisor.Task, pid: int) -> bool:
    # Dead is gone, or a zombie: the container's init (a sleep) never reaps.
    state = await _run_in(task, f"cat /proc/{pid}/stat 2>/dev/null || echo gone")
    return state != "gone" and state.rsplit(")", 1)[1].split()[0] != "Z"


async def _run_in(task: supervisor.Task, script: str) -> str:
    proc = await task.exec(None, ["sh", "-c", script])
    await proc.start()
    out = bytearray()
    assert proc.stdout is not None
    with contextlib.suppress(anyio.EndOfStream):
        while True:
            out += await proc.stdout.receive()
    await proc.wait()
    await proc.delete()
    return out.decode().strip()
