"""containerd's image-side services over grpclib: content, images, leases,
snapshots and diff.

Like :mod:`.containerd`, this is a boundary module: what leaves it is a
value of :mod:`supervisor.oci._types` or a :mod:`supervisor.errors`
exception, never a generated message or a grpclib error. It shares the
grpclib channel of the client's :class:`~.containerd.ContainerdTransport`.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from grpclib.client import Channel

from .. import errors
from .._proto.containerd import types as pb_types
from .._proto.containerd.services.content import v1 as pb_content
from .._proto.containerd.services.diff import v1 as pb_diff
from .._proto.containerd.services.images import v1 as pb_images
from .._proto.containerd.services.leases import v1 as pb_leases
from .._proto.containerd.services.snapshots import v1 as pb_snapshots
from .._proto.google.protobuf import FieldMask
from ..oci._manifest import Descriptor
from ..oci._types import ImageRecord, Mount
from ._channel import LEASE_HEADER, NAMESPACE_HEADER, channel_address
from ._content_write import Source, write_blob
from ._grpc_errors import map_grpc_errors

__all__ = ["ContainerdImages", "LEASE_HEADER"]

_T = TypeVar("_T")


def _pb_descriptor(desc: Descriptor) -> pb_types.Descriptor:
    return pb_types.Descriptor(
        media_type=desc.media_type,
        digest=desc.digest,
        size=desc.size,
        annotations=dict(desc.annotations),
    )


def _descriptor(pb: pb_types.Descriptor | None) -> Descriptor:
    if pb is None:
        raise errors.Unknown("containerd returned an image without a target")
    return Descriptor(pb.media_type, pb.digest, int(pb.size), None, dict(pb.annotations))


def _mounts(pbs: Sequence[pb_types.Mount]) -> tuple[Mount, ...]:
    return tuple(Mount(m.type, m.source, m.target, tuple(m.options)) for m in pbs)


def pb_mounts(mounts: Sequence[Mount]) -> list[pb_types.Mount]:
    """Our mounts as containerd's messages (for CreateTaskRequest.rootfs too)."""
    return [
        pb_types.Mount(type=m.type, source=m.source, target=m.target, options=list(m.options))
        for m in mounts
    ]


def _image_record(pb: pb_images.Image | None) -> ImageRecord:
    if pb is None:
        raise errors.Unknown("containerd returned no image")
    return ImageRecord(
        pb.name, _descriptor(pb.target), dict(pb.labels), pb.created_at, pb.updated_at
    )


class ContainerdImages:
    """containerd's content store, image records, leases, snapshots and diff
    service for one namespace, over an existing grpclib channel (which the
    caller owns and closes)."""

    def __init__(self, channel: Channel, namespace: str, *, rpc_timeout: float | None) -> None:
        self._channel = channel
        self._where = channel_address(channel)
        self._namespace = namespace
        self._timeout = rpc_timeout
        metadata = {NAMESPACE_HEADER: namespace}
        self._content = pb_content.ContentStub(channel, metadata=metadata, timeout=rpc_timeout)
        self._images = pb_images.ImagesStub(channel, metadata=metadata, timeout=rpc_timeout)
        self._leases = pb_leases.LeasesStub(channel, metadata=metadata, timeout=rpc_timeout)
        self._snapshots = pb_snapshots.SnapshotsStub(
            channel, metadata=metadata, timeout=rpc_timeout
        )
        # Applying a large layer takes as long as it takes: no deadline.
        self._diff = pb_diff.DiffStub(channel, metadata=metadata)

    @property
    def namespace(self) -> str:
        return self._namespace

    def _md(self, lease: str | None) -> dict[str, str]:
        md = {NAMESPACE_HEADER: self._namespace}
        if lease:
            md[LEASE_HEADER] = lease
        return md

    async def _call(self, rpc: Callable[[], Awaitable[_T]]) -> _T:
        with map_grpc_errors(where=self._where):
            return await rpc()

    # -- leases ---------------------------------------------------------------

    async def create_lease(self, lease_id: str, expire: datetime.timedelta) -> str:
        """A lease that expires by itself after ``expire`` (should its owner
        die before deleting it), so GC then takes what it held."""
        until = datetime.datetime.now(datetime.UTC) + expire
        labels = {"containerd.io/gc.expire": until.strftime("%Y-%m-%dT%H:%M:%SZ")}
        request = pb_leases.CreateRequest(id=lease_id, labels=labels)
        reply = await self._call(lambda: self._leases.create(request))
        return reply.lease.id if reply.lease is not None else lease_id

    async def delete_lease(self, lease_id: str, *, sync: bool = False) -> None:
        request = pb_leases.DeleteRequest(id=lease_id, sync=sync)
        await self._call(lambda: self._leases.delete(request))

    async def lease_resource(self, lease_id: str, resource: str, kind: str = "content") -> None:
        """Add a resource to a lease: content (``kind`` ``"content"``, by
        digest) or a snapshot (``"snapshots/<snapshotter>"``, by key).
        Something found already in the store is held from then on, so that
        GC cannot take it while the lease's owner builds on it; what is not
        there yet may be added too (it is held once it exists)."""
        request = pb_leases.AddResourceRequest(
            id=lease_id, resource=pb_leases.Resource(id=resource, type=kind)
        )
        await self._call(lambda: self._leases.add_resource(request))

    async def list_leases(self) -> list[str]:
        reply = await self._call(lambda: self._leases.list(pb_leases.ListRequest()))
        return [lease.id for lease in reply.leases]

    # -- content --------------------------------------------------------------

    async def content_size(self, digest: str) -> int | None:
        """The size of committed content, or None if the store lacks it."""
        try:
            reply = await self._call(
                lambda: self._content.info(pb_content.InfoRequest(digest=digest))
            )
        except errors.NotFound:
            return None
        return int(reply.info.size) if reply.info is not None else None

    async def content_labels(self, digest: str) -> dict[str, str]:
        reply = await self._call(lambda: self._content.info(pb_content.InfoRequest(digest=digest)))
        return dict(reply.info.labels) if reply.info is not None else {}

    async def list_content(self) -> dict[str, int]:
        found: dict[str, int] = {}
        with map_grpc_errors():
            async for reply in self._content.list(pb_content.ListContentRequest()):
                for info in reply.info:
                    found[info.digest] = int(info.size)
        return found

    async def set_content_labels(self, digest: str, labels: Mapping[str, str]) -> None:
        """Add (or replace) labels on committed content, leaving its others."""
        if not labels:
            return
        info = pb_content.Info(digest=digest, labels=dict(labels))
        request = pb_content.UpdateRequest(
            info=info, update_mask=FieldMask(paths=[f"labels.{k}" for k in labels])
        )
        await self._call(lambda: self._content.update(request))

    async def delete_content(self, digest: str) -> None:
        request = pb_content.DeleteContentRequest(digest=digest)
        await self._call(lambda: self._content.delete(request))

    async def read_content(self, digest: str) -> AsyncIterator[bytes]:
        """The bytes of committed content, in containerd's chunks."""
        request = pb_content.ReadContentRequest(digest=digest)
        stream = self._content.read(request, timeout=None)
        try:
            with map_grpc_errors():
                async for reply in stream:
                    yield reply.data
        finally:
            with map_grpc_errors():
                await stream.aclose()

    async def read_all(self, digest: str, limit: int) -> bytes:
        parts, total = [], 0
        async for chunk in self.read_content(digest):
            total += len(chunk)
            if total > limit:
                raise errors.FailedPrecondition(f"{digest}: larger than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def abort_write(self, ref: str) -> None:
        """Drop an unfinished write (an ingest); gone already is fine."""
        try:
            await self._call(lambda: self._content.abort(pb_content.AbortRequest(ref=ref)))
        except errors.NotFound:
            pass

    async def write_content(
        self,
        ref: str,
        desc: Descriptor,
        source: Source,
        *,
        lease: str | None,
        labels: Mapping[str, str] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Store a blob under ``desc``'s digest, streamed from ``source``.

        The write resumes where an earlier attempt on the same ``ref`` left
        off (containerd keeps the ingest), and containerd checks size and
        digest at commit. Content already stored counts as written.

        Raises:
            FailedPrecondition: the bytes do not match the descriptor.
        """
        await write_blob(
            self._channel, self._md(lease), ref, desc, source, labels=labels, progress=progress
        )

    # -- images ---------------------------------------------------------------

    async def put_image(
        self, name: str, target: Descriptor, labels: Mapping[str, str] | None = None
    ) -> ImageRecord:
        """Create the image record, or point an existing one at ``target``."""
        image = pb_images.Image(name=name, target=_pb_descriptor(target), labels=dict(labels or {}))
        try:
            reply = await self._call(
                lambda: self._images.create(pb_images.CreateImageRequest(image=image))
            )
            return _image_record(reply.image)
        except errors.AlreadyExists:
            pass
        request = pb_images.UpdateImageRequest(
            image=image, update_mask=FieldMask(paths=["target", "labels"])
        )
        updated = await self._call(lambda: self._images.update(request))
        return _image_record(updated.image)

    async def get_image(self, name: str) -> ImageRecord:
        reply = await self._call(lambda: self._images.get(pb_images.GetImageRequest(name=name)))
        return _image_record(reply.image)

    async def list_images(self) -> list[ImageRecord]:
        reply = await self._call(lambda: self._images.list(pb_images.ListImagesRequest()))
        return [_image_record(i) for i in reply.images]

    async def delete_image(self, name: str, *, sync: bool = False) -> None:
        request = pb_images.DeleteImageRequest(name=name, sync=sync)
        await self._call(lambda: self._images.delete(request))

    # -- snapshots ------------------------------------------------------------

    async def snapshot_exists(self, snapshotter: str, key: str) -> bool:
        request = pb_snapshots.StatSnapshotRequest(snapshotter=snapshotter, key=key)
        try:
            await self._call(lambda: self._snapshots.stat(request))
        except errors.NotFound:
            return False
        return True

    async def list_snapshots(self, snapshotter: str) -> list[str]:
        names: list[str] = []
        request = pb_snapshots.ListSnapshotsRequest(snapshotter=snapshotter)
        with map_grpc_errors():
            async for reply in self._snapshots.list(request):
                names.extend(info.name for info in reply.info)
        return names

    async def prepare_snapshot(
        self,
        snapshotter: str,
        key: str,
        parent: str,
        *,
        lease: str | None,
        labels: Mapping[str, str] | None = None,
    ) -> tuple[Mount, ...]:
        request = pb_snapshots.PrepareSnapshotRequest(
            snapshotter=snapshotter, key=key, parent=parent, labels=dict(labels or {})
        )
        reply = await self._call(lambda: self._snapshots.prepare(request, metadata=self._md(lease)))
        return _mounts(reply.mounts)

    async def snapshot_mounts(self, snapshotter: str, key: str) -> tuple[Mount, ...]:
        request = pb_snapshots.MountsRequest(snapshotter=snapshotter, key=key)
        reply = await self._call(lambda: self._snapshots.mounts(request))
        return _mounts(reply.mounts)

    async def commit_snapshot(
        self,
        snapshotter: str,
        name: str,
        key: str,
        *,
        lease: str | None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        request = pb_snapshots.CommitSnapshotRequest(
            snapshotter=snapshotter, name=name, key=key, labels=dict(labels or {})
        )
        await self._call(lambda: self._snapshots.commit(request, metadata=self._md(lease)))

    async def remove_snapshot(self, snapshotter: str, key: str) -> None:
        request = pb_snapshots.RemoveSnapshotRequest(snapshotter=snapshotter, key=key)
        await self._call(lambda: self._snapshots.remove(request))

    # -- diff -----------------------------------------------------------------

    async def apply_layer(
        self, layer: Descriptor, mounts: Sequence[Mount], *, lease: str | None
    ) -> str:
        """Unpack a layer blob onto mounts; the digest of what was applied
        (the uncompressed tar: the layer's diff id)."""
        request = pb_diff.ApplyRequest(diff=_pb_descriptor(layer), mounts=pb_mounts(mounts))
        reply = await self._call(lambda: self._diff.apply(request, metadata=self._md(lease)))
        if reply.applied is None:
            raise errors.Unknown(f"{layer.digest}: containerd applied nothing")
        return str(reply.applied.digest)
