"""A blocking, read-only way to containerd for short-lived commands.

``supervisor ps`` runs in loops: importing asyncio, grpclib and the generated
bindings costs several times what the listing itself does. This package
reads containerd's List replies over one blocking socket, with a hand-written
HTTP/2 client and protobuf reader, and returns the same records the grpclib
transport does (their meaning is decided once, in ``backends._records``).
Unix sockets only; everything else goes through
:class:`~supervisor.backends.containerd.ContainerdTransport`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ... import errors
from ..._types import ContainerRecord, TaskRecord
from ._channel import Channel
from ._messages import containers_reply, tasks_reply
from ._wire import MalformedReply

__all__ = ["Channel", "list_containers", "list_tasks"]

_LIST_CONTAINERS = "/containerd.services.containers.v1.Containers/List"
_LIST_TASKS = "/containerd.services.tasks.v1.Tasks/List"

_T = TypeVar("_T")


def list_containers(channel: Channel) -> list[ContainerRecord]:
    """Every container of the channel's namespace (``Containers/List``)."""
    return _listed(channel, _LIST_CONTAINERS, containers_reply)


def list_tasks(channel: Channel) -> list[TaskRecord]:
    """Every task of the channel's namespace (``Tasks/List``)."""
    return _listed(channel, _LIST_TASKS, tasks_reply)


def _listed(channel: Channel, method: str, decode: Callable[[bytes], list[_T]]) -> list[_T]:
    reply = channel.call(method, b"")
    try:
        return decode(reply)
    except MalformedReply as exc:
        raise errors.Unavailable(
            f"containerd at {channel.address} sent a reply that does not decode: {exc}"
        ) from None
