"""A blocking way to containerd for short-lived commands and test set-up.

``supervisor ps`` runs in loops: importing asyncio, grpclib and the generated
bindings costs several times what the listing itself does. This package
reads containerd's List replies over one blocking socket, with a hand-written
HTTP/2 client and protobuf reader, and returns the same records the grpclib
transport does (their meaning is decided once, in ``backends._records``).
It also lists, creates and deletes namespaces, which an application never
does (it works in the one it is given) but the pytest plugin must, from
threads outside any event loop. Unix sockets only; everything else goes
through :class:`~supervisor.backends.containerd.ContainerdTransport`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ... import errors
from ..._types import ContainerRecord, TaskRecord
from .._wire import MalformedReply, len_field, text_field
from ._channel import Channel
from ._messages import (
    ListedImage,
    containers_reply,
    images_reply,
    namespace_message,
    namespaces_reply,
    tasks_reply,
)

__all__ = [
    "Channel",
    "create_namespace",
    "delete_namespace",
    "list_containers",
    "list_images",
    "list_namespaces",
    "list_tasks",
]

_LIST_CONTAINERS = "/containerd.services.containers.v1.Containers/List"
_LIST_TASKS = "/containerd.services.tasks.v1.Tasks/List"
_LIST_IMAGES = "/containerd.services.images.v1.Images/List"
_NAMESPACES = "/containerd.services.namespaces.v1.Namespaces/"

_T = TypeVar("_T")


def list_containers(channel: Channel) -> list[ContainerRecord]:
    """Every container of the channel's namespace (``Containers/List``)."""
    return _listed(channel, _LIST_CONTAINERS, containers_reply)


def list_tasks(channel: Channel) -> list[TaskRecord]:
    """Every task of the channel's namespace (``Tasks/List``)."""
    return _listed(channel, _LIST_TASKS, tasks_reply)


def list_images(channel: Channel) -> list[ListedImage]:
    """Every image of the channel's namespace (``Images/List``)."""
    return _listed(channel, _LIST_IMAGES, images_reply)


def list_namespaces(channel: Channel) -> dict[str, dict[str, str]]:
    """Every namespace of containerd, with its labels."""
    return _listed(channel, _NAMESPACES + "List", namespaces_reply)


def create_namespace(channel: Channel, name: str, labels: dict[str, str]) -> None:
    """Create a namespace.

    Raises:
        AlreadyExists: it exists. InvalidArgument: not a valid name or label.
    """
    channel.call(_NAMESPACES + "Create", len_field(1, namespace_message(name, labels)))


def delete_namespace(channel: Channel, name: str) -> None:
    """Delete an empty namespace.

    Raises:
        NotFound: there is none by that name. FailedPrecondition: it still
            holds containers, images or other resources.
    """
    channel.call(_NAMESPACES + "Delete", text_field(1, name))


def _listed(channel: Channel, method: str, decode: Callable[[bytes], _T]) -> _T:
    reply = channel.call(method, b"")
    try:
        return decode(reply)
    except MalformedReply as exc:
        # As over grpclib: a reply that arrived whole but does not decode is
        # no outage (retrying cannot help), so it is Unknown, cause chained.
        raise errors.Unknown(
            f"containerd at {channel.address} sent a reply that does not decode: {exc}"
        ) from exc
