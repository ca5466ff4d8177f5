"""Containers made from images: a snapshot of their own, prepared on the
image's top layer, and the spec the image's config describes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from .. import errors
from .._log import get_logger
from ._image_spec import spec_from_image
from ._pull import lease
from ._service import ImageService
from ._types import Mount

if TYPE_CHECKING:
    from .._container import Container
    from .._session import Session

__all__ = ["RootfsSnapshot", "new_image_container", "remove_rootfs", "rootfs_mounts"]

_log = get_logger("images.containers")

# (snapshotter, snapshot key, its mounts), as Client hands it to the container.
RootfsSnapshot = tuple[str, str, tuple[Mount, ...]]
Create = Callable[[dict[str, Any], RootfsSnapshot, str], Awaitable["Container"]]


async def new_image_container(
    session: Session,
    container_id: str,
    image: str,
    spec: Mapping[str, Any] | None,
    *,
    args: Sequence[str] | None,
    snapshotter: str | None,
    create: Create,
) -> Container:
    """Prepare the container's snapshot (key = container id) on the image's
    top chain id, build its spec, and have ``create`` make the container
    that records the snapshot. A failure removes the snapshot again."""
    service = ImageService(session)
    local = await service.local(image)
    name = await service.snapshotter(snapshotter)
    top = await service.ensure_unpacked(local, name)
    body = spec_from_image(local.config.config, args=args, overrides=spec)
    store = service.store
    # Under a lease until the container record points at the snapshot: GC
    # may run at any moment in between.
    async with lease(store, "container", service.cleanup) as lease_id:
        mounts = await store.prepare_snapshot(name, container_id, top, lease=lease_id)
        try:
            container = await create(body, (name, container_id, mounts), local.record.name)
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(service.cleanup):
                try:
                    await store.remove_snapshot(name, container_id)
                except errors.NotFound:
                    pass
                except errors.SupervisorError as exc:
                    _log.warning(
                        "snapshot.remove_failed", container_id=container_id, error=str(exc)
                    )
            raise
    return container


async def rootfs_mounts(session: Session, snapshotter: str, key: str) -> tuple[Mount, ...]:
    """The mounts of a container's snapshot (for a container loaded from
    containerd, whose record names it)."""
    return await ImageService(session).store.snapshot_mounts(snapshotter, key)


async def remove_rootfs(session: Session, snapshotter: str, key: str) -> None:
    """Remove a container's snapshot; one already gone is fine."""
    service = ImageService(session)
    try:
        await service.store.remove_snapshot(snapshotter, key)
    except errors.NotFound:
        pass
    _log.debug("snapshot.remove", snapshotter=snapshotter, key=key)
