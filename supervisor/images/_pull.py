"""Pulling an image: registry → content store → image record → snapshots,
all under one containerd lease."""

from __future__ import annotations

import datetime
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from .. import errors
from .._log import get_logger
from ..oci._manifest import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    Descriptor,
    ImageConfig,
    Manifest,
    parse_config,
    parse_index,
    parse_manifest,
)
from ..oci._platform import Platform, select_platform
from ..oci._types import ImageRecord, LayerProgress
from ._auth import Credentials
from ._reference import Reference
from ._registry import Registry
from ._tls import TLSOptions
from ._unpack import SNAPSHOT_GC_LABEL, unpack

if TYPE_CHECKING:
    from ..backends.containerd_images import ContainerdImages

__all__ = ["PullOptions", "held", "lease", "pull", "write_bytes"]

_log = get_logger("images.pull")

Progress = Callable[[LayerProgress], None]
# A pull whose owner dies leaves a lease that expires by itself after this.
LEASE_EXPIRY = datetime.timedelta(hours=1)
# Layers downloading at once (ctr sets no limit; small layers are mostly
# round trips, which overlap).
_CONCURRENT_LAYERS = 6
_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class PullOptions:
    platform: Platform
    tls: TLSOptions
    credentials: Credentials | None
    progress: Progress | None
    snapshotter: str | None  # None: do not unpack
    http_timeout: float
    cleanup: float


@asynccontextmanager
async def lease(store: ContainerdImages, purpose: str, cleanup: float) -> AsyncIterator[str]:
    """A fresh lease for the block, deleted however the block ends (bounded,
    shielded): what the block wrote and nothing else keeps is then GC's."""
    lease_id = f"supervisor-{purpose}-{secrets.token_hex(8)}"
    with anyio.CancelScope(shield=True), anyio.fail_after(cleanup):
        await store.create_lease(lease_id, LEASE_EXPIRY)
    try:
        yield lease_id
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(cleanup):
            try:
                await store.delete_lease(lease_id)
            except errors.SupervisorError as exc:
                _log.warning("lease.delete_failed", lease=lease_id, error=str(exc))


def _report(progress: Progress | None, item: LayerProgress) -> None:
    if progress is None:
        return
    try:
        progress(item)
    except Exception as exc:  # noqa: BLE001 - a caller's callback must not fail the pull
        _log.warning("pull.progress_failed", error=repr(exc))


async def held(store: ContainerdImages, lease_id: str, desc: Descriptor) -> bool:
    """True when the content is in the store and from now on held by the
    lease, not only by whatever holds it now (an image that may be removed,
    and GC run, before this pull is done with it). Leasing is a write that
    containerd syncs to disk, so only what is found is leased; it is then
    looked for again, as GC may have taken it in between."""
    if await store.content_size(desc.digest) != desc.size:
        return False
    await store.lease_resource(lease_id, desc.digest)
    return await store.content_size(desc.digest) == desc.size


async def write_bytes(
    store: ContainerdImages,
    desc: Descriptor,
    data: bytes,
    *,
    lease_id: str,
    labels: dict[str, str] | None = None,
) -> None:
    """Store a small blob (manifest, index, config) with its GC labels."""

    @asynccontextmanager
    async def source(offset: int) -> AsyncIterator[AsyncIterator[bytes]]:
        async def chunks() -> AsyncIterator[bytes]:
            yield data[offset:]

        yield chunks()

    ref = f"supervisor-{desc.digest}"
    if await held(store, lease_id, desc):
        if labels:
            await store.set_content_labels(desc.digest, labels)
        return
    await store.write_content(ref, desc, source, lease=lease_id, labels=labels)
    if labels:
        # Content that was already there keeps its own labels: add ours.
        await store.set_content_labels(desc.digest, labels)


async def _fetch_layer(
    store: ContainerdImages,
    registry: Registry,
    layer: Descriptor,
    *,
    lease_id: str,
    opts: PullOptions,
) -> None:
    def report(offset: int, state: str = "downloading") -> None:
        _report(
            opts.progress, LayerProgress(layer.digest, layer.media_type, offset, layer.size, state)
        )

    if await held(store, lease_id, layer):
        report(layer.size, "exists")
        return
    # One ref per digest: a retry (or a later pull) resumes the same ingest.
    ref = f"supervisor-pull-{layer.digest}"
    try:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                await store.write_content(
                    ref,
                    layer,
                    lambda offset: registry.blob_stream(layer.digest, offset, layer.size),
                    lease=lease_id,
                    progress=report,
                )
                break
            except (errors.Unavailable, errors.DeadlineExceeded) as exc:
                if attempt == _ATTEMPTS:
                    raise
                _log.info("pull.layer_retry", digest=layer.digest, attempt=attempt, error=str(exc))
                await anyio.sleep(0.2 * attempt)
    except BaseException:
        with anyio.CancelScope(shield=True), anyio.move_on_after(opts.cleanup):
            try:
                await store.abort_write(ref)
            except errors.SupervisorError as exc:
                _log.warning("pull.abort_failed", ref=ref, error=str(exc))
        raise
    report(layer.size, "done")


async def _resolve(
    registry: Registry, ref: Reference, platform: Platform
) -> tuple[Descriptor, bytes, Descriptor, bytes, list[Descriptor]]:
    """(top descriptor, its bytes, manifest descriptor, its bytes, index children)."""
    media_type, body, digest = await registry.manifest(ref.object)
    top = Descriptor(media_type, digest, len(body))
    if media_type in MANIFEST_TYPES:
        return top, body, top, body, []
    if media_type not in INDEX_TYPES:
        raise errors.FailedPrecondition(f"unsupported manifest type {media_type!r}")
    children = parse_index(body)
    chosen = children[select_platform(platform, [c.platform for c in children])]
    m_type, m_body, m_digest = await registry.manifest(chosen.digest, chosen.media_type)
    if len(m_body) != chosen.size:
        raise errors.FailedPrecondition(f"manifest {m_digest}: size differs from the index's")
    return top, body, Descriptor(m_type, m_digest, len(m_body)), m_body, children


def manifest_labels(manifest: Manifest) -> dict[str, str]:
    labels = {"containerd.io/gc.ref.content.config": manifest.config.digest}
    for i, layer in enumerate(manifest.layers):
        labels[f"containerd.io/gc.ref.content.l.{i}"] = layer.digest
    return labels


def index_labels(children: list[Descriptor]) -> dict[str, str]:
    return {f"containerd.io/gc.ref.content.m.{i}": c.digest for i, c in enumerate(children)}


async def store_image(
    store: ContainerdImages,
    name: str,
    top: Descriptor,
    manifest: Manifest,
    config: ImageConfig,
    *,
    lease_id: str,
    snapshotter: str | None,
    cleanup: float,
    progress: Progress | None,
) -> ImageRecord:
    """With every blob in the store: unpack (if asked), then the image record."""
    if snapshotter is not None:

        def on_layer(i: int) -> None:
            layer = manifest.layers[i]
            _report(
                progress,
                LayerProgress(layer.digest, layer.media_type, layer.size, layer.size, "unpacked"),
            )

        top_chain = await unpack(
            store,
            snapshotter,
            manifest,
            config,
            lease=lease_id,
            cleanup=cleanup,
            on_layer=on_layer,
        )
        if top_chain:
            await store.set_content_labels(
                manifest.config.digest, {SNAPSHOT_GC_LABEL + snapshotter: top_chain}
            )
    return await store.put_image(name, top)


async def _fetch_and_unpack(
    store: ContainerdImages,
    registry: Registry,
    manifest: Manifest,
    config: ImageConfig,
    lease_id: str,
    opts: PullOptions,
) -> str:
    """Fetch every layer (a few at once) and, if the pull unpacks, apply
    each one as soon as it and those below it are in the store, while the
    others still download (as containerd's own unpacker does). The top
    chain id, or "" without unpacking."""
    limiter = anyio.CapacityLimiter(_CONCURRENT_LAYERS)
    # One layer listed twice in a manifest is fetched once.
    unique = {layer.digest: layer for layer in manifest.layers}
    fetched = {digest: anyio.Event() for digest in unique}
    top_chain = ""

    async def fetch(layer: Descriptor) -> None:
        async with limiter:
            await _fetch_layer(store, registry, layer, lease_id=lease_id, opts=opts)
        fetched[layer.digest].set()

    async def ready(i: int) -> None:
        await fetched[manifest.layers[i].digest].wait()

    def on_layer(i: int) -> None:
        layer = manifest.layers[i]
        _report(
            opts.progress,
            LayerProgress(layer.digest, layer.media_type, layer.size, layer.size, "unpacked"),
        )

    async def unpack_all(snapshotter: str) -> None:
        nonlocal top_chain
        top_chain = await unpack(
            store,
            snapshotter,
            manifest,
            config,
            lease=lease_id,
            cleanup=opts.cleanup,
            on_layer=on_layer,
            ready=ready,
        )

    try:
        async with anyio.create_task_group() as tg:
            for layer in unique.values():
                tg.start_soon(fetch, layer)
            if opts.snapshotter is not None:
                tg.start_soon(unpack_all, opts.snapshotter)
    except BaseExceptionGroup as group:
        raise errors.unwrap_group(group) from None
    return top_chain


async def pull(store: ContainerdImages, ref: Reference, opts: PullOptions) -> ImageRecord:
    """Pull ``ref`` into containerd: see :meth:`supervisor.Client.pull`."""
    async with (
        lease(store, "pull", opts.cleanup) as lease_id,
        Registry(
            ref, tls=opts.tls, credentials=opts.credentials, timeout=opts.http_timeout
        ) as registry,
    ):
        top, top_body, m_desc, m_body, children = await _resolve(registry, ref, opts.platform)
        manifest = parse_manifest(m_body, m_desc.media_type)
        config_body = await registry.blob_bytes(manifest.config)
        config = parse_config(config_body)
        top_chain = await _fetch_and_unpack(store, registry, manifest, config, lease_id, opts)
        # Children before parents, so nothing points at content not yet there.
        await write_bytes(store, manifest.config, config_body, lease_id=lease_id)
        await write_bytes(
            store, m_desc, m_body, lease_id=lease_id, labels=manifest_labels(manifest)
        )
        if children:
            await write_bytes(
                store, top, top_body, lease_id=lease_id, labels=index_labels(children)
            )
        if top_chain and opts.snapshotter is not None:
            await store.set_content_labels(
                manifest.config.digest, {SNAPSHOT_GC_LABEL + opts.snapshotter: top_chain}
            )
        record = await store.put_image(str(ref), top)
    _log.info("image.pull", image=record.name, digest=top.digest)
    return record
