"""An OCI image-layout tar of busybox with a config of the test's choosing,
for importing into containerd without a registry."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from tests._registry import _blob, busybox_layer, digest

_LAYER: bytes | None = None


def _files_layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def image_tar(
    path: Path, ref: str, config: dict[str, Any], files: dict[str, bytes] | None = None
) -> Path:
    """Write an OCI layout tar holding one linux/amd64 busybox image named
    ``ref`` whose ``config`` object is ``config`` (and, with ``files``, a
    second layer of those files); returns ``path``."""
    global _LAYER
    if _LAYER is None:
        _LAYER = busybox_layer()
    root = path.with_suffix(".d")
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    tars = [_LAYER] + ([_files_layer(files)] if files else [])
    layers = [
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            **_blob(root, gzip.compress(data, mtime=0)),
        }
        for data in tars
    ]
    body = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [digest(data) for data in tars]},
    }
    cfg = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        **_blob(root, json.dumps(body).encode()),
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": cfg,
        "layers": layers,
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
