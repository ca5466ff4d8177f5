"""Manifests, indexes and image configs, in Docker v2 and OCI media types."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .. import errors
from ._digest import check_digest
from ._platform import Platform

__all__ = [
    "CONFIG_TYPES",
    "Descriptor",
    "INDEX_TYPES",
    "ImageConfig",
    "LAYER_TYPES",
    "MANIFEST_TYPES",
    "Manifest",
    "MAX_MANIFEST_SIZE",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_LAYER",
    "OCI_MANIFEST",
    "parse_config",
    "parse_index",
    "parse_manifest",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

MANIFEST_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
INDEX_TYPES = frozenset({DOCKER_LIST, OCI_INDEX})
CONFIG_TYPES = frozenset({DOCKER_CONFIG, OCI_CONFIG})
LAYER_TYPES = frozenset(
    {
        DOCKER_LAYER_GZIP,
        DOCKER_LAYER_FOREIGN,
        OCI_LAYER,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
    }
)
# What the registry is offered in Accept, most wanted first.
ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
# Manifests and configs are read whole into memory: refuse absurd ones.
MAX_MANIFEST_SIZE = 4 << 20


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A pointer to content: its media type, digest and size."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.platform is not None:
            p = self.platform
            out["platform"] = {"os": p.os, "architecture": p.architecture}
            if p.variant:
                out["platform"]["variant"] = p.variant
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, value: Any, what: str) -> Descriptor:
        if not isinstance(value, dict):
            raise errors.FailedPrecondition(f"{what}: a descriptor is not an object")
        media_type, size = value.get("mediaType", ""), value.get("size")
        if not isinstance(media_type, str):
            raise errors.FailedPrecondition(f"{what}: bad mediaType")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise errors.FailedPrecondition(f"{what}: bad size {size!r}")
        try:
            digest = check_digest(value.get("digest"))
        except errors.InvalidArgument as exc:
            raise errors.FailedPrecondition(f"{what}: {exc.message}") from None
        annotations = value.get("annotations")
        notes = (
            {k: v for k, v in annotations.items() if isinstance(k, str) and isinstance(v, str)}
            if isinstance(annotations, dict)
            else {}
        )
        return cls(media_type, digest, size, Platform.from_json(value.get("platform")), notes)


@dataclass(frozen=True, slots=True)
class Manifest:
    """One image for one platform: its config and its layers, bottom first."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The parts of an image's config blob the library uses."""

    platform: Platform
    diff_ids: tuple[str, ...]
    config: dict[str, Any]


def _load(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_MANIFEST_SIZE:
        raise errors.FailedPrecondition(f"{what} is larger than {MAX_MANIFEST_SIZE} bytes")
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.FailedPrecondition(f"{what} is not JSON: {exc}") from None
    except RecursionError:
        # Deep nesting fits well under the size cap and exhausts the stack.
        raise errors.FailedPrecondition(f"{what} is nested too deep") from None
    if not isinstance(value, dict):
        raise errors.FailedPrecondition(f"{what} is not a JSON object")
    return value


def media_type_of(data: bytes, declared: str) -> str:
    """The media type of a manifest or index: the declared one (a registry's
    Content-Type or a descriptor's), else the document's own ``mediaType``,
    else guessed from its shape as OCI allows."""
    if declared in MANIFEST_TYPES or declared in INDEX_TYPES:
        return declared
    body = _load(data, "manifest")
    own = body.get("mediaType")
    if isinstance(own, str) and (own in MANIFEST_TYPES or own in INDEX_TYPES):
        return own
    if "manifests" in body:
        return OCI_INDEX
    if "layers" in body and "config" in body:
        return OCI_MANIFEST
    raise errors.FailedPrecondition(f"unsupported manifest type {declared or own!r}")


def parse_index(data: bytes) -> list[Descriptor]:
    """The manifests an index or manifest list points to."""
    body = _load(data, "index")
    manifests = body.get("manifests")
    if not isinstance(manifests, list):
        raise errors.FailedPrecondition("index has no manifests list")
    return [Descriptor.from_json(m, "index") for m in manifests]


def parse_manifest(data: bytes, media_type: str) -> Manifest:
    body = _load(data, "manifest")
    if body.get("schemaVersion") != 2:
        raise errors.FailedPrecondition("only schema 2 manifests are supported")
    config = Descriptor.from_json(body.get("config"), "manifest config")
    layers_json = body.get("layers")
    if not isinstance(layers_json, list):
        raise errors.FailedPrecondition("manifest has no layers list")
    layers = tuple(Descriptor.from_json(x, "manifest layer") for x in layers_json)
    for layer in layers:
        if layer.media_type not in LAYER_TYPES:
            raise errors.FailedPrecondition(f"unsupported layer type {layer.media_type!r}")
    return Manifest(media_type, config, layers)


def parse_config(data: bytes) -> ImageConfig:
    body = _load(data, "image config")
    rootfs = body.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        raise errors.FailedPrecondition("image config has no rootfs.diff_ids")
    try:
        checked = tuple(check_digest(d, "diff id") for d in diff_ids)
    except errors.InvalidArgument as exc:
        raise errors.FailedPrecondition(exc.message) from None
    platform = Platform(
        str(body.get("os") or "linux"),
        str(body.get("architecture") or ""),
        str(body.get("variant") or ""),
    )
    config = body.get("config")
    return ImageConfig(platform, checked, config if isinstance(config, dict) else {})
