"""containerd's messages decoded into the library's own values, at the edge.

Only the containerd backend imports this module; nothing it returns is a
generated class.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._proto.containerd.services.containers import v1 as pb_containers
from .._proto.containerd.services.events import v1 as pb_eventsvc
from .._proto.containerd.v1 import types as pb_types
from .._proto.google.protobuf import Any as PbAny
from .._types import (
    ContainerRecord,
    ExitStatus,
    StdioPaths,
    TaskEvent,
    TaskRecord,
    Topic,
)
from . import _records
from .base import Sync

if TYPE_CHECKING:
    from ..stats._model import Stats

__all__ = [
    "SYNC_TYPE_URL",
    "container_record",
    "decode_event",
    "decode_stats",
    "exit_status",
    "task_record",
]

SYNC_TYPE_URL = "containerd-supervisor.Sync"

# containerd names event payloads by their bare proto name; the topic alone
# does not say which message the bytes are.
_EVENT_TYPES: dict[str, tuple[Topic, type[Any]]] = {}


def _event_types() -> dict[str, tuple[Topic, type[Any]]]:
    # The event messages load with the first event, not with the transport:
    # a command that only lists containers never needs them.
    if not _EVENT_TYPES:
        from .._proto.containerd import events as pb_events

        _EVENT_TYPES.update(
            {
                "containerd.events.TaskCreate": (Topic.CREATE, pb_events.TaskCreate),
                "containerd.events.TaskStart": (Topic.START, pb_events.TaskStart),
                "containerd.events.TaskExit": (Topic.EXIT, pb_events.TaskExit),
                "containerd.events.TaskDelete": (Topic.DELETE, pb_events.TaskDelete),
                "containerd.events.TaskOOM": (Topic.OOM, pb_events.TaskOom),
                "containerd.events.TaskExecAdded": (Topic.EXEC_ADDED, pb_events.TaskExecAdded),
                "containerd.events.TaskExecStarted": (
                    Topic.EXEC_STARTED,
                    pb_events.TaskExecStarted,
                ),
                "containerd.events.TaskPaused": (Topic.PAUSED, pb_events.TaskPaused),
                "containerd.events.TaskResumed": (Topic.RESUMED, pb_events.TaskResumed),
            }
        )
    return _EVENT_TYPES


def decode_stats(data: PbAny, read_at: datetime | None = None) -> Stats:
    """A metrics payload as :class:`Stats` (the cgroup and hcsshim messages
    load with the first sample)."""
    from ._decode_stats import decode_stats as decode

    return decode(data, read_at)


def exit_status(code: int, at: datetime | None) -> ExitStatus:
    return ExitStatus(exit_code=code, exited_at=at)


def task_record(p: pb_types.Process, container_id: str = "", exec_id: str = "") -> TaskRecord:
    return _records.task_record(
        container_id=p.container_id,
        id=p.id,
        pid=p.pid,
        status=int(p.status),
        stdio=StdioPaths(p.stdin, p.stdout, p.stderr, p.terminal),
        exit_code=p.exit_status,
        exited_at=p.exited_at,
        asked_container_id=container_id,
        asked_exec_id=exec_id,
    )


def container_record(c: pb_containers.Container) -> ContainerRecord:
    return _records.container_record(
        id=c.id,
        spec=c.spec.value if c.spec is not None else b"",
        runtime=c.runtime.name if c.runtime is not None else "",
        labels=c.labels,
        created_at=c.created_at,
        snapshotter=c.snapshotter,
        snapshot_key=c.snapshot_key,
        image=c.image,
    )


def decode_event(envelope: pb_eventsvc.Envelope) -> TaskEvent | Sync | None:
    """One envelope off the stream; ``None`` for types this library ignores."""
    event = envelope.event
    if event is None:
        return None
    if event.type_url == SYNC_TYPE_URL:
        return Sync(event.value.decode(errors="replace"))
    known = _event_types().get(event.type_url)
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
