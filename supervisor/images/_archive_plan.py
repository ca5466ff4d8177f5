"""Planning an archive's import before anything is written: what an OCI
image layout or a ``docker save`` tar holds, read and checked as hostile
input.  Small blobs (indexes, manifests, configs) are read and verified
here; layers are named by their member, and streamed and verified when
:mod:`._archive` writes them.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

from .. import errors
from ..oci._digest import sha256_digest
from ..oci._manifest import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_MANIFEST_SIZE,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Manifest,
    media_type_of,
    parse_config,
    parse_index,
    parse_manifest,
)
from ..oci._platform import Platform, select_platform
from ._layout import MAX_DEPTH, NAME_ANNOTATION, REF_ANNOTATION, blob_name
from ._pull import index_labels, manifest_labels
from ._reference import parse_reference
from ._tar import Archive, checkpoint, member_name, refuse

__all__ = ["Blob", "Plan", "PlannedImage", "plan_archive"]

_DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
_GZIP_MAGIC = b"\x1f\x8b"


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise refuse(f"{what} is not JSON: {exc}") from None
    except RecursionError:
        raise refuse(f"{what} is nested too deep") from None


@dataclass
class Blob:
    """A blob to store: small ones carry their (verified) bytes, large ones
    name the member they stream from."""

    desc: Descriptor
    data: bytes | None = None
    member: str = ""
    # Its bytes were hashed to make its descriptor (a docker save layer).
    verified: bool = False
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class PlannedImage:
    """An image record to create, and what to unpack for it."""

    name: str
    top: Descriptor
    # The manifest to unpack (this host's platform), if the archive has it.
    manifest: Manifest | None = None
    config: ImageConfig | None = None


@dataclass
class Plan:
    """Blobs in the order they are written (children before parents) and
    the image records to create."""

    blobs: dict[str, Blob] = field(default_factory=dict)
    images: list[PlannedImage] = field(default_factory=list)

    def add(self, blob: Blob) -> None:
        known = self.blobs.get(blob.desc.digest)
        if known is None:
            self.blobs[blob.desc.digest] = blob
        else:
            known.labels.update(blob.labels)


class _LayoutReader:
    """An OCI image layout inside the archive."""

    def __init__(self, archive: Archive, plan: Plan, platform: Platform) -> None:
        self.archive = archive
        self.plan = plan
        self.platform = platform
        # What walking each digest found: an index may name one child many
        # times, and indexes below it again (N children, four levels, would
        # be N**4 walks): each digest is read and walked once.
        self._walked: dict[str, tuple[Manifest, ImageConfig] | None] = {}

    def small(self, desc: Descriptor, what: str) -> bytes:
        name = blob_name(desc.digest)
        if desc.size > MAX_MANIFEST_SIZE:
            raise refuse(f"{what} {desc.digest} is larger than {MAX_MANIFEST_SIZE} bytes")
        data = self.archive.read_small(name, what)
        if len(data) != desc.size or sha256_digest(data) != desc.digest:
            raise errors.FailedPrecondition(
                f"image archive refused: {what} {name} is not the content of {desc.digest}"
            )
        return data

    def large(self, desc: Descriptor, what: str) -> Blob:
        name = blob_name(desc.digest)
        if name not in self.archive.files:
            raise refuse(f"{what} {desc.digest} is not in the archive")
        if self.archive.size(name) != desc.size:
            raise errors.FailedPrecondition(
                f"image archive refused: {name} has {self.archive.size(name)} bytes, "
                f"its descriptor says {desc.size}"
            )
        return Blob(desc, member=name)

    def manifest(self, desc: Descriptor) -> tuple[Manifest, ImageConfig]:
        body = self.small(desc, "manifest")
        manifest = parse_manifest(body, media_type_of(body, desc.media_type))
        config_body = self.small(manifest.config, "config")
        config = parse_config(config_body)
        for layer in manifest.layers:
            self.plan.add(self.large(layer, "layer"))
        self.plan.add(Blob(manifest.config, config_body))
        self.plan.add(Blob(desc, body, labels=manifest_labels(manifest)))
        return manifest, config

    def walk(self, desc: Descriptor, depth: int) -> tuple[Manifest, ImageConfig] | None:
        """Queue ``desc`` and what it points to that the archive holds; the
        manifest (and config) for this host's platform, if there is one."""
        if depth > MAX_DEPTH:
            raise refuse("indexes nested too deep")
        if desc.digest in self._walked:
            return self._walked[desc.digest]
        checkpoint()
        found = self._walk(desc, depth)
        self._walked[desc.digest] = found
        return found

    def _walk(self, desc: Descriptor, depth: int) -> tuple[Manifest, ImageConfig] | None:
        if desc.media_type in MANIFEST_TYPES:
            return self.manifest(desc)
        body = self.small(desc, "index")
        if media_type_of(body, desc.media_type) not in INDEX_TYPES:
            return self.manifest(desc)
        children = parse_index(body)
        # An index may offer platforms whose blobs the archive lacks (a
        # single-platform save): what is present is imported.
        present = [c for c in children if blob_name(c.digest) in self.archive.files]
        chosen: tuple[Manifest, ImageConfig] | None = None
        try:
            best = present[select_platform(self.platform, [c.platform for c in present])]
        except errors.NotFound:
            best = None  # imported, not unpacked: nothing here runs on this host
        for child in present:
            got = self.walk(child, depth + 1)
            if child is best:
                chosen = got
        self.plan.add(Blob(desc, body, labels=index_labels(children)))
        return chosen


def _image_name(desc: Descriptor, name: str | None) -> str:
    if name is not None:
        return name
    full = desc.annotations.get(NAME_ANNOTATION) or desc.annotations.get(REF_ANNOTATION, "")
    if "/" not in full:
        # OCI lets ref.name be a bare tag, which names no repository.
        raise refuse(
            f"image {desc.digest} has no full name in the archive"
            + (f" (only the tag {full!r})" if full else "")
            + ": pass name="
        )
    return str(parse_reference(full))


def _plan_layout(archive: Archive, name: str | None, platform: Platform) -> Plan:
    plan = Plan()
    index = _json(archive.read_small("index.json", "index.json"), "index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise refuse("index.json has no manifests list")
    try:
        entries = [Descriptor.from_json(m, "index.json") for m in index["manifests"]]
    except errors.FailedPrecondition as exc:
        raise refuse(exc.message) from None
    if not entries:
        raise refuse("index.json lists no image")
    if name is not None and len(entries) != 1:
        raise errors.InvalidArgument(
            f"the archive holds {len(entries)} images: name= can only name one"
        )
    reader = _LayoutReader(archive, plan, platform)
    for entry in entries:
        image_name = _image_name(entry, name)
        found = reader.walk(entry, 0)
        top = Descriptor(entry.media_type, entry.digest, entry.size)
        manifest, config = found if found is not None else (None, None)
        plan.images.append(PlannedImage(image_name, top, manifest, config))
    return plan


def _hash_member(archive: Archive, member: str) -> tuple[str, int, bool]:
    """(digest, size, gzip-compressed) of a member whose digest is not
    given (a legacy ``<id>/layer.tar``); each member (and what links to it)
    is read once however often the manifest names it."""
    # A link's entry is its target's TarInfo: key by the target's own name.
    key = archive.files[member].name
    found = archive.hashed.get(key)
    if found is None:
        found = archive.hashed[key] = _hash_member_once(archive, member)
    return found


def _hash_member_once(archive: Archive, member: str) -> tuple[str, int, bool]:
    digest, size, head = hashlib.sha256(), 0, b""
    for chunk in archive.chunks(member):
        if not head:
            head = chunk[:2]
        digest.update(chunk)
        size += len(chunk)
    return "sha256:" + digest.hexdigest(), size, head == _GZIP_MAGIC


def _plan_docker(archive: Archive, name: str | None) -> Plan:
    """A ``docker save`` archive (``manifest.json``): an OCI manifest is made
    for each of its images, over the same config and layer bytes."""
    plan = Plan()
    entries = _json(archive.read_small("manifest.json", "manifest.json"), "manifest.json")
    if not isinstance(entries, list) or not entries:
        raise refuse("manifest.json is not a non-empty list")
    if name is not None and len(entries) != 1:
        raise errors.InvalidArgument(
            f"the archive holds {len(entries)} images: name= can only name one"
        )
    for entry in entries:
        if not isinstance(entry, dict):
            raise refuse("a manifest.json entry is not an object")
        config_path, layer_paths = entry.get("Config"), entry.get("Layers")
        tags = entry.get("RepoTags") or []
        if not isinstance(config_path, str) or not isinstance(layer_paths, list):
            raise refuse("a manifest.json entry lacks Config or Layers")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise refuse("RepoTags is not a list of strings")
        config_body = archive.read_small(member_name(config_path), "config")
        config = parse_config(config_body)
        config_desc = Descriptor(OCI_CONFIG, sha256_digest(config_body), len(config_body))
        _check_named(config_path, config_desc.digest)
        if len(layer_paths) != len(config.diff_ids):
            raise errors.FailedPrecondition(
                f"image archive refused: {len(layer_paths)} layers, "
                f"the config has {len(config.diff_ids)} diff ids"
            )
        layers = []
        for path, diff_id in zip(layer_paths, config.diff_ids, strict=True):
            member = member_name(str(path))
            if member not in archive.files:
                raise refuse(f"layer {member!r} is not in the archive")
            digest, size, gzipped = _hash_member(archive, member)
            _check_named(member, digest)
            if not gzipped and digest != diff_id:
                raise errors.FailedPrecondition(
                    f"image archive refused: layer {member} is {digest}, the config says {diff_id}"
                )
            desc = Descriptor(OCI_LAYER_GZIP if gzipped else OCI_LAYER, digest, size)
            layers.append(desc)
            # Hashed above: streamed again and verified against that digest.
            plan.add(Blob(desc, member=member, verified=True))
        manifest = Manifest(OCI_MANIFEST, config_desc, tuple(layers))
        manifest_body = json.dumps(_manifest_json(manifest), separators=(",", ":")).encode()
        top = Descriptor(OCI_MANIFEST, sha256_digest(manifest_body), len(manifest_body))
        plan.add(Blob(config_desc, config_body))
        plan.add(Blob(top, manifest_body, labels=manifest_labels(manifest)))
        names = [name] if name is not None else [str(parse_reference(t)) for t in tags]
        if not names:
            raise refuse(f"image {config_desc.digest} has no RepoTags: pass name=")
        for image_name in names:
            plan.images.append(PlannedImage(image_name, top, manifest, config))
    return plan


def _check_named(member: str, digest: str) -> None:
    """A member called ``blobs/sha256/<hex>`` (or ``<hex>.json``) must hold
    the content of that digest."""
    base = posixpath.basename(member).removesuffix(".json")
    if len(base) == 64 and all(c in "0123456789abcdef" for c in base):
        if "sha256:" + base != digest:
            raise errors.FailedPrecondition(
                f"image archive refused: {member} is not the content of sha256:{base}"
            )


def _manifest_json(manifest: Manifest) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": manifest.media_type,
        "config": manifest.config.to_json(),
        "layers": [layer.to_json() for layer in manifest.layers],
    }


def plan_archive(archive: Archive, name: str | None, platform: Platform) -> Plan:
    """Everything ``archive`` holds, read and checked: the blobs to write and
    the images to create (``name`` for its only image, if given)."""
    if "index.json" in archive.files and "oci-layout" in archive.files:
        return _plan_layout(archive, name, platform)
    if "manifest.json" in archive.files:
        return _plan_docker(archive, name)
    raise refuse("neither an OCI image layout (index.json) nor a docker save (manifest.json)")
