"""A checkpoint's read-write layer (``task.checkpoint(rw=True)``): what the
container changed in its own snapshot, as a layer in the content store.

As containerd's Go client makes it (``WithCheckpointRW``): the Diff
service compares a read-only view of the snapshot's parent with the
snapshot itself and writes the changes as a gzip'd OCI layer, which ``ctr
containers restore --rw`` and :meth:`Client.restore_checkpoint` apply onto a
new snapshot of the same image. The task is frozen meanwhile, so that the
files and the memory CRIU saves are of one moment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

from .. import errors
from .._log import get_logger
from .._timeouts import backoff
from ..oci._manifest import OCI_LAYER_GZIP, Descriptor
from ..oci._platform import host_platform

if TYPE_CHECKING:
    from .._types import ContainerRecord
    from ..backends.containerd_diff import ContainerdDiff
    from ._session import Session

__all__ = ["RW_MEDIA_TYPE", "paused", "rw_layer", "until_done"]

_log = get_logger("checkpoint")

# The media type ctr and the Go client give the layer and look for at restore.
RW_MEDIA_TYPE = OCI_LAYER_GZIP


async def until_done(step: Callable[[], Awaitable[object]], limit: float, what: str) -> bool:
    """``step``, tried again while containerd does not answer (it may be
    restarting after a crash mid-dump), within ``limit`` (shielded); whether
    it was done (a failure is logged)."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(limit) as scope:
        for pause in backoff(0.05, 1.0):
            try:
                await step()
                return True
            except (errors.Unavailable, errors.DeadlineExceeded) as exc:
                last: errors.SupervisorError = exc
                await anyio.sleep(pause)
            except errors.SupervisorError as exc:
                last = exc
                break
    reason = "no answer in time" if scope.cancelled_caught else str(last)
    _log.warning("checkpoint.cleanup_failed", what=what, error=reason)
    return False


def _diffs(session: Session) -> ContainerdDiff:
    from ..backends.containerd_diff import ContainerdDiff

    channel = getattr(session.transport, "_channel", None)
    if channel is None:
        raise errors.FailedPrecondition("checkpoints need the containerd transport")
    return ContainerdDiff(channel, session.namespace, rpc_timeout=session.timeouts.rpc)


@contextlib.asynccontextmanager
async def paused(session: Session, cid: str, *, exit: bool) -> AsyncIterator[None]:
    """The task frozen for the block, thawed however the block ends (bounded,
    shielded). After a block that stopped the task (``exit``), there is no
    task left to thaw, and the failure to is expected."""
    transport = session.transport
    try:
        await transport.pause(cid)
    except BaseException:
        # An answer lost after the freeze: thawed all the same.
        with contextlib.suppress(errors.SupervisorError):
            with anyio.CancelScope(shield=True), anyio.move_on_after(session.timeouts.cleanup):
                await transport.resume(cid)
        raise
    stopped = False
    try:
        yield
        stopped = exit
    finally:
        if stopped:
            with anyio.CancelScope(shield=True), anyio.move_on_after(session.timeouts.cleanup):
                with contextlib.suppress(errors.SupervisorError):
                    await transport.resume(cid)
        else:
            await until_done(
                lambda: transport.resume(cid), session.timeouts.cleanup, f"resuming {cid}"
            )


async def rw_layer(session: Session, record: ContainerRecord, lease: str) -> Descriptor:
    """The changes of the container's snapshot over its parent, a layer
    written under ``lease`` (containerd's GC takes it with the lease unless
    a checkpoint's index refers to it)."""
    from ._checkpoint_store import stores

    diffs = _diffs(session)
    _, images = stores(session)
    snapshotter, key = record.snapshotter, record.snapshot_key
    parent = await diffs.parent(snapshotter, key)
    token = secrets.token_hex(8)
    view = f"supervisor-checkpoint-view-{token}"
    lower = await diffs.view(snapshotter, view, parent, lease=lease)
    try:
        upper = await images.snapshot_mounts(snapshotter, key)
        layer = await diffs.compare(
            lower, upper, media_type=RW_MEDIA_TYPE, ref=f"checkpoint-rw-{key}-{token}", lease=lease
        )
    finally:

        async def remove() -> None:
            with contextlib.suppress(errors.NotFound):
                await images.remove_snapshot(snapshotter, view)

        await until_done(remove, session.timeouts.cleanup, f"snapshot {view}")
    if layer.media_type != RW_MEDIA_TYPE:
        raise errors.Unknown(f"containerd's diff service made a {layer.media_type} layer")
    return dataclasses.replace(layer, platform=host_platform())
