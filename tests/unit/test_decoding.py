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


def test_decode_cgroup_v1_metrics() -> None:
    m = cg1.Metrics(
        memory=cg1.MemoryStat(usage=cg1.MemoryEntry(usage=100, limit=200, max=150, failcnt=1)),
        cpu=cg1.CpuStat(usage=cg1.CpuUsage(total=5000, kernel=1000, user=4000, per_cpu=[1, 2])),
        pids=cg1.PidsStat(current=3, limit=10),
    )
    s = decode_stats(PbAny(type_url="io.containerd.cgroups.v1.Metrics", value=bytes(m)))
    assert (s.memory.usage, s.memory.limit, s.memory.max_usage) == (100, 200, 150)
    assert (s.cpu.total_usage, s.cpu.per_cpu_usage, s.pids.current) == (5000, (1, 2), 3)
    assert s.cgroup_version == 1


def test_decode_cgroup_v2_metrics_converts_microseconds() -> None:
    m = cg2.Metrics(
        memory=cg2.MemoryStat(usage=100, usage_limit=200),
        cpu=cg2.CpuStat(usage_usec=5, user_usec=3, system_usec=2),
        pids=cg2.PidsStat(current=4),
    )
    s = decode_stats(PbAny(type_url="io.containerd.cgroups.v2.Metrics", value=bytes(m)))
    assert (s.memory.usage, s.memory.limit) == (100, 200)
    assert (s.cpu.total_usage, s.cpu.user_usage, s.cpu.kernel_usage) == (5000, 3000, 2000)
    assert s.cgroup_version == 2


def test_unexpected_metrics_type_is_an_error() -> None:
    with pytest.raises(errors.Unknown):
        decode_stats(PbAny(type_url="something.Else", value=b""))
