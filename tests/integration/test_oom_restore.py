"""An OOM kill that happened while the application was down is reported by
``restore()`` as it would have been live (issue 20, item 2): the task's
cgroup, still there until the task is deleted, counted it."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import EventType
from tests.integration.helpers import Recorder

pytestmark = [pytest.mark.asyncio, pytest.mark.cgroup]

# tmpfs pages are charged to the cgroup: filling /tmp past the limit OOM-kills.
_FILL = "exec dd if=/dev/zero of=/tmp/fill bs=1M count=64"
_LIMIT = 16 << 20


async def _first_run(
    address: str,
    namespace: str,
    state_dir: Path,
    rootfs: str,
    args: list[str],
    *,
    hog: bool = False,
    backend: Recorder | None = None,
) -> None:
    """The application's first run: starts the job (and with ``hog`` an exec
    that fills the memory) and goes away without deleting anything."""
    spec = supervisor.default_spec(args, rootfs, memory_limit=_LIMIT)
    async with supervisor.connect(
        address, namespace=namespace, state_dir=state_dir, backend=backend
    ) as client:
        container = await client.new_container("job", spec)
        task = await container.new_task(output="null")
        await task.start()
        if hog:
            proc = await task.exec("hog", ["sh", "-c", _FILL])
            await proc.start()
        if backend is not None:
            # This run hears the OOM and the exit, and its backend handles them.
            await backend.wait_for(lambda: backend.exits()[("job", "job")] == 1)


async def _until_exited(
    address: str, namespace: str, state_dir: Path, process_id: str, *, code: int = 137
) -> None:
    """Until containerd has the job's process stopped, learnt through a
    look-only client of its own (not the application under test)."""
    async with supervisor.connect(address, namespace=namespace, state_dir=state_dir) as probe:
        task = await (await probe.load_container("job")).task(attach=False)
        proc = task if process_id == "job" else task.execs[process_id]
        with anyio.fail_after(30):
            assert (await proc.wait()).exit_code == code


async def test_an_oom_kill_while_down_comes_back_with_oom_killed_and_its_event(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    await _first_run(containerd_address, namespace, state_dir, rootfs, ["sh", "-c", _FILL])
    await _until_exited(containerd_address, namespace, state_dir, "job")
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        ((container, task),) = await client.restore()
        assert task is not None
        status = await task.wait()
        assert status.exit_code == 137 and status.oom_killed
        await rec.wait_for(lambda: rec.exits()[("job", "job")] == 1)
        # What a live client hears: the OOM, then an exit that carries it.
        assert [e for e, _ in rec.of("job")] == [EventType.OOM, EventType.EXIT]
        assert rec.of("job")[1][1].oom_killed
        deleted = await task.delete()
        assert deleted.exit_code == 137 and deleted.oom_killed
        await container.delete()


async def test_a_task_loaded_alone_learns_its_oom_kill_too(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    await _first_run(containerd_address, namespace, state_dir, rootfs, ["sh", "-c", _FILL])
    await _until_exited(containerd_address, namespace, state_dir, "job")
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as client:
        container = await client.load_container("job")
        task = await container.task()
        assert (await task.wait()).oom_killed
        assert (await task.delete()).oom_killed
        await container.delete()


async def test_an_exec_oom_killed_while_down_marks_the_container_as_live(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    # Live, an exec's OOM sets the container's flag, which the init's exit
    # then carries; the same after a restart that found the exec stopped.
    await _first_run(containerd_address, namespace, state_dir, rootfs, ["sleep", "600"], hog=True)
    await _until_exited(containerd_address, namespace, state_dir, "hog")
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        ((container, task),) = await client.restore()
        assert task is not None
        hog = task.execs["hog"]
        assert (await hog.wait()).exit_code == 137
        await rec.wait_for(lambda: rec.exits()[("job", "hog")] == 1)
        assert [(e, i.process_id) for e, i in rec.of("job")] == [
            (EventType.OOM, "job"),
            (EventType.EXIT, "hog"),
        ]
        await hog.delete()
        await task.kill(signal.SIGKILL)
        status = await task.wait()
        assert status.exit_code == 137 and status.oom_killed
        assert (await task.delete()).oom_killed
        await container.delete()


async def test_an_exit_handled_before_the_restart_keeps_its_oom_kill_silently(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    first = Recorder()
    await _first_run(
        containerd_address, namespace, state_dir, rootfs, ["sh", "-c", _FILL], backend=first
    )
    assert [e for e, _ in first.of("job")][-2:] in (
        [EventType.OOM, EventType.EXIT],
        [EventType.EXIT, EventType.OOM],
    )
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        ((container, task),) = await client.restore()
        assert task is not None
        assert (await task.wait()).oom_killed
        assert (await task.delete()).oom_killed
        await container.delete()
        # The earlier run's backend handled both: neither is delivered again.
        assert rec.of("job") == []


async def test_a_task_stopped_without_an_oom_kill_stays_clean(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    await _first_run(containerd_address, namespace, state_dir, rootfs, ["sh", "-c", "exit 3"])
    await _until_exited(containerd_address, namespace, state_dir, "job", code=3)
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        ((container, task),) = await client.restore()
        assert task is not None
        status = await task.wait()
        assert status.exit_code == 3 and not status.oom_killed
        await rec.wait_for(lambda: rec.exits()[("job", "job")] == 1)
        assert [e for e, _ in rec.of("job")] == [EventType.EXIT]
        assert not (await task.delete()).oom_killed
        await container.delete()
