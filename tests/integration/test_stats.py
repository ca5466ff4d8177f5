"""Task stats against the real containerd, on whichever cgroup version runs here.

Nothing assumes cgroup v1: the version is read from the filesystem type of
``/sys/fs/cgroup``, and the fields the other version lacks are checked to be
``None`` rather than skipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import supervisor
from supervisor._proto.containerd.services.tasks import v1 as pb_tasks
from tests._containerd import REPO

pytestmark = [pytest.mark.asyncio, pytest.mark.cgroup]

MiB = 1 << 20


def cgroup_version() -> int:
    fs = subprocess.run(["stat", "-fc", "%T", "/sys/fs/cgroup"], capture_output=True, text=True)
    return 2 if fs.stdout.strip() == "cgroup2fs" else 1


def block_device(directory: Path) -> tuple[int, int] | None:
    """The disk a directory's files are written to (a partition's parent
    disk: the block-IO controller counts per disk), or None if none."""
    dev = os.stat(directory).st_dev
    sysfs = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if not sysfs.exists():
        return None
    if (sysfs / "partition").exists():
        sysfs = sysfs.resolve().parent
    major, minor = (sysfs / "dev").read_text().split(":")
    return int(major), int(minor)


@pytest.fixture
def disk_dir(tmp_path: Path) -> Iterator[tuple[Path, tuple[int, int]]]:
    """A host directory on a real disk, for a bind mount whose writes reach
    the block layer (the container's /tmp is a tmpfs: no block IO at all)."""
    for candidate in (tmp_path / "io", REPO / ".build" / f"stats-io-{os.getpid()}"):
        candidate.mkdir(parents=True, exist_ok=True)
        device = block_device(candidate)
        if device is not None:
            break
        candidate.rmdir()
    else:
        raise AssertionError("no directory on a block device to write through")
    yield candidate, device
    shutil.rmtree(candidate, ignore_errors=True)


def io_spec(rootfs: str, script: str, host_dir: Path, device: tuple[int, int]) -> dict[str, Any]:
    spec = supervisor.default_spec(["sh", "-c", script], rootfs)
    # Inside the container's /tmp tmpfs, so the shared read-only rootfs
    # gets no mount point.
    spec["mounts"].append(
        {"destination": "/tmp/data", "type": "bind", "source": str(host_dir), "options": ["rbind"]}
    )
    # A throttle rule no workload reaches. Since Linux 6.10 a disk's v1
    # blkio counters stay at zero until some cgroup sets a throttle rule on
    # it (the throttle layer, which counts, is only set up then); on v2 the
    # counters never need it. It makes the figures real on either kernel.
    major, minor = device
    rule = [{"major": major, "minor": minor, "rate": 1 << 40}]
    spec["linux"]["resources"]["blockIO"] = {
        "throttleReadBpsDevice": rule,
        "throttleWriteBpsDevice": rule,
    }
    return spec


async def test_a_busy_task_shows_cpu_memory_block_io_and_network(
    client: supervisor.Client, rootfs: str, disk_dir: tuple[Path, tuple[int, int]]
) -> None:
    host_dir, device = disk_dir
    script = (
        "dd if=/dev/zero of=/tmp/data/io bs=1M count=8 oflag=direct 2>/dev/null;"
        "dd if=/tmp/data/io of=/dev/null bs=1M iflag=direct 2>/dev/null;"
        "dd if=/dev/zero of=/tmp/fill bs=1M count=24 2>/dev/null;"  # tmpfs: charged memory
        "echo ready; while :; do :; done"
    )
    container = await client.new_container("busy", io_spec(rootfs, script, host_dir, device))
    task = await container.new_task()
    await task.start()
    with anyio.fail_after(60):
        assert await task.stdout.receive() == b"ready\n"
    first = await task.stats()
    await anyio.sleep(0.5)
    s = await task.stats()

    version = cgroup_version()
    assert s.cgroup_version == version
    assert s.read_at is not None and first.read_at is not None and s.read_at > first.read_at
    # CPU: the loop runs flat out
    assert s.cpu.total_usage > first.cpu.total_usage > 0
    assert s.system_cpu_usage is not None and s.online_cpus is not None and s.online_cpus >= 1
    percent = s.cpu_percent(first)
    assert percent is not None and percent > 0
    # memory: the 24 MiB file in the tmpfs is charged to the task
    assert s.memory.usage >= 24 * MiB
    assert 0 < s.memory.working_set <= s.memory.usage
    assert s.memory.limit is None and s.memory_percent() is None
    assert s.pids.current >= 1 and s.pids.limit is None
    # block IO: 8 MiB each way on the disk behind the bind mount
    on_disk = [d for d in s.blkio.devices if (d.major, d.minor) == device]
    assert on_disk, s.blkio
    assert on_disk[0].write_bytes >= 8 * MiB and on_disk[0].read_bytes >= 8 * MiB
    assert on_disk[0].write_ops > 0 and on_disk[0].read_ops > 0
    assert s.blkio.write_bytes >= 8 * MiB
    # network: the task has a namespace of its own, with a loopback
    assert s.networks is not None and "lo" in {n.interface for n in s.networks}

    b = s.blkio
    v1_lists = (b.io_queued, b.io_service_time, b.io_wait_time, b.io_merged, b.io_time, b.sectors)
    if version == 1:
        assert s.cpu.per_cpu_usage is not None and sum(s.cpu.per_cpu_usage) > 0
        assert s.memory.max_usage is not None and s.memory.max_usage >= 24 * MiB
        assert s.memory.failcnt == 0
        assert s.memory.kernel_usage is not None
        assert s.memory.events is None
        assert all(listed is not None for listed in v1_lists)
        assert "total_inactive_file" in s.memory.stat
    else:
        assert s.cpu.per_cpu_usage is None
        assert (s.memory.max_usage, s.memory.failcnt, s.memory.kernel_usage) == (None, None, None)
        assert s.memory.events is not None and s.memory.events["oom_kill"] == 0
        assert all(listed is None for listed in v1_lists)
        assert "inactive_file" in s.memory.stat
    await task.delete(force=True)
    await container.delete()


async def test_a_task_on_the_host_network_has_no_network_figures(
    client: supervisor.Client, rootfs: str
) -> None:
    spec = supervisor.default_spec(["sleep", "60"], rootfs)
    namespaces = spec["linux"]["namespaces"]
    spec["linux"]["namespaces"] = [ns for ns in namespaces if ns["type"] != "network"]
    container = await client.new_container("host-net", spec)
    task = await container.new_task()
    await task.start()
    s = await task.stats()
    # its counters would be the host's: not reported as the task's
    assert s.networks is None
    assert s.pids.current >= 1
    await task.delete(force=True)
    await container.delete()


async def test_updated_limits_read_back_in_the_next_sample(
    client: supervisor.Client, rootfs: str
) -> None:
    spec = supervisor.default_spec(["sh", "-c", "while :; do :; done"], rootfs)
    container = await client.new_container("limits", spec)
    task = await container.new_task()
    await task.start()
    before = await task.stats()
    assert (before.memory.limit, before.pids.limit) == (None, None)
    assert before.cpu.throttled_periods == 0
    await task.update_resources(
        {
            "memory": {"limit": 48 * MiB},
            "pids": {"limit": 40},
            "cpu": {"quota": 10_000, "period": 100_000},  # a tenth of a CPU
        }
    )
    after = await task.stats()
    assert after.memory.limit == 48 * MiB
    assert after.memory_percent() == pytest.approx(after.memory.working_set / (48 * MiB) * 100)
    assert after.pids.limit == 40
    # The quota is not among the metrics; the throttling it causes is.
    with anyio.fail_after(30):
        async for sample in task.stats_stream(0.2):
            if sample.cpu.throttled_periods > 0:
                break
    assert sample.cpu.periods >= sample.cpu.throttled_periods > 0
    assert sample.cpu.throttled_time > 0
    await task.delete(force=True)
    await container.delete()


async def _start(client: supervisor.Client, rootfs: str, cid: str) -> supervisor.Task:
    container = await client.new_container(cid, supervisor.default_spec(["sleep", "60"], rootfs))
    task = await container.new_task()
    await task.start()
    return task


async def test_three_streamed_tasks_cost_one_metrics_call_per_interval(
    client: supervisor.Client, rootfs: str
) -> None:
    from grpclib.events import SendMessage, SendRequest, listen

    tasks = [await _start(client, rootfs, f"streamed-{i}") for i in range(3)]
    interval = 0.3
    calls: list[float] = []
    asked: list[set[str]] = []

    async def on_request(event: SendRequest) -> None:
        if event.method_name.endswith("/Metrics"):
            calls.append(anyio.current_time())

    async def on_message(event: SendMessage) -> None:
        if isinstance(event.message, pb_tasks.MetricsRequest):
            asked.append({f.removeprefix("id==") for f in event.message.filters})

    channel = client._session.raw_transport._channel  # type: ignore[attr-defined]
    listen(channel, SendRequest, on_request)
    listen(channel, SendMessage, on_message)
    got: dict[str, int] = {}

    async def read(task: supervisor.Task) -> None:
        n = 0
        async for sample in task.stats_stream(interval):
            assert sample.pids.current >= 1
            n += 1
            if n == 4:
                break
        got[task.container.id] = n

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for task in tasks:
                tg.start_soon(read, task)
    assert got == {f"streamed-{i}": 4 for i in range(3)}
    ids = {t.container.id for t in tasks}
    # One call a round, each for every stream: 12 samples, at most one call
    # per interval that passed (a naive stream would make 12).
    assert len(calls) == len(asked)
    assert len(calls) <= (calls[-1] - calls[0]) / interval + 2
    assert len(calls) < 12
    assert asked[0] == ids  # opened together: the first round serves all three
    assert all(a <= ids for a in asked)
    assert client._session.stats_sampler.waiting == 0  # type: ignore[attr-defined]
    for task in tasks:
        await task.delete(force=True)
        await task.container.delete()


@pytest.mark.parametrize("events", [True, False], ids=["events", "no-events"])
async def test_a_stream_ends_when_its_task_exits(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, events: bool
) -> None:
    # With events the client learns of the exit from the stream; without,
    # the stream sees a cgroup with no process left and asks containerd.
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir, events=events
    ) as c:
        task = await _start(c, rootfs, "ends")
        stream = task.stats_stream(0.2)
        with anyio.fail_after(30):
            first = await stream.__anext__()
            assert first.pids.current >= 1
            await task.kill(signal.SIGKILL)
            after = [s async for s in stream]
        # at most the samples taken before the exit was known, never an empty cgroup
        assert all(s.pids.current >= 1 for s in after)
        assert (await task.wait()).exit_code == 137
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        # a stream opened on a stopped task ends at once
        with anyio.fail_after(30):
            assert [s async for s in task.stats_stream(0.2)] == []
        await task.delete()
        await task.container.delete()
