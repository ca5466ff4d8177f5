"""Values that cross the boundary between the image code and containerd's
image-side services (content, images, leases, snapshots, diff)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from ._manifest import Descriptor

__all__ = ["Image", "ImageRecord", "LayerProgress", "Mount"]


@dataclass(frozen=True, slots=True)
class Mount:
    """One mount of a snapshot, as containerd describes it (``overlay``,
    ``bind``...): what a task's ``rootfs`` is made of."""

    type: str
    source: str
    target: str = ""
    options: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """containerd's image record: a name pointing at a manifest or index."""

    name: str
    target: Descriptor
    labels: dict[str, str]
    created_at: datetime.datetime | None = None
    updated_at: datetime.datetime | None = None


@dataclass(frozen=True, slots=True)
class Image:
    """An image in containerd, as :meth:`supervisor.Client.images` lists it.

    Attributes:
        name: the full reference it is stored under
            (``docker.io/library/busybox:latest``).
        digest: the digest of its manifest or index.
        media_type: the media type of that manifest or index.
        size: the size of that manifest or index (layers not included).
        labels: its containerd labels.
        created_at: when containerd first stored the record.
    """

    name: str
    digest: str
    media_type: str
    size: int
    labels: dict[str, str]
    created_at: datetime.datetime | None = None


@dataclass(frozen=True, slots=True)
class LayerProgress:
    """One report of a pull's progress, per blob.

    Attributes:
        digest: the blob.
        media_type: its media type (a layer's, a config's...).
        offset: bytes stored so far.
        size: the blob's size.
        state: ``"exists"`` (already in the content store), ``"downloading"``,
            ``"done"``, or ``"unpacked"`` (a layer applied to a snapshot).
    """

    digest: str
    media_type: str
    offset: int
    size: int
    state: str
