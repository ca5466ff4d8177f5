"""A checkpoint of a container made from an image, restored into a new
container: a new snapshot of the same image with the checkpoint's read-write
layer applied on it (the Go client's ``WithRestoreImage`` and
``WithRestoreRW``), which the new container then owns.

Everything that can refuse is asked first (:func:`rw_plan`), before anything
is made; a failure after that removes the snapshot again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from .. import errors
from .._log import get_logger
from ..oci._digest import chain_ids

if TYPE_CHECKING:
    from ..backends.containerd_images import ContainerdImages
    from ..domain._checkpoint_store import SavedCheckpoint
    from ..domain._container import Container
    from ..domain._session import Session
    from ..images._containers import RootfsSnapshot
    from ..oci._manifest import Descriptor

__all__ = ["RwPlan", "rw_container", "rw_plan"]

_log = get_logger("client")


@dataclass(frozen=True, slots=True)
class RwPlan:
    """What a new container restored from a checkpoint gets as its root
    filesystem: a snapshot on ``parent`` with ``layer`` applied."""

    image: str
    snapshotter: str
    parent: str
    layer: Descriptor


async def rw_plan(session: Session, id: str, saved: SavedCheckpoint) -> RwPlan:
    """Whether the checkpoint of a container made from an image can be
    restored into new container ``id``, asked before anything is made.

    Raises:
        FailedPrecondition: the checkpoint has no rw layer (taken without
            ``rw=True``) or names no image; the image is not unpacked in the
            checkpoint's snapshotter.
        NotFound: the image is not here, or the layer is not in the
            content store.
    """
    from ..images._service import ImageService

    name, source = saved.checkpoint.name, saved.checkpoint.container_id or "its container"
    if saved.rw is None:
        raise errors.FailedPrecondition(
            f"checkpoint {name!r} is of a container made from an image ({source}) and "
            "does not hold its files: it restores only into that container. Checkpoint "
            "with rw=True (`checkpoint create --rw`) to restore into a new one",
            container_id=id,
        )
    if not saved.image:
        raise errors.FailedPrecondition(
            f"checkpoint {name!r} names no image for its rw layer to go on", container_id=id
        )
    service = ImageService(session)
    try:
        local = await service.local(saved.image)
    except errors.NotFound:
        raise errors.NotFound(
            f"image {saved.image!r}, which checkpoint {name!r} restores onto, is not here: "
            "pull or import it first",
            container_id=id,
        ) from None
    chains = chain_ids(local.config.diff_ids)
    parent = chains[-1] if chains else ""
    if parent and not await service.store.snapshot_exists(saved.snapshotter, parent):
        raise errors.FailedPrecondition(
            f"image {saved.image!r} is not unpacked in snapshotter {saved.snapshotter!r}, "
            f"which checkpoint {name!r} was taken on: make a container from it there first",
            container_id=id,
        )
    if await service.store.content_size(saved.rw.digest) is None:
        raise errors.NotFound(
            f"checkpoint {name!r}'s rw layer ({saved.rw.digest}) is not in the content store",
            container_id=id,
        )
    return RwPlan(saved.image, saved.snapshotter, parent, saved.rw)


async def rw_container(
    session: Session,
    id: str,
    plan: RwPlan,
    create: Callable[[RootfsSnapshot], Awaitable[Container]],
) -> Container:
    """Snapshot ``id`` on the plan's parent with its layer applied, and the
    container ``create`` makes on it; a failure or cancellation on the way
    removes the snapshot (the container, once made, removes it with itself)."""
    from ..images._pull import lease
    from ..images._service import ImageService

    service = ImageService(session)
    store = service.store
    # Under a lease until the container record refers to the snapshot: GC
    # may run at any moment in between.
    async with lease(store, "restore", service.cleanup) as lease_id:
        try:
            mounts = await store.prepare_snapshot(plan.snapshotter, id, plan.parent, lease=lease_id)
        except errors.AlreadyExists:
            raise errors.AlreadyExists(
                f"a snapshot {id!r} exists in {plan.snapshotter!r} (left by another "
                "container?): it is left as it is",
                container_id=id,
            ) from None
        except BaseException:
            # Made or not (a prepare whose answer was lost): ours, not left.
            await _remove(store, plan.snapshotter, id, service.cleanup)
            raise
        try:
            await store.apply_layer(plan.layer, mounts, lease=lease_id)
            return await create((plan.snapshotter, id, mounts))
        except BaseException:
            await _remove(store, plan.snapshotter, id, service.cleanup)
            raise


async def _remove(store: ContainerdImages, snapshotter: str, key: str, limit: float) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(limit):
        try:
            await store.remove_snapshot(snapshotter, key)
        except errors.NotFound:
            pass
        except errors.SupervisorError as exc:
            _log.warning("snapshot.remove_failed", container_id=key, error=str(exc))
