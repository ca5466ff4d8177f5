"""Importing image archives (OCI image layouts and ``docker save`` tars) into
containerd; exporting is :mod:`._export`.

An archive is hostile input. Before anything is written, every member is
checked (:mod:`._tar`) and what it holds planned (:mod:`._archive_plan`).
Every blob is hashed as it is read and refused unless it is exactly what
its descriptor (or its ``blobs/sha256/<hex>`` name) says. What an import
writes is held by one lease until the image records exist, so a refused or
cancelled import leaves only content that containerd's GC takes.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio

from .. import errors
from .._log import get_logger
from ..oci._digest import Verifier
from ..oci._platform import host_platform
from ..oci._types import ImageRecord
from ._archive_plan import Blob, PlannedImage, plan_archive
from ._pull import held, lease, store_image, write_bytes
from ._reference import parse_reference
from ._tar import MAX_BLOB_SIZE, MAX_MEMBERS, Archive

if TYPE_CHECKING:
    from ..backends.containerd_images import ContainerdImages
    from ..domain._session import Session
    from ._service import ImageService

__all__ = ["MAX_BLOB_SIZE", "MAX_MEMBERS", "import_archive"]

_log = get_logger("images.archive")


def _verify_member(archive: Archive, blob: Blob) -> None:
    verifier = Verifier(blob.desc.digest, blob.desc.size)
    for chunk in archive.chunks(blob.member):
        verifier.update(chunk)
    verifier.check()
    blob.verified = True


async def _write_member(
    store: ContainerdImages, archive: Archive, blob: Blob, lease_id: str, cleanup: float
) -> None:
    desc = blob.desc

    @contextlib.asynccontextmanager
    async def source(offset: int) -> AsyncIterator[AsyncIterator[bytes]]:
        async def chunks() -> AsyncIterator[bytes]:
            # Every byte is hashed, also a prefix containerd already has.
            verifier = Verifier(desc.digest, desc.size)
            reader = archive.chunks(blob.member)
            skip = offset
            while True:
                chunk = await anyio.to_thread.run_sync(next, reader, None)
                if chunk is None:
                    break
                verifier.update(chunk)
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                if chunk:
                    yield chunk
            verifier.check()
            blob.verified = True

        yield chunks()

    ref = f"supervisor-import-{secrets.token_hex(6)}-{desc.digest}"
    try:
        await store.write_content(ref, desc, source, lease=lease_id, labels=blob.labels or None)
    except BaseException:
        with anyio.CancelScope(shield=True), anyio.move_on_after(cleanup):
            with contextlib.suppress(errors.SupervisorError):
                await store.abort_write(ref)
        raise


async def import_archive(
    session: Session, path: str | os.PathLike[str], *, name: str | None
) -> list[ImageRecord]:
    """Import every image of an archive: see :meth:`supervisor.Client.import_image`."""
    from ._service import ImageService

    session.check_open()
    if name is not None:
        name = str(parse_reference(name))
    service = ImageService(session)
    store = service.store
    snapshotter = await service.snapshotter(None)
    archive = await anyio.to_thread.run_sync(Archive.open, os.fspath(path))
    try:
        plan = await anyio.to_thread.run_sync(plan_archive, archive, name, host_platform())
        records: list[ImageRecord] = []
        async with lease(store, "import", service.cleanup) as lease_id:
            for blob in plan.blobs.values():
                if blob.data is not None:
                    await write_bytes(
                        store, blob.desc, blob.data, lease_id=lease_id, labels=blob.labels or None
                    )
                    continue
                # Found content is leased (held should its image go meanwhile).
                if not await held(store, lease_id, blob.desc):
                    await _write_member(store, archive, blob, lease_id, service.cleanup)
                if not blob.verified:
                    # containerd had these bytes (maybe in another namespace,
                    # then it takes none from us): the archive's are still
                    # checked, or a corrupt archive would pass.
                    await anyio.to_thread.run_sync(_verify_member, archive, blob)
            created: list[str] = []
            try:
                for image in plan.images:
                    if not await _exists(store, image.name):
                        created.append(image.name)
                    records.append(await _store(service, image, lease_id, snapshotter))
            except BaseException:
                await _forget(store, created, service.cleanup)
                raise
    finally:
        archive.close()
    for record in records:
        _log.info("image.import", image=record.name, digest=record.target.digest)
    return records


async def _exists(store: ContainerdImages, name: str) -> bool:
    try:
        await store.get_image(name)
    except errors.NotFound:
        return False
    return True


async def _forget(store: ContainerdImages, names: list[str], cleanup: float) -> None:
    """Delete the records a failed import made (a refused call changes nothing)."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(cleanup):
        for name in names:
            try:
                await store.delete_image(name)
            except errors.NotFound:
                pass
            except errors.SupervisorError as exc:
                _log.warning("import.undo_failed", image=name, error=str(exc))


async def _store(
    service: ImageService, image: PlannedImage, lease_id: str, snapshotter: str
) -> ImageRecord:
    if image.manifest is None or image.config is None:
        # Nothing for this host's platform: stored, not unpacked.
        return await service.store.put_image(image.name, image.top)
    return await store_image(
        service.store,
        image.name,
        image.top,
        image.manifest,
        image.config,
        lease_id=lease_id,
        snapshotter=snapshotter,
        cleanup=service.cleanup,
        progress=None,
    )
