"""Tasks.Create's request, for a new task and for one restored from a checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._proto.containerd import types as pb_types
from .._proto.containerd.services.tasks import v1 as pb_tasks
from .._types import StdioPaths
from ..oci._types import Mount

__all__ = ["create_task_request"]


def create_task_request(
    container_id: str, stdio: StdioPaths, rootfs: Sequence[Mount], **extra: Any
) -> pb_tasks.CreateTaskRequest:
    """Tasks.Create's request for a task with this stdio on these mounts
    (``extra``: more of the request's fields, e.g. ``checkpoint``)."""
    mounts = [
        pb_types.Mount(type=m.type, source=m.source, target=m.target, options=list(m.options))
        for m in rootfs
    ]
    return pb_tasks.CreateTaskRequest(
        container_id=container_id,
        rootfs=mounts,
        stdin=stdio.stdin,
        stdout=stdio.stdout,
        stderr=stdio.stderr,
        terminal=stdio.terminal,
        **extra,
    )
