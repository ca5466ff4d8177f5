"""Unpacking an image's layers into committed snapshots named by chain id."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

from .. import errors
from .._log import get_logger
from ..oci._digest import chain_ids
from ..oci._manifest import Descriptor, ImageConfig, Manifest

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ..backends.containerd_images import ContainerdImages

__all__ = ["SNAPSHOT_GC_LABEL", "unpack"]

_log = get_logger("images.unpack")

# containerd's GC keeps a snapshot that content it keeps points to with this
# label (on the config blob, as containerd's own unpacker does).
SNAPSHOT_GC_LABEL = "containerd.io/gc.ref.snapshot."
UNCOMPRESSED_LABEL = "containerd.io/uncompressed"


async def unpack(
    store: ContainerdImages,
    snapshotter: str,
    manifest: Manifest,
    config: ImageConfig,
    *,
    lease: str,
    cleanup: float,
    on_layer: Callable[[int], None] | None = None,
    ready: Callable[[int], Awaitable[None]] | None = None,
) -> str:
    """Apply each layer on top of its parent's snapshot and commit it under
    its chain id; layers whose chain id is already a snapshot are skipped.
    Returns the top chain id (what a container's snapshot is prepared from).
    ``ready(i)``, if given, returns once layer ``i``'s content is in the
    store (a pull unpacks the first layers while it fetches the others).

    Raises:
        FailedPrecondition: a layer's content is not what the config's diff
            id says.
    """
    if len(config.diff_ids) != len(manifest.layers):
        raise errors.FailedPrecondition(
            f"the manifest has {len(manifest.layers)} layers, the config "
            f"{len(config.diff_ids)} diff ids"
        )
    chains = chain_ids(config.diff_ids)
    try:
        # Each layer's uncompressed label is a disk write of containerd's
        # that nothing in the chain waits for: written beside it.
        async with anyio.create_task_group() as labels:
            top = await _apply_all(
                store,
                snapshotter,
                manifest,
                config,
                chains,
                labels,
                lease,
                cleanup,
                on_layer,
                ready,
            )
    except BaseExceptionGroup as group:
        raise errors.unwrap_group(group) from None
    return top


async def _apply_all(
    store: ContainerdImages,
    snapshotter: str,
    manifest: Manifest,
    config: ImageConfig,
    chains: list[str],
    labels: TaskGroup,
    lease: str,
    cleanup: float,
    on_layer: Callable[[int], None] | None,
    ready: Callable[[int], Awaitable[None]] | None,
) -> str:
    present = await _present(store, snapshotter, chains, lease)
    parent = ""
    for i, (layer, diff_id, chain) in enumerate(
        zip(manifest.layers, config.diff_ids, chains, strict=True)
    ):
        if chain in present:
            parent = chain
            continue
        if ready is not None:
            await ready(i)
        await _apply(store, snapshotter, layer, diff_id, chain, parent, lease, cleanup)
        labels.start_soon(store.set_content_labels, layer.digest, {UNCOMPRESSED_LABEL: diff_id})
        _log.debug("unpack.layer", snapshotter=snapshotter, chain_id=chain)
        if on_layer is not None:
            on_layer(i)
        parent = chain
    return parent


async def _present(
    store: ContainerdImages, snapshotter: str, chains: list[str], lease: str
) -> set[str]:
    """The chain ids that are snapshots already, held by ``lease``."""
    # Looked for all at once, not one round trip per layer in the chain.
    present: set[str] = set()

    async def look(chain: str) -> None:
        # A snapshot found is leased, then looked for again (GC may have
        # taken it in between): it is then held while its children are
        # built on it, whatever happens to the image that held it.
        if await store.snapshot_exists(snapshotter, chain):
            await store.lease_resource(lease, chain, f"snapshots/{snapshotter}")
            if await store.snapshot_exists(snapshotter, chain):
                present.add(chain)

    async with anyio.create_task_group() as tg:
        for chain in chains:
            tg.start_soon(look, chain)
    return present


async def _apply(
    store: ContainerdImages,
    snapshotter: str,
    layer: Descriptor,
    diff_id: str,
    chain: str,
    parent: str,
    lease: str,
    cleanup: float,
) -> None:
    """Apply ``layer`` on ``parent`` and commit it as ``chain``; on failure
    the half-made snapshot is removed."""
    key = f"extract-{secrets.token_hex(6)}-{chain}"
    mounts = await store.prepare_snapshot(snapshotter, key, parent, lease=lease)
    try:
        applied = await store.apply_layer(layer, mounts, lease=lease)
        if applied != diff_id:
            raise errors.FailedPrecondition(
                f"layer {layer.digest} unpacks to {applied}, the config says {diff_id}"
            )
        try:
            await store.commit_snapshot(snapshotter, chain, key, lease=lease)
        except errors.AlreadyExists:
            # Another unpack of the same layers won the race: use theirs.
            await store.remove_snapshot(snapshotter, key)
    except BaseException:
        with anyio.CancelScope(shield=True), anyio.move_on_after(cleanup):
            try:
                await store.remove_snapshot(snapshotter, key)
            except errors.SupervisorError as exc:
                _log.warning("unpack.cleanup_failed", key=key, error=str(exc))
        raise
