"""containerd's checkpoint calls over grpclib: a task dumped by CRIU into the
content store, a task created from such a dump, and the spec update that
keeps each checkpoint's spec blob its own.

A boundary module like :mod:`.containerd`: what leaves it is a library
value or a :mod:`supervisor.errors` exception. It shares the grpclib channel
of the client's :class:`~.containerd.ContainerdTransport`.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from grpclib.client import Channel

from .. import errors
from .._proto.containerd import types as pb_types
from .._proto.containerd.runc import v1 as pb_runc
from .._proto.containerd.services.containers import v1 as pb_containers
from .._proto.containerd.services.images import v1 as pb_images
from .._proto.containerd.services.tasks import v1 as pb_tasks
from .._proto.google.protobuf import Any as PbAny
from .._proto.google.protobuf import FieldMask
from .._types import StdioPaths
from ..oci._manifest import Descriptor
from ..oci._types import Mount
from ._channel import LEASE_HEADER, NAMESPACE_HEADER, channel_address
from ._grpc_errors import map_grpc_errors
from ._task_request import create_task_request

__all__ = ["ContainerdCheckpoints", "CRIU_MEDIA_TYPE", "CONFIG_MEDIA_TYPE", "decode_config"]

# What containerd's Tasks.Checkpoint writes (containerd's images package).
CRIU_MEDIA_TYPE = "application/vnd.containerd.container.criu.checkpoint.criu.tar"
CONFIG_MEDIA_TYPE = "application/vnd.containerd.container.checkpoint.config.v1+proto"
_SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"

_T = TypeVar("_T")


def decode_config(data: bytes) -> bytes:
    """The OCI spec (JSON bytes) inside a checkpoint's config blob, which is
    the container's spec as containerd stores it: a marshalled ``Any``.

    Raises:
        InvalidArgument: the blob is not such an ``Any``.
    """
    try:
        packed = PbAny.parse(data)
    except Exception as exc:  # noqa: BLE001 - any decoding failure means the same
        raise errors.InvalidArgument(f"the checkpoint's config cannot be read: {exc}") from exc
    if packed.type_url != _SPEC_TYPE_URL:
        raise errors.InvalidArgument(
            f"the checkpoint's config holds {packed.type_url or 'nothing'}, not an OCI spec"
        )
    return bytes(packed.value)


class ContainerdCheckpoints:
    """Checkpoint and restore calls for one namespace, over an existing
    grpclib channel (which the caller owns and closes)."""

    def __init__(self, channel: Channel, namespace: str, *, rpc_timeout: float | None) -> None:
        self._where = channel_address(channel)
        self._namespace = namespace
        metadata = {NAMESPACE_HEADER: namespace}
        self._containers = pb_containers.ContainersStub(
            channel, metadata=metadata, timeout=rpc_timeout
        )
        self._tasks = pb_tasks.TasksStub(channel, metadata=metadata, timeout=rpc_timeout)
        self._images = pb_images.ImagesStub(channel, metadata=metadata, timeout=rpc_timeout)
        # A dump takes as long as the task's memory takes to write: the
        # caller bounds it, not the RPC deadline.
        self._dumps = pb_tasks.TasksStub(channel, metadata=metadata)

    async def _call(self, rpc: Callable[[], Awaitable[_T]], container_id: str | None = None) -> _T:
        with map_grpc_errors(container_id, container_id, where=self._where):
            return await rpc()

    async def checkpoint(
        self, container_id: str, *, exit: bool, lease: str
    ) -> tuple[Descriptor, Descriptor]:
        """CRIU's dump of the task and the container's spec, written by
        containerd into its content store under ``lease``: (criu, config).

        Raises:
            Unknown: containerd answered without either of them.
        """
        options = PbAny(
            type_url="containerd.runc.v1.CheckpointOptions",
            value=bytes(pb_runc.CheckpointOptions(exit=exit)),
        )
        request = pb_tasks.CheckpointTaskRequest(container_id=container_id, options=options)
        metadata = {NAMESPACE_HEADER: self._namespace, LEASE_HEADER: lease}
        reply = await self._call(
            lambda: self._dumps.checkpoint(request, metadata=metadata), container_id
        )
        found = {
            d.media_type: Descriptor(d.media_type, d.digest, int(d.size), None, dict(d.annotations))
            for d in reply.descriptors
        }
        if CRIU_MEDIA_TYPE not in found or CONFIG_MEDIA_TYPE not in found:
            # containerd issue #7980: a dump whose spec blob was stored
            # already comes back without its descriptors.
            raise errors.Unknown(
                "containerd returned a checkpoint without its CRIU image or spec "
                f"(got {sorted(found) or 'nothing'})",
                container_id=container_id,
            )
        return found[CRIU_MEDIA_TYPE], found[CONFIG_MEDIA_TYPE]

    async def set_spec(self, container_id: str, spec: Mapping[str, Any]) -> None:
        """Replace the container record's spec (its task is not touched)."""
        from .containerd import SPEC_TYPE_URL, _json_any

        container = pb_containers.Container(id=container_id, spec=_json_any(SPEC_TYPE_URL, spec))
        request = pb_containers.UpdateContainerRequest(
            container=container, update_mask=FieldMask(paths=["spec"])
        )
        await self._call(lambda: self._containers.update(request), container_id)

    async def create_task(
        self,
        container_id: str,
        stdio: StdioPaths,
        checkpoint: Descriptor,
        rootfs: Sequence[Mount] = (),
    ) -> int:
        """A task created from ``checkpoint`` (a CRIU image): its start
        restores the processes instead of running the spec's."""
        descriptor = pb_types.Descriptor(
            media_type=checkpoint.media_type,
            digest=checkpoint.digest,
            size=checkpoint.size,
            annotations=dict(checkpoint.annotations),
        )
        request = create_task_request(container_id, stdio, rootfs, checkpoint=descriptor)
        reply = await self._call(lambda: self._tasks.create(request), container_id)
        return int(reply.pid)

    async def create_image(
        self, name: str, target: Descriptor, labels: Mapping[str, str]
    ) -> datetime.datetime | None:
        """A new image record (never an existing one repointed); when
        containerd made it.

        Raises:
            AlreadyExists: an image of that name exists (it is left as it was).
        """
        image = pb_images.Image(
            name=name,
            target=pb_types.Descriptor(
                media_type=target.media_type, digest=target.digest, size=target.size
            ),
            labels=dict(labels),
        )
        request = pb_images.CreateImageRequest(image=image)
        reply = await self._call(lambda: self._images.create(request))
        return None if reply.image is None else reply.image.created_at
