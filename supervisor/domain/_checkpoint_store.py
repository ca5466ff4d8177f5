"""Checkpoints as containerd keeps them: an image record labelled
``containerd.io/checkpoint=true`` pointing at an OCI index of CRIU's dump and
the container's spec, as containerd's Go client (and ``ctr``) writes them.
Listed, found by name, read back for a restore, removed."""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import errors
from ..oci._manifest import OCI_LAYER_GZIP, Descriptor

if TYPE_CHECKING:
    # Imported where used: grpclib and the bindings stay out of `import supervisor`.
    from ..backends.containerd_checkpoint import ContainerdCheckpoints
    from ..backends.containerd_images import ContainerdImages
    from ..oci._types import ImageRecord
    from ._session import Session

__all__ = [
    "Checkpoint",
    "CHECKPOINT_LABEL",
    "SPEC_MARK",
    "SavedCheckpoint",
    "checked_name",
    "list_checkpoints",
    "load_checkpoint",
    "remove_checkpoint",
    "stores",
]

CHECKPOINT_LABEL = "containerd.io/checkpoint"
CONTAINER_LABEL = "io.supervisor.checkpoint.container"
EXITED_LABEL = "io.supervisor.checkpoint.exited"
# The annotation that makes each checkpoint's spec blob its own (containerd
# issue #7980); a restore takes it out again.
SPEC_MARK = "io.supervisor.checkpoint.mark"
# The Go client's index annotations, which ctr's restore reads.
RUNTIME_ANNOTATION = "io.containerd.checkpoint.runtime"
IMAGE_ANNOTATION = "org.opencontainers.image.ref.name"
SNAPSHOTTER_ANNOTATION = "io.containerd.checkpoint.snapshotter"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,254}")
_INDEX_LIMIT = 1 << 20
_CONFIG_LIMIT = 16 << 20


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint in containerd's content store, as
    :meth:`supervisor.Client.checkpoints` lists it.

    Attributes:
        name: the name it is stored (and restored) under.
        container_id: the container it was taken of ("" if not recorded).
        digest: the digest of its index.
        exited: the task was stopped by the checkpoint (``exit=True``).
        created_at: when containerd stored it.
    """

    name: str
    container_id: str
    digest: str
    exited: bool
    created_at: datetime.datetime | None = None


@dataclass(frozen=True, slots=True)
class SavedCheckpoint:
    """What a restore needs of a checkpoint."""

    checkpoint: Checkpoint
    criu: Descriptor
    spec: dict[str, Any]
    runtime: str
    image: str
    snapshotter: str
    # The container's read-write layer (a checkpoint taken with rw=True).
    rw: Descriptor | None = None


def checked_name(name: object) -> str:
    """A checkpoint name: letters, digits and ``_.:/@-``, up to 255 chars.

    Raises:
        InvalidArgument: anything else.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise errors.InvalidArgument(
            f"bad checkpoint name {name!r}: letters, digits and _.:/@- "
            "(starting with a letter or digit), at most 255"
        )
    return name


def stores(session: Session) -> tuple[ContainerdCheckpoints, ContainerdImages]:
    """The checkpoint and content calls on the client's own channel.

    Raises:
        FailedPrecondition: the client does not talk to a real containerd.
    """
    from ..backends.containerd_checkpoint import ContainerdCheckpoints
    from ..backends.containerd_images import ContainerdImages

    channel = getattr(session.transport, "_channel", None)
    if channel is None:
        raise errors.FailedPrecondition("checkpoints need the containerd transport")
    timeout = session.timeouts.rpc
    return (
        ContainerdCheckpoints(channel, session.namespace, rpc_timeout=timeout),
        ContainerdImages(channel, session.namespace, rpc_timeout=timeout),
    )


def _checkpoint(record: ImageRecord) -> Checkpoint:
    return Checkpoint(
        name=record.name,
        container_id=record.labels.get(CONTAINER_LABEL, ""),
        digest=record.target.digest,
        exited=record.labels.get(EXITED_LABEL) == "true",
        created_at=record.created_at,
    )


async def list_checkpoints(session: Session) -> list[Checkpoint]:
    """Every checkpoint of the namespace, oldest first."""
    _, images = stores(session)
    found = [
        _checkpoint(r)
        for r in await images.list_images()
        if r.labels.get(CHECKPOINT_LABEL) == "true"
    ]
    epoch = datetime.datetime.min.replace(tzinfo=datetime.UTC)
    return sorted(found, key=lambda c: (c.created_at or epoch, c.name))


async def _record(images: ContainerdImages, name: str) -> ImageRecord:
    try:
        record = await images.get_image(checked_name(name))
    except errors.NotFound:
        raise errors.NotFound(f"no checkpoint named {name!r}") from None
    if record.labels.get(CHECKPOINT_LABEL) != "true":
        raise errors.NotFound(f"{name!r} is an image, not a checkpoint")
    return record


async def remove_checkpoint(session: Session, name: str) -> None:
    """Remove the checkpoint's record; containerd's GC takes its content
    (synchronously: gone when this returns).

    Raises:
        NotFound: no checkpoint of that name (an image that is no
            checkpoint is left alone).
    """
    _, images = stores(session)
    await _record(images, name)
    await images.delete_image(name, sync=True)


async def load_checkpoint(session: Session, name: str) -> SavedCheckpoint:
    """The checkpoint's index and spec, read back for a restore.

    Raises:
        NotFound: no such checkpoint. InvalidArgument: its index or spec is
        not what a checkpoint holds.
    """
    from ..backends.containerd_checkpoint import CONFIG_MEDIA_TYPE, CRIU_MEDIA_TYPE, decode_config

    _, images = stores(session)
    record = await _record(images, name)
    index = _json(await images.read_all(record.target.digest, _INDEX_LIMIT), name)
    manifests = index.get("manifests")
    annotations = index.get("annotations") or {}
    if not isinstance(manifests, list) or not isinstance(annotations, dict):
        raise errors.InvalidArgument(f"checkpoint {name!r} has no index of a checkpoint")
    by_type = {m.get("mediaType"): m for m in manifests if isinstance(m, dict)}
    if CRIU_MEDIA_TYPE not in by_type or CONFIG_MEDIA_TYPE not in by_type:
        raise errors.InvalidArgument(
            f"checkpoint {name!r} has no CRIU image or no spec (containerd issue #7980?)"
        )
    config, criu = by_type[CONFIG_MEDIA_TYPE], by_type[CRIU_MEDIA_TYPE]
    rw = by_type.get(OCI_LAYER_GZIP)
    try:
        config_digest = str(config["digest"])
        criu_desc = Descriptor(CRIU_MEDIA_TYPE, str(criu["digest"]), int(criu["size"]))
        rw_desc = None if rw is None else Descriptor.from_json(rw, "its rw layer")
    except (KeyError, TypeError, ValueError, errors.SupervisorError) as exc:
        raise errors.InvalidArgument(f"checkpoint {name!r} has a bad descriptor: {exc}") from exc
    spec = _json(decode_config(await images.read_all(config_digest, _CONFIG_LIMIT)), name)
    return SavedCheckpoint(
        checkpoint=_checkpoint(record),
        criu=criu_desc,
        spec=spec,
        runtime=str(annotations.get(RUNTIME_ANNOTATION, "")),
        image=str(annotations.get(IMAGE_ANNOTATION, "")),
        snapshotter=str(annotations.get(SNAPSHOTTER_ANNOTATION, "")),
        rw=rw_desc,
    )


def _json(data: bytes, name: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise errors.InvalidArgument(f"checkpoint {name!r} holds no JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise errors.InvalidArgument(f"checkpoint {name!r} holds no JSON object")
    return value
