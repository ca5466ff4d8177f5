"""containerd's fields as the library's records: the rules both decoders share.

:mod:`._decode` reads the generated messages and :mod:`.blocking` reads the
wire bytes by hand; what the fields *mean* (a spec we cannot read, the exit
status of a process that has not stopped, which id names the container) is
decided once, here, so the two can never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .._types import ContainerRecord, ExitStatus, ProcessState, StdioPaths, TaskRecord

__all__ = ["container_record", "task_record"]

# containerd.v1.types.Status, by number
_STATES = (
    ProcessState.UNKNOWN,
    ProcessState.CREATED,
    ProcessState.RUNNING,
    ProcessState.STOPPED,
    ProcessState.PAUSED,
    ProcessState.PAUSING,
)


def _spec(value: bytes) -> dict[str, Any]:
    if not value:
        return {}
    try:
        loaded = json.loads(value)
    except (ValueError, RecursionError):
        return {}
    # Another client may have stored anything; a spec we cannot read is
    # treated as none rather than failing every listing.
    return loaded if isinstance(loaded, dict) else {}


def container_record(
    *,
    id: str,
    spec: bytes,
    runtime: str,
    labels: Mapping[str, str],
    created_at: datetime | None,
    snapshotter: str,
    snapshot_key: str,
    image: str = "",
) -> ContainerRecord:
    """A stored container; ``spec`` is the raw JSON of its ``spec`` Any."""
    return ContainerRecord(
        id=id,
        spec=_spec(spec),
        runtime=runtime,
        labels=dict(labels),
        created_at=created_at,
        snapshotter=snapshotter,
        snapshot_key=snapshot_key,
        image=image,
    )


def task_record(
    *,
    container_id: str,
    id: str,
    pid: int,
    status: int,
    stdio: StdioPaths,
    exit_code: int,
    exited_at: datetime | None,
    asked_container_id: str = "",
    asked_exec_id: str = "",
) -> TaskRecord:
    """A process's state; ``asked_*`` are the ids the call named, if any."""
    # containerd 1.6 leaves container_id empty in List and puts the container
    # id in `id` (the exec id for an exec's Get): trust what the call asked for.
    state = _STATES[status] if 0 <= status < len(_STATES) else ProcessState.UNKNOWN
    cid = asked_container_id or container_id or id
    return TaskRecord(
        container_id=cid,
        process_id=asked_exec_id or cid,
        pid=pid,
        state=state,
        stdio=stdio,
        exit_status=ExitStatus(exit_code=exit_code, exited_at=exited_at)
        if state is ProcessState.STOPPED
        else None,
    )
