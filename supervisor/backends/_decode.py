"""containerd's messages decoded into the library's own values, at the edge.

Only the containerd backend imports this module; nothing it returns is a
generated class.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .. import errors
from .._proto.containerd import events as pb_events
from .._proto.containerd.services.containers import v1 as pb_containers
from .._proto.containerd.services.events import v1 as pb_eventsvc
from .._proto.containerd.v1 import types as pb_types
from .._proto.google.protobuf import Any as PbAny
from .._proto.io.containerd.cgroups import v1 as pb_cg1
from .._proto.io.containerd.cgroups import v2 as pb_cg2
from .._types import (
    ContainerRecord,
    CpuStats,
    ExitStatus,
    MemoryStats,
    PidsStats,
    ProcessState,
    Stats,
    StdioPaths,
    TaskEvent,
    TaskRecord,
    Topic,
)
from .base import Sync

__all__ = [
    "SYNC_TYPE_URL",
    "container_record",
    "decode_event",
    "decode_stats",
    "exit_status",
    "task_record",
]

SYNC_TYPE_URL = "containerd-supervisor.Sync"

_STATES = {
    pb_types.Status.UNKNOWN: ProcessState.UNKNOWN,
    pb_types.Status.CREATED: ProcessState.CREATED,
    pb_types.Status.RUNNING: ProcessState.RUNNING,
    pb_types.Status.STOPPED: ProcessState.STOPPED,
    pb_types.Status.PAUSED: ProcessState.PAUSED,
    pb_types.Status.PAUSING: ProcessState.PAUSING,
}

# containerd names event payloads by their bare proto name; the topic alone
# does not say which message the bytes are.
_EVENT_TYPES: dict[str, tuple[Topic, type[Any]]] = {
    "containerd.events.TaskCreate": (Topic.CREATE, pb_events.TaskCreate),
    "containerd.events.TaskStart": (Topic.START, pb_events.TaskStart),
    "containerd.events.TaskExit": (Topic.EXIT, pb_events.TaskExit),
    "containerd.events.TaskDelete": (Topic.DELETE, pb_events.TaskDelete),
    "containerd.events.TaskOOM": (Topic.OOM, pb_events.TaskOom),
    "containerd.events.TaskExecAdded": (Topic.EXEC_ADDED, pb_events.TaskExecAdded),
    "containerd.events.TaskExecStarted": (Topic.EXEC_STARTED, pb_events.TaskExecStarted),
    "containerd.events.TaskPaused": (Topic.PAUSED, pb_events.TaskPaused),
    "containerd.events.TaskResumed": (Topic.RESUMED, pb_events.TaskResumed),
}


def exit_status(code: int, at: datetime | None) -> ExitStatus:
    return ExitStatus(exit_code=code, exited_at=at)


def task_record(p: pb_types.Process, container_id: str = "", exec_id: str = "") -> TaskRecord:
    # containerd 1.6 leaves container_id empty in List and puts the container
    # id in `id` (the exec id for an exec's Get): trust what the call asked for.
    state = _STATES.get(p.status, ProcessState.UNKNOWN)
    cid = container_id or p.container_id or p.id
    return TaskRecord(
        container_id=cid,
        process_id=exec_id or cid,
        pid=p.pid,
        state=state,
        stdio=StdioPaths(p.stdin, p.stdout, p.stderr, p.terminal),
        exit_status=exit_status(p.exit_status, p.exited_at)
        if state is ProcessState.STOPPED
        else None,
    )


def container_record(c: pb_containers.Container) -> ContainerRecord:
    spec: dict[str, Any] = {}
    if c.spec is not None and c.spec.value:
        try:
            loaded = json.loads(c.spec.value)
        except (ValueError, RecursionError):
            loaded = None
        # Another client may have stored anything; a spec we cannot read is
        # treated as none rather than failing every listing.
        if isinstance(loaded, dict):
            spec = loaded
    return ContainerRecord(
        id=c.id,
        spec=spec,
        runtime=c.runtime.name if c.runtime is not None else "",
        labels=dict(c.labels),
        created_at=c.created_at,
    )


def _stats_v1(value: bytes) -> Stats:
    m = pb_cg1.Metrics.parse(value)
    mem = m.memory.usage if m.memory is not None else None
    cpu = m.cpu.usage if m.cpu is not None else None
    thr = m.cpu.throttling if m.cpu is not None else None
    blk = m.blkio.io_service_bytes_recursive if m.blkio is not None else []
    return Stats(
        memory=MemoryStats(
            usage=mem.usage if mem else 0,
            limit=mem.limit if mem else 0,
            max_usage=mem.max if mem else 0,
            failcnt=mem.failcnt if mem else 0,
            cache=m.memory.cache if m.memory is not None else 0,
            rss=m.memory.rss if m.memory is not None else 0,
        ),
        cpu=CpuStats(
            total_usage=cpu.total if cpu else 0,
            kernel_usage=cpu.kernel if cpu else 0,
            user_usage=cpu.user if cpu else 0,
            per_cpu_usage=tuple(cpu.per_cpu) if cpu else (),
            throttled_periods=thr.throttled_periods if thr else 0,
            throttled_time=thr.throttled_time if thr else 0,
        ),
        pids=PidsStats(
            current=m.pids.current if m.pids else 0, limit=m.pids.limit if m.pids else 0
        ),
        cgroup_version=1,
        blkio_service_bytes=tuple((f"{e.major}:{e.minor}:{e.op}", e.value) for e in blk),
    )


def _stats_v2(value: bytes) -> Stats:
    m = pb_cg2.Metrics.parse(value)
    mem = m.memory
    cpu = m.cpu
    io = m.io.usage if m.io is not None else []
    return Stats(
        memory=MemoryStats(
            usage=mem.usage if mem else 0,
            limit=mem.usage_limit if mem else 0,
            failcnt=m.memory_events.oom if m.memory_events is not None else 0,
            cache=mem.file if mem else 0,
            rss=mem.anon if mem else 0,
        ),
        cpu=CpuStats(
            total_usage=cpu.usage_usec * 1000 if cpu else 0,
            kernel_usage=cpu.system_usec * 1000 if cpu else 0,
            user_usage=cpu.user_usec * 1000 if cpu else 0,
            throttled_periods=cpu.nr_throttled if cpu else 0,
            throttled_time=cpu.throttled_usec * 1000 if cpu else 0,
        ),
        pids=PidsStats(
            current=m.pids.current if m.pids else 0, limit=m.pids.limit if m.pids else 0
        ),
        cgroup_version=2,
        blkio_service_bytes=tuple(
            item
            for e in io
            for item in (
                (f"{e.major}:{e.minor}:Read", e.rbytes),
                (f"{e.major}:{e.minor}:Write", e.wbytes),
            )
        ),
    )


_STATS_DECODERS = {
    "io.containerd.cgroups.v1.Metrics": _stats_v1,
    "io.containerd.cgroups.v2.Metrics": _stats_v2,
}


def decode_stats(data: PbAny) -> Stats:
    """A cgroup v1 or v2 metrics payload as :class:`Stats`."""
    decoder = _STATS_DECODERS.get(data.type_url.rsplit("/", 1)[-1])
    if decoder is None:
        raise errors.Unknown(f"unexpected metrics type {data.type_url!r}")
    return decoder(data.value)


def decode_event(envelope: pb_eventsvc.Envelope) -> TaskEvent | Sync | None:
    """One envelope off the stream; ``None`` for types this library ignores."""
    event = envelope.event
    if event is None:
        return None
    if event.type_url == SYNC_TYPE_URL:
        return Sync(event.value.decode(errors="replace"))
    known = _EVENT_TYPES.get(event.type_url)
    if known is None:
        return None
    topic, cls = known
    msg = cls.parse(event.value)
    cid: str = msg.container_id
    ns, stamp = envelope.namespace, envelope.timestamp
    if topic is Topic.EXIT or topic is Topic.DELETE:
        return TaskEvent(
            ns, topic, cid, msg.id or cid, msg.pid, msg.exit_status, msg.exited_at, stamp
        )
    if topic is Topic.EXEC_ADDED or topic is Topic.EXEC_STARTED:
        return TaskEvent(ns, topic, cid, msg.exec_id, getattr(msg, "pid", 0), timestamp=stamp)
    return TaskEvent(ns, topic, cid, cid, getattr(msg, "pid", 0), timestamp=stamp)
