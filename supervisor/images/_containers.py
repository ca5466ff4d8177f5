"""Containers made from images: a snapshot of their own, prepared on the
image's top layer, and the spec the image's config describes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from .. import errors
from .._log import get_logger
from ..domain._graceful import with_stop_signal
from ..oci._types import Mount
from ..spec._settings import ProcessSettings
from ._image_spec import spec_from_image, user_to_resolve
from ._pull import lease
from ._service import ImageService
from ._users import resolve_user

if TYPE_CHECKING:
    from ..domain._container import Container
    from ..domain._session import Session

__all__ = ["RootfsSnapshot", "SnapshotRootfs", "new_image_container"]

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
    settings: ProcessSettings,
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
    config = local.config.config
    body = spec_from_image(config, overrides=spec, settings=settings, resolve_names=True)
    named = user_to_resolve(config, settings, spec)
    body = with_stop_signal(body, config)
    store = service.store
    # Under a lease until the container record points at the snapshot: GC
    # may run at any moment in between.
    async with lease(store, "container", service.cleanup) as lease_id:
        mounts = await store.prepare_snapshot(name, container_id, top, lease=lease_id)
        try:
            if named is not None:
                scratch = session.state_dir / ".archive"
                user = await resolve_user(mounts, named, scratch, container_id)
                body["process"]["user"] = user
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


class SnapshotRootfs:
    """A container's own snapshot as its root filesystem (the domain's
    :class:`~supervisor.domain._rootfs.Rootfs`): made here, handed to the
    container, which asks it for its mounts and removes it with itself."""

    def __init__(
        self,
        session: Session,
        snapshotter: str,
        key: str,
        mounts: tuple[Mount, ...] = (),
    ) -> None:
        self._session = session
        self._snapshotter = snapshotter
        self._key = key
        self._mounts = mounts

    @property
    def snapshotter(self) -> str:
        return self._snapshotter

    @property
    def key(self) -> str:
        return self._key

    async def mounts(self) -> tuple[Mount, ...]:
        """The snapshot's mounts (asked of containerd for a container loaded
        from its record)."""
        if not self._mounts:
            store = ImageService(self._session).store
            self._mounts = await store.snapshot_mounts(self._snapshotter, self._key)
        return self._mounts

    async def remove(self) -> None:
        """Remove the snapshot; one already gone is fine."""
        service = ImageService(self._session)
        try:
            await service.store.remove_snapshot(self._snapshotter, self._key)
        except errors.NotFound:
            pass
        _log.debug("snapshot.remove", snapshotter=self._snapshotter, key=self._key)
