"""The seam between the domain objects and a way of reaching containerd.

A :class:`Transport` is bound to one containerd namespace and speaks in the
library's own values (:mod:`supervisor._types`), never in generated protobuf
classes; every failure it raises is a :class:`supervisor.errors.SupervisorError`.
The containerd-over-grpclib implementation is :mod:`supervisor.backends.containerd`;
:mod:`supervisor.backends.fake` is an in-memory stand-in for unit tests.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .._types import (
    ContainerRecord,
    ExitStatus,
    ProcessInfo,
    StdioPaths,
    TaskEvent,
    TaskRecord,
    Topic,
)

if TYPE_CHECKING:
    from ..oci._types import Mount
    from ..stats._model import Stats
    from ..stats._summary import ProcessSummary

__all__ = ["Sync", "Transport", "EventStream"]


@dataclass(frozen=True, slots=True)
class Sync:
    """Our own marker event, seen on the stream once the subscription is live."""

    token: str


EventStream = AsyncGenerator["TaskEvent | Sync", None]


class Transport(Protocol):
    """What the domain objects need from containerd, for one namespace."""

    @property
    def namespace(self) -> str: ...

    def bind(self, namespace: str) -> None:
        """Bind an unbound transport to the namespace :func:`supervisor.connect`
        was given; a transport bound already accepts only the same one.

        Raises:
            InvalidArgument: bound to another namespace.
        """
        ...

    async def aclose(self) -> None: ...

    async def version(self) -> str: ...

    # containers
    async def create_container(
        self,
        container_id: str,
        spec: Mapping[str, Any],
        *,
        runtime: str,
        runtime_options: Mapping[str, Any] | None,
        labels: Mapping[str, str],
        snapshotter: str = "",
        snapshot_key: str = "",
        image: str = "",
    ) -> None:
        """``snapshotter``/``snapshot_key`` name the container's own snapshot
        (made from ``image``), which containerd's GC then keeps."""
        ...

    async def get_container(self, container_id: str) -> ContainerRecord: ...

    async def list_containers(
        self, labels: Mapping[str, str | None] | None = None
    ) -> list[ContainerRecord]:
        """Every container, or (``labels``) those whose labels include all
        of these (a value ``None``: the key with any value), in one call."""
        ...

    async def update_container_labels(
        self, container_id: str, labels: Mapping[str, str | None]
    ) -> dict[str, str]:
        """Set these labels (a value ``None`` or empty: remove the key), the
        others left as they are; the container's labels after."""
        ...

    async def delete_container(self, container_id: str) -> None: ...

    # tasks and processes
    async def create_task(
        self, container_id: str, stdio: StdioPaths, *, rootfs: Sequence[Mount] = ()
    ) -> int:
        """``rootfs``: mounts the shim makes the bundle's root filesystem from
        (a snapshot's), for a container whose spec says ``root.path: rootfs``."""
        ...

    async def exec(
        self, container_id: str, exec_id: str, spec: Mapping[str, Any], stdio: StdioPaths
    ) -> None: ...

    async def start(self, container_id: str, exec_id: str) -> int: ...

    async def kill(self, container_id: str, exec_id: str, signal: int, all: bool) -> None: ...

    async def wait(self, container_id: str, exec_id: str) -> ExitStatus: ...

    async def delete_task(self, container_id: str) -> ExitStatus: ...

    async def delete_process(self, container_id: str, exec_id: str) -> ExitStatus: ...

    async def get_task(self, container_id: str, exec_id: str = "") -> TaskRecord: ...

    async def list_tasks(self) -> list[TaskRecord]: ...

    async def pause(self, container_id: str) -> None: ...

    async def resume(self, container_id: str) -> None: ...

    async def pids(self, container_id: str) -> list[ProcessInfo]: ...

    async def process_summaries(self, container_id: str) -> list[ProcessSummary]:
        """Every process of the task with what the shim says of it (ListPids'
        ``info``: runhcs's process details, runc's exec ids)."""
        ...

    async def stats(self, container_id: str) -> Stats: ...

    async def metrics(self, container_ids: Collection[str]) -> dict[str, Stats]:
        """One sample for each of ``container_ids`` that has a task, in one
        call (containerd's Metrics takes filters); missing ids are absent."""
        ...

    async def update_resources(self, container_id: str, resources: Mapping[str, Any]) -> None: ...

    async def resize(self, container_id: str, exec_id: str, width: int, height: int) -> None: ...

    async def close_stdin(self, container_id: str, exec_id: str) -> None: ...

    # events
    def subscribe(
        self, topics: Collection[Topic] | None = None
    ) -> AbstractAsyncContextManager[EventStream]:
        """This namespace's task events (only ``topics`` if given, filtered by
        containerd), plus :class:`Sync` markers from :meth:`sync`."""
        ...

    async def sync(self, token: str) -> None:
        """Publish a :class:`Sync` marker that every live subscription will see."""
        ...
