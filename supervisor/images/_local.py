"""Reading an image back from containerd's content store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import errors
from ..oci._manifest import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_MANIFEST_SIZE,
    Descriptor,
    ImageConfig,
    Manifest,
    media_type_of,
    parse_config,
    parse_index,
    parse_manifest,
)
from ..oci._platform import Platform, select_platform
from ..oci._types import ImageRecord

if TYPE_CHECKING:
    from ..backends.containerd_images import ContainerdImages

__all__ = ["LocalImage", "load_image"]


class LocalImage:
    """An image record with its platform's manifest and config, read from
    the content store."""

    def __init__(
        self,
        record: ImageRecord,
        manifest_desc: Descriptor,
        manifest: Manifest,
        config: ImageConfig,
    ) -> None:
        self.record = record
        self.manifest_desc = manifest_desc
        self.manifest = manifest
        self.config = config


async def load_image(store: ContainerdImages, name: str, platform: Platform) -> LocalImage:
    """Raises NotFound when the record or the content for ``platform`` is missing."""
    record = await store.get_image(name)
    desc = record.target
    body = await store.read_all(desc.digest, MAX_MANIFEST_SIZE)
    media_type = media_type_of(body, desc.media_type)
    if media_type in INDEX_TYPES:
        children = parse_index(body)
        chosen = children[select_platform(platform, [c.platform for c in children])]
        body = await store.read_all(chosen.digest, MAX_MANIFEST_SIZE)
        media_type = media_type_of(body, chosen.media_type)
        desc = Descriptor(media_type, chosen.digest, chosen.size)
    if media_type not in MANIFEST_TYPES:
        raise errors.FailedPrecondition(f"{name}: unsupported manifest type {media_type!r}")
    manifest = parse_manifest(body, media_type)
    config = parse_config(await store.read_all(manifest.config.digest, MAX_MANIFEST_SIZE))
    return LocalImage(record, desc, manifest, config)
