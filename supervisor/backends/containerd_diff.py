"""containerd's snapshot views and the Diff service's Compare over grpclib:
what a container's read-write layer is made of, for a checkpoint that saves
it (``rw=True``). Applying such a layer is :meth:`.ContainerdImages.apply_layer`.

A boundary module like :mod:`.containerd`: what leaves it is a library value
or a :mod:`supervisor.errors` exception. It shares the grpclib channel of the
client's :class:`~.containerd.ContainerdTransport`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from grpclib.client import Channel

from .. import errors
from .._proto.containerd.services.diff import v1 as pb_diff
from .._proto.containerd.services.snapshots import v1 as pb_snapshots
from ..oci._manifest import Descriptor
from ..oci._types import Mount
from ._channel import LEASE_HEADER, NAMESPACE_HEADER, channel_address
from ._grpc_errors import map_grpc_errors
from .containerd_images import pb_mounts

__all__ = ["ContainerdDiff"]

_T = TypeVar("_T")


class ContainerdDiff:
    """Snapshot views and layer diffs for one namespace, over an existing
    grpclib channel (which the caller owns and closes)."""

    def __init__(self, channel: Channel, namespace: str, *, rpc_timeout: float | None) -> None:
        self._where = channel_address(channel)
        self._namespace = namespace
        metadata = {NAMESPACE_HEADER: namespace}
        self._snapshots = pb_snapshots.SnapshotsStub(
            channel, metadata=metadata, timeout=rpc_timeout
        )
        # A diff reads every file the container changed: as long as that
        # takes (the caller bounds it).
        self._diff = pb_diff.DiffStub(channel, metadata=metadata)

    def _md(self, lease: str) -> dict[str, str]:
        return {NAMESPACE_HEADER: self._namespace, LEASE_HEADER: lease}

    async def _call(self, rpc: Callable[[], Awaitable[_T]]) -> _T:
        with map_grpc_errors(where=self._where):
            return await rpc()

    async def parent(self, snapshotter: str, key: str) -> str:
        """The parent of snapshot ``key`` ("" for one made on nothing).

        Raises:
            NotFound: no such snapshot.
        """
        request = pb_snapshots.StatSnapshotRequest(snapshotter=snapshotter, key=key)
        reply = await self._call(lambda: self._snapshots.stat(request))
        return "" if reply.info is None else reply.info.parent

    async def view(
        self, snapshotter: str, key: str, parent: str, *, lease: str
    ) -> tuple[Mount, ...]:
        """A read-only snapshot ``key`` of ``parent``, held by ``lease``."""
        request = pb_snapshots.ViewSnapshotRequest(snapshotter=snapshotter, key=key, parent=parent)
        reply = await self._call(lambda: self._snapshots.view(request, metadata=self._md(lease)))
        return tuple(Mount(m.type, m.source, m.target, tuple(m.options)) for m in reply.mounts)

    async def compare(
        self,
        lower: Sequence[Mount],
        upper: Sequence[Mount],
        *,
        media_type: str,
        ref: str,
        lease: str,
        labels: Mapping[str, str] | None = None,
    ) -> Descriptor:
        """The changes from ``lower`` to ``upper`` as a layer of
        ``media_type``, written by containerd into its content store under
        ``lease``.

        Raises:
            Unknown: containerd answered without a layer.
        """
        request = pb_diff.DiffRequest(
            left=pb_mounts(lower),
            right=pb_mounts(upper),
            media_type=media_type,
            ref=ref,
            labels=dict(labels or {}),
        )
        reply = await self._call(lambda: self._diff.diff(request, metadata=self._md(lease)))
        found = reply.diff
        if found is None or not found.digest:
            raise errors.Unknown("containerd's diff service returned no layer")
        return Descriptor(
            found.media_type, found.digest, int(found.size), None, dict(found.annotations)
        )
