"""The whole life of containers and processes against the real containerd."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import errors
from tests.integration.helpers import read_all, run

pytestmark = pytest.mark.asyncio


async def test_version(client: supervisor.Client) -> None:
    version = await client.version()
    assert version.startswith("1.")


@pytest.mark.parametrize("code", [0, 3, 42])
async def test_exit_code_and_output(client: supervisor.Client, rootfs: str, code: int) -> None:
    status, out, err = await run(
        client,
        rootfs,
        f"exit-{code}",
        ["sh", "-c", f"echo out-{code}; echo err-{code} >&2; exit {code}"],
    )
    assert status.exit_code == code
    assert status.exited_at is not None
    assert not status.oom_killed
    assert out == f"out-{code}\n".encode()
    assert err == f"err-{code}\n".encode()


async def test_large_output_streams_without_loss(client: supervisor.Client, rootfs: str) -> None:
    # 1 MiB is sixteen times a pipe buffer: the shim blocks unless we read as it writes.
    status, out, _ = await run(client, rootfs, "big", ["sh", "-c", "head -c 1048576 /dev/zero"])
    assert status.exit_code == 0
    assert out == b"\0" * 1048576


async def test_stdin_round_trip(client: supervisor.Client, rootfs: str) -> None:
    spec = supervisor.default_spec(["cat"], rootfs)
    container = await client.new_container("cat", spec)
    task = await container.new_task(stdin=True)
    assert task.stdin is not None
    await task.start()
    await task.stdin.send(b"hello\nworld\n")
    await task.close_stdin()
    with anyio.fail_after(20):
        out = await read_all(task.stdout)
        status = await task.wait()
    assert out == b"hello\nworld\n"
    assert status.exit_code == 0
    await task.delete()
    await container.delete()


async def test_close_stdin_before_start(client: supervisor.Client, rootfs: str) -> None:
    spec = supervisor.default_spec(["sh", "-c", "cat; echo done"], rootfs)
    container = await client.new_container("early-close", spec)
    task = await container.new_task(stdin=True)
    await task.close_stdin()
    await task.start()
    with anyio.fail_after(20):
        out = await read_all(task.stdout)
        status = await task.wait()
    assert (status.exit_code, out) == (0, b"done\n")
    await task.delete()
    await container.delete()


async def test_exec_in_running_container(client: supervisor.Client, rootfs: str) -> None:
    spec = supervisor.default_spec(["sleep", "60"], rootfs)
    container = await client.new_container("execd", spec)
    task = await container.new_task()
    await task.start()
    proc = await task.exec("probe", supervisor.process_spec(["sh", "-c", "echo $$; exit 7"]))
    assert proc.pid == 0
    await proc.start()
    assert proc.pid > 0
    with anyio.fail_after(20):
        out = await read_all(proc.stdout)
        status = await proc.wait()
    assert status.exit_code == 7
    assert out.strip().isdigit()
    deleted = await proc.delete()
    assert deleted.exit_code == 7
    # exec with stdin, then the task is still fine
    proc2 = await task.exec("cat", supervisor.process_spec(["cat"]), stdin=True)
    await proc2.start()
    assert proc2.stdin is not None
    await proc2.stdin.send(b"ping")
    await proc2.close_stdin()
    with anyio.fail_after(20):
        assert await read_all(proc2.stdout) == b"ping"
        assert (await proc2.wait()).exit_code == 0
    await proc2.delete()
    await task.kill(signal.SIGKILL)
    assert (await task.wait()).exit_code == 137
    await task.delete()
    await container.delete()


async def test_kill_sigkill_is_137_and_sigterm_reaches_the_process(
    client: supervisor.Client, rootfs: str
) -> None:
    # pid 1 of a pid namespace ignores signals it has no handler for, so the
    # SIGTERM case installs one and exits with a code of its own.
    for sig, args, code in (
        (signal.SIGKILL, ["sleep", "60"], 137),
        (signal.SIGTERM, ["sh", "-c", "trap 'exit 77' TERM; sleep 60 & wait"], 77),
    ):
        container = await client.new_container(
            f"kill-{code}", supervisor.default_spec(args, rootfs)
        )
        task = await container.new_task()
        await task.start()
        await anyio.sleep(0.2)  # let sh install its trap
        await task.kill(sig)
        with anyio.fail_after(20):
            status = await task.wait()
        assert status.exit_code == code
        await task.delete()
        await container.delete()


def _cgroup2() -> bool:
    fs = subprocess.run(["stat", "-fc", "%T", "/sys/fs/cgroup"], capture_output=True, text=True)
    return fs.stdout.strip() == "cgroup2fs"


@pytest.mark.cgroup
async def test_pause_resume_freezes_the_cgroup(client: supervisor.Client, rootfs: str) -> None:
    spec = supervisor.default_spec(["sleep", "60"], rootfs)
    container = await client.new_container("frozen", spec)
    task = await container.new_task()
    await task.start()
    # The freezer of the task's own cgroup, wherever the runtime put it.
    lines = Path(f"/proc/{task.pid}/cgroup").read_text().splitlines()
    if _cgroup2():
        path = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
        state, frozen, thawed = Path(f"/sys/fs/cgroup{path}/cgroup.freeze"), "1", "0"
    else:
        path = next(line.split(":", 2)[2] for line in lines if line.split(":")[1] == "freezer")
        state = Path(f"/sys/fs/cgroup/freezer{path}/freezer.state")
        frozen, thawed = "FROZEN", "THAWED"
    await task.pause()
    assert await task.status() is supervisor.ProcessState.PAUSED
    assert state.read_text().strip() == frozen
    await task.resume()
    assert await task.status() is supervisor.ProcessState.RUNNING
    assert state.read_text().strip() == thawed
    await task.delete(force=True)
    await container.delete()


async def test_pids_lists_the_processes(client: supervisor.Client, rootfs: str) -> None:
    spec = supervisor.default_spec(["sh", "-c", "sleep 60 & sleep 60 & wait"], rootfs)
    container = await client.new_container("pids", spec)
    task = await container.new_task()
    await task.start()
    with anyio.fail_after(10):
        while len(pids := await task.pids()) < 3:
            await anyio.sleep(0.05)
    assert task.pid in {p.pid for p in pids}
    await task.delete(force=True)
    await container.delete()


@pytest.mark.cgroup
async def test_stats_read_back_a_memory_limit(client: supervisor.Client, rootfs: str) -> None:
    spec = supervisor.default_spec(["sleep", "60"], rootfs)
    container = await client.new_container("stats", spec)
    task = await container.new_task()
    await task.start()
    await task.update_resources({"memory": {"limit": 48 * 1024 * 1024}})
    stats = await task.stats()
    assert stats.memory.limit == 48 * 1024 * 1024
    assert 0 < stats.memory.usage < stats.memory.limit
    assert stats.pids.current == 1
    assert stats.cpu.total_usage > 0
    await task.update_resources({"memory": {"limit": 64 * 1024 * 1024}})
    assert (await task.stats()).memory.limit == 64 * 1024 * 1024
    await task.delete(force=True)
    await container.delete()


@pytest.mark.cgroup
async def test_oom_is_reported_in_exit_status(client: supervisor.Client, rootfs: str) -> None:
    # tmpfs pages are charged to the cgroup: filling /tmp past the limit OOM-kills.
    spec = supervisor.default_spec(
        ["sh", "-c", "exec dd if=/dev/zero of=/tmp/fill bs=1M count=64"],
        rootfs,
        memory_limit=16 * 1024 * 1024,
    )
    container = await client.new_container("oom", spec)
    task = await container.new_task(output="null")
    await task.start()
    with anyio.fail_after(30):
        status = await task.wait()
    assert status.exit_code == 137
    # containerd's shim may publish the OOM just after the EXIT (two
    # goroutines); the status delete() returns has heard of it either way.
    with anyio.fail_after(10):
        while not client._session.tracker.oom_killed("oom"):
            await anyio.sleep(0.01)
    deleted = await task.delete()
    assert deleted.oom_killed and deleted.exit_code == 137
    await container.delete()


@pytest.mark.cgroup
async def test_oom_flag_without_a_backend_set_by_an_exec_and_cleared_on_restart(
    client: supervisor.Client, rootfs: str
) -> None:
    # A client without a backend subscribes to exit/oom/delete only: the
    # flag must still be set by any process's OOM and cleared by a new start.
    spec = supervisor.default_spec(["sleep", "60"], rootfs, memory_limit=16 << 20)
    container = await client.new_container("oom-nb", spec)
    task = await container.new_task()
    await task.start()
    hog = await task.exec(
        "hog", supervisor.process_spec(["sh", "-c", "dd if=/dev/zero of=/tmp/fill bs=1M count=64"])
    )
    await hog.start()
    with anyio.fail_after(30):
        assert (await hog.wait()).exit_code == 137
    await hog.delete()
    await task.kill(signal.SIGKILL)
    assert (await task.wait()).oom_killed
    await task.delete()
    task = await container.new_task()
    await task.start()
    await task.kill(signal.SIGKILL)
    status = await task.wait()
    assert status.exit_code == 137 and not status.oom_killed
    await task.delete()
    await container.delete()


async def test_terminal_mode_and_resize(client: supervisor.Client, rootfs: str) -> None:
    spec = supervisor.default_spec(["sh", "-c", "sleep 0.5; stty size"], rootfs, terminal=True)
    container = await client.new_container("tty", spec)
    task = await container.new_task(terminal=True)
    assert task.stderr is None
    await task.start()
    await task.resize(100, 40)
    with anyio.fail_after(20):
        out = await read_all(task.stdout)
        status = await task.wait()
    assert status.exit_code == 0
    assert b"40 100" in out
    await task.delete()
    await container.delete()


async def test_cancelled_wait_leaves_task_usable(client: supervisor.Client, rootfs: str) -> None:
    spec = supervisor.default_spec(["sleep", "60"], rootfs)
    container = await client.new_container("cancel-wait", spec)
    task = await container.new_task()
    await task.start()
    with anyio.move_on_after(0.2) as scope:
        await task.wait()
    assert scope.cancelled_caught
    await task.kill(signal.SIGKILL)
    with anyio.fail_after(20):
        assert (await task.wait()).exit_code == 137
    await task.delete()
    await container.delete()


async def test_many_waiters_on_one_process(client: supervisor.Client, rootfs: str) -> None:
    spec = supervisor.default_spec(["sh", "-c", "sleep 0.3; exit 5"], rootfs)
    container = await client.new_container("waiters", spec)
    task = await container.new_task()
    await task.start()
    codes: list[int] = []

    async def waiter() -> None:
        codes.append((await task.wait()).exit_code)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(waiter)
    assert codes == [5] * 50
    await task.delete()
    await container.delete()


async def test_load_container_and_task(client: supervisor.Client, rootfs: str) -> None:
    spec = supervisor.default_spec(["sleep", "60"], rootfs)
    made = await client.new_container("loaded", spec, labels={"app": "test"})
    task = await made.new_task()
    await task.start()
    loaded = await client.load_container("loaded")
    assert loaded.labels["app"] == "test"
    assert loaded.spec["process"]["args"] == ["sleep", "60"]
    assert loaded.runtime == supervisor.DEFAULT_RUNTIME
    assert [c.id for c in await client.containers()] == ["loaded"]
    with pytest.raises(errors.FailedPrecondition):
        await loaded.delete()  # it has a task, which only containerd knows of here
    again = await loaded.task()
    assert again.pid == task.pid
    assert again.stdout is not None  # its FIFOs are ours: reopened
    await again.kill(signal.SIGKILL)
    with anyio.fail_after(20):
        assert (await again.wait()).exit_code == 137
    await again.delete()
    await loaded.delete()
    with pytest.raises(errors.NotFound):
        await client.load_container("loaded")


async def test_force_delete_of_created_task(client: supervisor.Client, rootfs: str) -> None:
    spec = supervisor.default_spec(["sleep", "60"], rootfs)
    container = await client.new_container("created-only", spec)
    task = await container.new_task()
    with anyio.fail_after(30):
        await task.delete(force=True)
    await container.delete()


async def test_waits_without_events_use_the_wait_call(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir, events=False
    ) as c:
        status, out, _ = await run(c, rootfs, "no-events", ["sh", "-c", "echo x; exit 4"])
    assert (status.exit_code, out) == (4, b"x\n")
