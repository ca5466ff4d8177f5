"""An OCI image-layout tar of busybox with a config of the test's choosing,
for importing into containerd without a registry."""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path
from typing import Any

from tests._registry import _blob, busybox_layer, digest

_LAYER: bytes | None = None


def image_tar(path: Path, ref: str, config: dict[str, Any]) -> Path:
    """Write an OCI layout tar holding one linux/amd64 busybox image named
    ``ref`` whose ``config`` object is ``config``; returns ``path``."""
    global _LAYER
    if _LAYER is None:
        _LAYER = busybox_layer()
    root = path.with_suffix(".d")
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    layer = {
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        **_blob(root, gzip.compress(_LAYER, mtime=0)),
    }
    body = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [digest(_LAYER)]},
    }
    cfg = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        **_blob(root, json.dumps(body).encode()),
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": cfg,
        "layers": [layer],
    }
    desc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **_blob(root, json.dumps(manifest).encode()),
        "annotations": {"org.opencontainers.image.ref.name": ref},
    }
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    with tarfile.open(path, "w") as tar:
        for item in sorted(root.rglob("*")):
            tar.add(item, arcname=str(item.relative_to(root)), recursive=False)
    return path
