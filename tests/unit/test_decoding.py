"""Decoding at the transport edge: errors, events, metrics."""

from __future__ import annotations

import datetime

import grpclib.exceptions
import pytest
from grpclib.const import Status

from supervisor import errors
from supervisor._proto.containerd import events as pb_events
from supervisor._proto.containerd.services.events import v1 as pb_eventsvc
from supervisor._proto.google.protobuf import Any as PbAny
from supervisor._proto.io.containerd.cgroups import v1 as cg1
from supervisor._proto.io.containerd.cgroups import v2 as cg2
from supervisor._types import Topic
from supervisor.backends.base import Sync
from supervisor.backends.containerd import (
    SYNC_TYPE_URL,
    decode_event,
    decode_stats,
    map_grpc_errors,
)
from supervisor.stats._model import BlkioDevice, BlkioEntry, CpuStats, Stats


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (Status.NOT_FOUND, errors.NotFound),
        (Status.ALREADY_EXISTS, errors.AlreadyExists),
        (Status.INVALID_ARGUMENT, errors.InvalidArgument),
        (Status.FAILED_PRECONDITION, errors.FailedPrecondition),
        (Status.UNAVAILABLE, errors.Unavailable),
        (Status.CANCELLED, errors.Cancelled),
        (Status.DEADLINE_EXCEEDED, errors.DeadlineExceeded),
        (Status.UNKNOWN, errors.Unknown),
        (Status.INTERNAL, errors.Unknown),
        (Status.PERMISSION_DENIED, errors.Unknown),
    ],
)
def test_every_status_maps_to_one_class(status: Status, cls: type[Exception]) -> None:
    with pytest.raises(cls) as caught, map_grpc_errors("c1", "e1"):
        raise grpclib.exceptions.GRPCError(status, "containerd says no")
    assert type(caught.value) is cls
    assert isinstance(caught.value, errors.SupervisorError)
    assert caught.value.message == "containerd says no"
    assert (caught.value.container_id, caught.value.process_id) == ("c1", "e1")
    assert "containerd says no" in str(caught.value)


def test_every_grpc_status_is_a_supervisor_error() -> None:
    for status in Status:
        if status is Status.OK:
            continue
        with pytest.raises(errors.SupervisorError), map_grpc_errors():
            raise grpclib.exceptions.GRPCError(status, "x")


@pytest.mark.parametrize(
    "exc",
    [ConnectionRefusedError(), FileNotFoundError(), grpclib.exceptions.StreamTerminatedError()],
)
def test_transport_failures_are_unavailable(exc: Exception) -> None:
    with pytest.raises(errors.Unavailable), map_grpc_errors():
        raise exc


def _envelope(type_url: str, value: bytes) -> pb_eventsvc.Envelope:
    return pb_eventsvc.Envelope(
        namespace="ns", topic="/tasks/x", event=PbAny(type_url=type_url, value=value)
    )


def test_decode_exit_of_exec_and_init() -> None:
    at = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    exec_exit = pb_events.TaskExit(container_id="c", id="e", pid=5, exit_status=3, exited_at=at)
    ev = decode_event(_envelope("containerd.events.TaskExit", bytes(exec_exit)))
    assert ev is not None and not isinstance(ev, Sync)
    assert (ev.topic, ev.container_id, ev.process_id, ev.pid, ev.exit_code) == (
        Topic.EXIT,
        "c",
        "e",
        5,
        3,
    )
    assert ev.exited_at == at
    init_exit = pb_events.TaskExit(container_id="c", id="c", pid=4)
    ev = decode_event(_envelope("containerd.events.TaskExit", bytes(init_exit)))
    assert ev is not None and not isinstance(ev, Sync) and ev.process_id == "c"


def test_decode_oom_exec_started_sync_and_unknown() -> None:
    ev = decode_event(
        _envelope("containerd.events.TaskOOM", bytes(pb_events.TaskOom(container_id="c")))
    )
    assert ev is not None and not isinstance(ev, Sync)
    assert (ev.topic, ev.process_id) == (Topic.OOM, "c")
    started = pb_events.TaskExecStarted(container_id="c", exec_id="e", pid=9)
    ev = decode_event(_envelope("containerd.events.TaskExecStarted", bytes(started)))
    assert ev is not None and not isinstance(ev, Sync)
    assert (ev.topic, ev.process_id, ev.pid) == (Topic.EXEC_STARTED, "e", 9)
    assert decode_event(_envelope(SYNC_TYPE_URL, b"tok")) == Sync("tok")
    assert decode_event(_envelope("containerd.events.ImageCreate", b"")) is None


def _entries(op_values: dict[str, int], major: int = 8, minor: int = 0) -> list[cg1.BlkIoEntry]:
    return [cg1.BlkIoEntry(op=op, major=major, minor=minor, value=v) for op, v in op_values.items()]


def _v1_message() -> cg1.Metrics:
    rw = {"Read": 1, "Write": 2, "Sync": 3, "Async": 0, "Discard": 0, "Total": 3}
    return cg1.Metrics(
        memory=cg1.MemoryStat(
            cache=7,
            rss=8,
            total_cache=30 << 20,
            total_rss=20 << 20,
            total_inactive_file=10 << 20,
            pg_fault=99,
            total_pg_maj_fault=5,
            hierarchical_swap_limit=1 << 63,
            usage=cg1.MemoryEntry(usage=60 << 20, limit=64 << 20, max=63 << 20, failcnt=4),
            swap=cg1.MemoryEntry(usage=(60 << 20) + 4096),
            kernel=cg1.MemoryEntry(usage=1 << 20),
        ),
        memory_oom_control=cg1.MemoryOomControl(oom_kill=2),
        cpu=cg1.CpuStat(
            usage=cg1.CpuUsage(total=5000, kernel=1000, user=4000, per_cpu=[1000, 4000]),
            throttling=cg1.Throttle(periods=10, throttled_periods=3, throttled_time=777),
        ),
        pids=cg1.PidsStat(current=3, limit=0),
        blkio=cg1.BlkIoStat(
            io_service_bytes_recursive=_entries({"Read": 4096, "Write": 8192, "Total": 12288})
            + _entries({"Read": 1, "Write": 0}, 253, 1),
            io_serviced_recursive=_entries({"Read": 1, "Write": 2, "Total": 3}),
            io_queued_recursive=_entries(rw),
            io_service_time_recursive=_entries(rw),
            io_wait_time_recursive=_entries(rw),
            io_merged_recursive=_entries(rw),
            io_time_recursive=[cg1.BlkIoEntry(major=8, minor=0, value=11)],
            sectors_recursive=[cg1.BlkIoEntry(major=8, minor=0, value=24)],
        ),
    )


def _decode(url: str, message: cg1.Metrics | cg2.Metrics) -> Stats:
    return decode_stats(PbAny(type_url=url, value=bytes(message)))


def test_decode_cgroup_v1_metrics_keeps_everything() -> None:
    at = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    raw = PbAny(type_url="io.containerd.cgroups.v1.Metrics", value=bytes(_v1_message()))
    s = decode_stats(raw, at)
    assert (s.cgroup_version, s.read_at) == (1, at)
    mem = s.memory
    assert (mem.usage, mem.limit, mem.max_usage, mem.failcnt) == (60 << 20, 64 << 20, 63 << 20, 4)
    # docker's working set: usage less the inactive page cache
    assert mem.working_set == 50 << 20
    assert (mem.cache, mem.rss) == (30 << 20, 20 << 20)  # the hierarchical totals
    assert (mem.swap, mem.kernel_usage, mem.oom_kills, mem.events) == (4096, 1 << 20, 2, None)
    assert mem.stat["total_inactive_file"] == 10 << 20
    assert (mem.stat["cache"], mem.stat["pgfault"], mem.stat["total_pgmajfault"]) == (7, 99, 5)
    assert mem.stat["hierarchical_memsw_limit"] == 1 << 63
    assert len(mem.stat) == 32
    assert s.cpu == CpuStats(
        total_usage=5000,
        kernel_usage=1000,
        user_usage=4000,
        per_cpu_usage=(1000, 4000),
        periods=10,
        throttled_periods=3,
        throttled_time=777,
    )
    assert (s.pids.current, s.pids.limit) == (3, None)  # "max" comes as 0
    b = s.blkio
    assert b.devices == (
        BlkioDevice(8, 0, read_bytes=4096, write_bytes=8192, read_ops=1, write_ops=2),
        BlkioDevice(253, 1, read_bytes=1, write_bytes=0),
    )
    assert (b.read_bytes, b.write_bytes) == (4097, 8192)
    assert BlkioEntry(8, 0, "Total", 12288) in b.io_service_bytes
    for listed in (b.io_queued, b.io_service_time, b.io_wait_time, b.io_merged):
        assert listed is not None and [e.op for e in listed] == list(
            ["Read", "Write", "Sync", "Async", "Discard", "Total"]
        )
    assert b.io_time == (BlkioEntry(8, 0, "", 11),)
    assert b.sectors == (BlkioEntry(8, 0, "", 24),)
    assert s.system_cpu_usage is None and s.networks is None  # host figures come later


def test_decode_cgroup_v1_unlimited_and_without_swap_accounting() -> None:
    m = cg1.Metrics(
        memory=cg1.MemoryStat(
            total_inactive_file=5 << 20,
            usage=cg1.MemoryEntry(usage=4 << 20, limit=0x7FFFFFFFFFFFF000),
            swap=cg1.MemoryEntry(),  # no memsw files: zeros
        ),
        pids=cg1.PidsStat(current=1, limit=0),
    )
    s = _decode("io.containerd.cgroups.v1.Metrics", m)
    assert s.memory.limit is None and s.memory_percent() is None
    assert s.memory.swap is None
    assert s.memory.working_set == 4 << 20  # more inactive cache than usage: nothing off
    assert s.memory.oom_kills is None  # no oom_control in the message
    assert s.pids.limit is None
    # an empty block-IO section still has v1's lists, empty
    assert s.blkio.devices == () and s.blkio.io_queued == () and s.blkio.sectors == ()


def test_decode_cgroup_v2_metrics() -> None:
    m = cg2.Metrics(
        memory=cg2.MemoryStat(
            usage=100 << 20,
            usage_limit=200 << 20,
            anon=60 << 20,
            file=40 << 20,
            inactive_file=30 << 20,
            slab=3,
            pgmajfault=4,
            swap_usage=4096,
        ),
        memory_events=cg2.MemoryEvents(max=5, oom=2, oom_kill=1),
        cpu=cg2.CpuStat(
            usage_usec=5, user_usec=3, system_usec=2, nr_periods=9, nr_throttled=4, throttled_usec=7
        ),
        pids=cg2.PidsStat(current=4, limit=100),
        io=cg2.IoStat(
            usage=[
                cg2.IoEntry(major=254, minor=0, rbytes=4096, wbytes=8192, rios=1, wios=2),
                cg2.IoEntry(major=8, minor=16, rbytes=1, wbytes=2, rios=3, wios=4),
            ]
        ),
    )
    s = _decode("io.containerd.cgroups.v2.Metrics", m)
    assert s.cgroup_version == 2
    mem = s.memory
    assert (mem.usage, mem.limit, mem.working_set) == (100 << 20, 200 << 20, 70 << 20)
    assert (mem.cache, mem.rss, mem.swap, mem.oom_kills) == (40 << 20, 60 << 20, 4096, 1)
    assert mem.events == {"low": 0, "high": 0, "max": 5, "oom": 2, "oom_kill": 1}
    assert (mem.stat["slab"], mem.stat["pgmajfault"], mem.stat["inactive_file"]) == (3, 4, 30 << 20)
    assert "usage" not in mem.stat and len(mem.stat) == 31
    assert s.memory_percent() == 35.0
    # microseconds become nanoseconds
    assert (s.cpu.total_usage, s.cpu.user_usage, s.cpu.kernel_usage) == (5000, 3000, 2000)
    assert (s.cpu.periods, s.cpu.throttled_periods, s.cpu.throttled_time) == (9, 4, 7000)
    assert (s.pids.current, s.pids.limit) == (4, 100)
    assert s.blkio.devices == (
        BlkioDevice(8, 16, read_bytes=1, write_bytes=2, read_ops=3, write_ops=4),
        BlkioDevice(254, 0, read_bytes=4096, write_bytes=8192, read_ops=1, write_ops=2),
    )
    assert s.blkio.io_service_bytes[-2:] == (
        BlkioEntry(254, 0, "Read", 4096),
        BlkioEntry(254, 0, "Write", 8192),
    )
    assert BlkioEntry(8, 16, "Write", 4) in s.blkio.io_serviced


def test_decode_cgroup_v2_leaves_what_v2_lacks_none_not_zero() -> None:
    m = cg2.Metrics(
        memory=cg2.MemoryStat(usage=1, usage_limit=(1 << 64) - 1),  # memory.max "max"
        cpu=cg2.CpuStat(usage_usec=1),
        pids=cg2.PidsStat(current=1, limit=(1 << 64) - 1),
    )
    s = _decode("io.containerd.cgroups.v2.Metrics", m)
    assert s.cpu.per_cpu_usage is None
    assert (s.memory.max_usage, s.memory.failcnt, s.memory.kernel_usage) == (None, None, None)
    assert s.memory.limit is None and s.pids.limit is None
    assert s.memory.oom_kills is None and s.memory.events is None  # no memory.events sent
    b = s.blkio
    assert (b.io_queued, b.io_service_time, b.io_wait_time) == (None, None, None)
    assert (b.io_merged, b.io_time, b.sectors) == (None, None, None)
    assert b.devices == () and b.io_service_bytes == () and b.io_serviced == ()


def test_decode_v1_stays_zero_where_v1_counts_zero() -> None:
    # v1 has per-CPU usage, max usage and failcnt: a real 0 stays 0.
    m = cg1.Metrics(
        memory=cg1.MemoryStat(usage=cg1.MemoryEntry(usage=1, limit=2)),
        cpu=cg1.CpuStat(usage=cg1.CpuUsage(total=1, per_cpu=[0, 1])),
    )
    s = _decode("io.containerd.cgroups.v1.Metrics", m)
    assert (s.memory.max_usage, s.memory.failcnt) == (0, 0)
    assert s.cpu.per_cpu_usage == (0, 1)


def test_unexpected_metrics_type_is_an_error() -> None:
    with pytest.raises(errors.Unknown):
        decode_stats(PbAny(type_url="something.Else", value=b""))
