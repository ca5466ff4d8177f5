"""Hostile documents and archives, without containerd: deep JSON, indexes
that name one child many times."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from supervisor import errors

DEEP = b"[" * 100_000 + b"]" * 100_000  # 200 KB, far under the 4 MiB cap
DEEP_OBJECT = b'{"a":' * 50_000 + b"1" + b"}" * 50_000


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT])
def test_deeply_nested_documents_are_refused(body: bytes) -> None:
    from supervisor.oci._manifest import (
        OCI_MANIFEST,
        media_type_of,
        parse_config,
        parse_index,
        parse_manifest,
    )

    for parse in (
        lambda: parse_manifest(body, OCI_MANIFEST),
        lambda: parse_index(body),
        lambda: parse_config(body),
        lambda: media_type_of(body, ""),
    ):
        with pytest.raises(errors.FailedPrecondition, match="nested too deep"):
            parse()


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("member", ["index.json", "manifest.json"])
def test_deep_json_in_an_archive_refuses_it(tmp_path: Path, member: str) -> None:
    from supervisor.images._archive_plan import plan_archive as _plan
    from supervisor.images._tar import Archive
    from supervisor.oci._platform import host_platform

    members = {member: DEEP}
    if member == "index.json":
        members["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
    archive = Archive.open(str(_tar(tmp_path / "deep.tar", members)))
    try:
        with pytest.raises(errors.InvalidArgument, match="nested too deep"):
            _plan(archive, None, host_platform())
    finally:
        archive.close()


def test_a_deep_config_in_a_docker_save_refuses_it(tmp_path: Path) -> None:
    from supervisor.images._archive_plan import plan_archive as _plan
    from supervisor.images._tar import Archive
    from supervisor.oci._platform import host_platform

    manifest = [{"Config": "config.json", "RepoTags": ["x:1"], "Layers": []}]
    members = {"manifest.json": json.dumps(manifest).encode(), "config.json": DEEP}
    archive = Archive.open(str(_tar(tmp_path / "deep.tar", members)))
    try:
        with pytest.raises(errors.FailedPrecondition, match="nested too deep"):
            _plan(archive, None, host_platform())
    finally:
        archive.close()


def _fanout_layout(n: int) -> dict[str, bytes]:
    """An OCI layout whose index names an index N times, four levels deep,
    above one manifest: N**4 paths to the same manifest."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict[str, Any]:
        blobs[f"blobs/sha256/{_digest(data)[7:]}"] = data
        return {"digest": _digest(data), "size": len(data)}

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w"):
        pass
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer.getvalue())]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **blob(json.dumps(config).encode()),
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", **blob(layer.getvalue())}
        ],
    }
    platform = {"os": "linux", "architecture": "amd64"}
    child = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "platform": platform}
    child.update(blob(json.dumps(manifest).encode()))
    for _ in range(4):
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [child] * n,
        }
        child = {"mediaType": "application/vnd.oci.image.index.v1+json", "platform": platform}
        child.update(blob(json.dumps(index).encode()))
    child["annotations"] = {"io.containerd.image.name": "example.com/fan:1"}
    return {
        "oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
        "index.json": json.dumps({"schemaVersion": 2, "manifests": [child]}).encode(),
        **blobs,
    }


def test_an_index_naming_a_child_many_times_is_walked_once_per_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisor.images._archive_plan import plan_archive as _plan
    from supervisor.images._tar import Archive
    from supervisor.oci._platform import Platform

    members = _fanout_layout(8)
    reads: list[str] = []
    original = Archive.read_small

    def counting(self: Archive, name: str, what: str) -> bytes:
        reads.append(name)
        return original(self, name, what)

    monkeypatch.setattr(Archive, "read_small", counting)
    archive = Archive.open(str(_tar(tmp_path / "fan.tar", members)))
    try:
        plan = _plan(archive, None, Platform("linux", "amd64"))
    finally:
        archive.close()
    # index.json, four indexes, one manifest, one config: each read once
    # (8**4 = 4096 walks of the manifest before).
    assert sorted(reads) == sorted(set(reads)), len(reads)
    assert len(reads) == 7
    [image] = plan.images
    assert image.name == "example.com/fan:1"
    assert image.manifest is not None


def test_the_images_command_loads_no_client() -> None:
    # `supervisor images` lists over the blocking channel, as `ps` does:
    # loading its module must not pull in the client, grpclib, the
    # generated bindings or the image code.
    import subprocess
    import sys

    code = (
        "import sys, supervisor.cli._images\n"
        "heavy = [m for m in ('supervisor.client._client', 'grpclib', 'supervisor._proto',"
        " 'supervisor.images', 'anyio', 'asyncio') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
