"""containerd's messages for the blocking reader, on and off the wire.

Field numbers are those of containerd's ``containers.proto``,
``types/task/task.proto`` and ``namespace.proto``; what the container and task
fields mean is :mod:`.._records`'s, shared with the grpclib transport.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from ..._types import ContainerRecord, StdioPaths, TaskRecord
from .. import _records
from .._wire import fields, int64, len_field, number, raw, text, text_field, timestamp

__all__ = [
    "ListedImage",
    "containers_reply",
    "images_reply",
    "namespace_message",
    "namespaces_reply",
    "tasks_reply",
]


def _pair(entry: bytes) -> tuple[str, str]:
    key = value = ""
    for num, _, field in fields(entry):
        if num == 1:
            key = text(field)
        elif num == 2:
            value = text(field)
    return key, value


def _runtime_name(message: bytes) -> str:
    name = ""
    for num, _, field in fields(message):
        if num == 1:
            name = text(field)
    return name


def _any_value(message: bytes) -> bytes:
    value = b""
    for num, _, field in fields(message):
        if num == 2:
            value = raw(field)
    return value


def _container(message: bytes) -> ContainerRecord:
    id = image = runtime = snapshotter = snapshot_key = ""
    spec = b""
    labels: dict[str, str] = {}
    created_at: datetime | None = None
    for num, _, field in fields(message):
        if num == 1:
            id = text(field)
        elif num == 2:
            key, value = _pair(raw(field))
            labels[key] = value
        elif num == 3:
            image = text(field)
        elif num == 4:
            runtime = _runtime_name(raw(field))
        elif num == 5:
            spec = _any_value(raw(field))
        elif num == 6:
            snapshotter = text(field)
        elif num == 7:
            snapshot_key = text(field)
        elif num == 8:
            created_at = timestamp(field)
    return _records.container_record(
        id=id,
        image=image,
        spec=spec,
        runtime=runtime,
        labels=labels,
        created_at=created_at,
        snapshotter=snapshotter,
        snapshot_key=snapshot_key,
    )


def _process(message: bytes) -> TaskRecord:
    container_id = id = stdin = stdout = stderr = ""
    pid = status = exit_code = 0
    terminal = False
    exited_at: datetime | None = None
    for num, _, field in fields(message):
        if num == 1:
            container_id = text(field)
        elif num == 2:
            id = text(field)
        elif num == 3:
            pid = number(field) & 0xFFFFFFFF
        elif num == 4:
            status = number(field) & 0xFFFFFFFF
        elif num == 5:
            stdin = text(field)
        elif num == 6:
            stdout = text(field)
        elif num == 7:
            stderr = text(field)
        elif num == 8:
            terminal = number(field) != 0
        elif num == 9:
            exit_code = number(field) & 0xFFFFFFFF
        elif num == 10:
            exited_at = timestamp(field)
    return _records.task_record(
        container_id=container_id,
        id=id,
        pid=pid,
        status=status,
        stdio=StdioPaths(stdin, stdout, stderr, terminal),
        exit_code=exit_code,
        exited_at=exited_at,
    )


def containers_reply(message: bytes) -> list[ContainerRecord]:
    """A ``ListContainersResponse``: its containers, in containerd's order."""
    return [_container(raw(field)) for num, _, field in fields(message) if num == 1]


def tasks_reply(message: bytes) -> list[TaskRecord]:
    """A ``ListTasksResponse``: its tasks, in containerd's order."""
    return [_process(raw(field)) for num, _, field in fields(message) if num == 1]


def namespaces_reply(message: bytes) -> dict[str, dict[str, str]]:
    """A ``ListNamespacesResponse``: each namespace's labels by its name."""
    found: dict[str, dict[str, str]] = {}
    for num, _, field in fields(message):
        if num != 1:
            continue
        name, labels = "", {}
        for inner, _, value in fields(raw(field)):
            if inner == 1:
                name = text(value)
            elif inner == 2:
                key, label = _pair(raw(value))
                labels[key] = label
        found[name] = labels
    return found


def namespace_message(name: str, labels: dict[str, str]) -> bytes:
    """A ``Namespace``: its name and labels."""
    entries = b"".join(
        len_field(2, text_field(1, key) + text_field(2, value)) for key, value in labels.items()
    )
    return text_field(1, name) + entries


class ListedImage(NamedTuple):
    """One image as ``Images/List`` gives it (what ``supervisor images`` shows)."""

    name: str
    digest: str
    media_type: str
    size: int
    labels: dict[str, str]
    created_at: datetime | None


def _image(message: bytes) -> ListedImage:
    # images.v1.Image: name 1, labels 2, target 3 (a types.Descriptor:
    # media type 1, digest 2, size 3), created_at 7.
    name = media_type = digest = ""
    size = 0
    labels: dict[str, str] = {}
    created_at = None
    for num, _, field in fields(message):
        if num == 1:
            name = text(field)
        elif num == 2:
            key, label = _pair(raw(field))
            labels[key] = label
        elif num == 3:
            for inner, _, part in fields(raw(field)):
                if inner == 1:
                    media_type = text(part)
                elif inner == 2:
                    digest = text(part)
                elif inner == 3:
                    size = int64(part)
        elif num == 7:
            created_at = timestamp(field)
    return ListedImage(name, digest, media_type, size, labels, created_at)


def images_reply(reply: bytes) -> list[ListedImage]:
    """An ``Images/List`` reply."""
    return [_image(raw(field)) for num, _, field in fields(reply) if num == 1]
