"""Checkpointing a running task with CRIU (:meth:`Task.checkpoint`).

The order keeps a failure harmless: every refusal (a terminal, a network,
no CRIU, a task not running, a name taken) comes before anything changes;
the dump and everything written after it are held by a lease of the call's
own, so a dump that fails half way leaves its blobs to containerd's GC; the
image record, made last and only if no record of that name exists, is what
makes the checkpoint exist.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio

from .. import errors
from .._cleanup import shielded
from .._log import get_logger
from .._types import ProcessState
from ..oci._digest import sha256_digest
from ..oci._manifest import OCI_INDEX, Descriptor
from ._checkpoint_rw import paused, rw_layer, until_done
from ._checkpoint_store import (
    CHECKPOINT_LABEL,
    CONTAINER_LABEL,
    EXITED_LABEL,
    IMAGE_ANNOTATION,
    RUNTIME_ANNOTATION,
    SNAPSHOTTER_ANNOTATION,
    SPEC_MARK,
    Checkpoint,
    checked_name,
    stores,
)
from ._criu import criu_failure, criu_ready

if TYPE_CHECKING:
    from .._types import ContainerRecord
    from ..backends.containerd_images import ContainerdImages
    from ._process import Process
    from ._session import Session

__all__ = ["checkpoint_task"]

_log = get_logger("checkpoint")

# What a lease keeps if its owner dies before deleting it.
_LEASE_EXPIRY = datetime.timedelta(hours=1)
_NO_SNAPSHOT = (
    "rw=True saves the changes of a container's own snapshot (one made from an image), "
    "and this container has none: its rootfs directory is used in place, and is still "
    "there at restore"
)


def _refusal(task: Process) -> str | None:
    """Why this task cannot be checkpointed, known without asking anyone."""
    process = task.container.spec.get("process")
    if isinstance(process, dict) and process.get("terminal"):
        return "a task on a terminal cannot be checkpointed (CRIU restores no terminal)"
    if getattr(task.container, "network_attachment", None) is not None:
        return "a container on a CNI network cannot be checkpointed (its network is not saved)"
    return None


async def checkpoint_task(
    task: Process, name: str | None, *, exit: bool, rw: bool, limit: float
) -> Checkpoint:
    """:meth:`Task.checkpoint`."""
    session: Session = task._session
    session.check_open()
    cid = task.container.id
    if name is None:
        name = f"{cid}-{datetime.datetime.now(datetime.UTC):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
    name = checked_name(name)
    if not limit > 0:
        raise errors.InvalidArgument(f"timeout must be positive, not {limit!r}")
    if not isinstance(rw, bool):
        raise errors.InvalidArgument(f"rw must be True or False, not {rw!r}", container_id=cid)
    if rw and getattr(task.container, "snapshot_key", None) is None:
        raise errors.InvalidArgument(_NO_SNAPSHOT, container_id=cid)
    reason = _refusal(task)
    if reason is not None:
        raise errors.FailedPrecondition(reason, container_id=cid)
    _, images = stores(session)
    await criu_ready(session.timeouts.cleanup, container_id=cid)
    state = await task.status()
    if state is not ProcessState.RUNNING:
        raise errors.FailedPrecondition(
            f"only a running task can be checkpointed (this one is {state.value})",
            container_id=cid,
        )
    with contextlib.suppress(errors.NotFound):
        await images.get_image(name)
        raise errors.AlreadyExists(f"an image named {name!r} exists", container_id=cid)
    record = await session.transport.get_container(cid)
    if rw and not record.snapshot_key:
        raise errors.InvalidArgument(_NO_SNAPSHOT, container_id=cid)
    # Shielded: a dump cancelled half way would leave runc's CRIU killed
    # with the task frozen; bounded by the caller's timeout.
    with shielded(limit, "checkpointing the task"):
        made = await _checkpoint(session, record, name, exit=exit, rw=rw)
    try:
        await anyio.lowlevel.checkpoint_if_cancelled()
    except BaseException:
        if not exit:
            # The task runs on as it was: the checkpoint nobody receives goes.
            with anyio.CancelScope(shield=True), anyio.move_on_after(session.timeouts.cleanup):
                with contextlib.suppress(errors.SupervisorError):
                    await images.delete_image(name, sync=True)
        raise
    _log.info("task.checkpoint", container_id=cid, checkpoint=name, exit=exit)
    return made


async def _checkpoint(
    session: Session, record: ContainerRecord, name: str, *, exit: bool, rw: bool
) -> Checkpoint:
    dumps, images = stores(session)
    cid = record.id
    async with _lease(images, session.timeouts.cleanup) as lease:
        if rw:
            # Frozen from before the diff until after the dump: the files and
            # the memory saved are of one moment. The diff comes first, so
            # that a diff that fails leaves a task that was not stopped.
            async with paused(session, cid, exit=exit):
                layer = await rw_layer(session, record, lease)
                manifests = [*await _dump(session, record, lease, exit=exit), layer]
        else:
            manifests = await _dump(session, record, lease, exit=exit)
        annotations = {RUNTIME_ANNOTATION: record.runtime}
        if record.snapshot_key:
            annotations[SNAPSHOTTER_ANNOTATION] = record.snapshotter
        if record.image:
            annotations[IMAGE_ANNOTATION] = record.image
        index = await _write_index(images, lease, manifests, annotations)
        labels = {
            CHECKPOINT_LABEL: "true",
            CONTAINER_LABEL: cid,
            EXITED_LABEL: "true" if exit else "false",
        }
        created = await dumps.create_image(name, index, labels)
    return Checkpoint(name, cid, index.digest, exit, created)


async def _dump(
    session: Session, record: ContainerRecord, lease: str, *, exit: bool
) -> list[Descriptor]:
    """CRIU's dump and the spec, written under ``lease``: [criu, config]."""
    dumps, _ = stores(session)
    cid = record.id
    marked: dict[str, Any] = json.loads(json.dumps(record.spec))
    marked.setdefault("annotations", {})[SPEC_MARK] = secrets.token_hex(16)
    try:
        # Inside: a mark whose answer was lost is taken out all the same.
        await dumps.set_spec(cid, marked)
        criu, config = await dumps.checkpoint(cid, exit=exit, lease=lease)
    except errors.SupervisorError as exc:
        raise criu_failure(exc, "dump the task", container_id=cid) from exc
    finally:
        await _put_back(session, cid, record.spec)
    return [criu, config]


async def _put_back(session: Session, cid: str, spec: dict[str, Any]) -> None:
    """The container is left with the spec it had (bounded, shielded)."""
    dumps, _ = stores(session)
    await until_done(
        lambda: dumps.set_spec(cid, spec), session.timeouts.cleanup, f"the spec of {cid}"
    )


async def _write_index(
    images: ContainerdImages,
    lease: str,
    manifests: list[Descriptor],
    annotations: dict[str, str],
) -> Descriptor:
    """The checkpoint's OCI index, stored with the GC references that keep
    its blobs as long as it exists."""
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [m.to_json() for m in manifests],
        "annotations": annotations,
    }
    data = json.dumps(body, separators=(",", ":")).encode()
    desc = Descriptor(OCI_INDEX, sha256_digest(data), len(data))
    gc_refs = {f"containerd.io/gc.ref.content.{i}": m.digest for i, m in enumerate(manifests)}

    @contextlib.asynccontextmanager
    async def source(offset: int) -> AsyncIterator[AsyncIterator[bytes]]:
        async def chunks() -> AsyncIterator[bytes]:
            yield data[offset:]

        yield chunks()

    await images.write_content(
        f"supervisor-checkpoint-{desc.digest}", desc, source, lease=lease, labels=gc_refs
    )
    return desc


@contextlib.asynccontextmanager
async def _lease(images: ContainerdImages, cleanup: float) -> AsyncIterator[str]:
    """A lease of the call's own, deleted however the block ends: what the
    block wrote and no image record keeps is then GC's."""
    lease_id = f"supervisor-checkpoint-{secrets.token_hex(8)}"
    with anyio.CancelScope(shield=True), anyio.fail_after(cleanup):
        await images.create_lease(lease_id, _LEASE_EXPIRY)
    failed = True
    try:
        yield lease_id
        failed = False
    finally:
        # After a failure, GC runs before the call returns: what the attempt
        # wrote is gone when the caller looks.
        await until_done(
            lambda: images.delete_lease(lease_id, sync=failed), cleanup, f"lease {lease_id}"
        )
