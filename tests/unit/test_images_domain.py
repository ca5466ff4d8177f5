"""Image domain logic without containerd: references, chain ids, platforms,
manifests, challenges, specs from image configs."""

from __future__ import annotations

import hashlib
import json

import pytest

from supervisor import errors
from supervisor.images._auth import docker_config_credentials, parse_challenge
from supervisor.images._digest import Verifier, chain_ids
from supervisor.images._image_spec import spec_from_image
from supervisor.images._manifest import parse_config, parse_manifest
from supervisor.images._platform import Platform, parse_platform, select_platform
from supervisor.images._reference import parse_reference

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("user/app:1.0", "docker.io/user/app:1.0"),
        ("127.0.0.1:5000/busybox:1", "127.0.0.1:5000/busybox:1"),
        ("localhost/x", "localhost/x:latest"),
        (f"ghcr.io/a/b@{D1}", f"ghcr.io/a/b@{D1}"),
        (f"ghcr.io/a/b:t@{D1}", f"ghcr.io/a/b:t@{D1}"),
    ],
)
def test_references_normalise(text: str, expected: str) -> None:
    assert str(parse_reference(text)) == expected


@pytest.mark.parametrize("text", ["", "UPPER/case", "a@sha256:12", "a:b:c", " x", "a//b"])
def test_bad_references_refused(text: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        parse_reference(text)


def test_loopback_and_api_host() -> None:
    assert parse_reference("127.0.0.1:5000/a").is_loopback
    assert parse_reference("localhost:5000/a").is_loopback
    assert not parse_reference("example.com/a").is_loopback
    assert parse_reference("busybox").api_host == "registry-1.docker.io"


def test_chain_ids_as_containerd_computes_them() -> None:
    second = "sha256:" + hashlib.sha256(f"{D1} {D2}".encode()).hexdigest()
    assert chain_ids([D1, D2]) == [D1, second]
    assert chain_ids([]) == []


def test_verifier_refuses_wrong_bytes() -> None:
    data = b"hello"
    good = Verifier("sha256:" + hashlib.sha256(data).hexdigest(), 5)
    good.update(data)
    good.check()
    bad = Verifier(D1, 5)
    bad.update(data)
    with pytest.raises(errors.FailedPrecondition):
        bad.check()
    with pytest.raises(errors.FailedPrecondition):
        Verifier(D1, 2).update(data)


def test_platform_selection() -> None:
    offered = [
        Platform("linux", "arm", "v6"),
        Platform("linux", "arm64"),
        None,
        Platform("linux", "amd64"),
    ]
    assert select_platform(parse_platform("linux/amd64"), offered) == 3
    assert select_platform(parse_platform("linux/arm64/v8"), offered) == 1
    with pytest.raises(errors.NotFound):
        select_platform(parse_platform("linux/arm/v7"), offered)
    with pytest.raises(errors.InvalidArgument):
        parse_platform("linux")


def test_manifest_and_config_parsing() -> None:
    manifest = {
        "schemaVersion": 2,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": D1,
            "size": 3,
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D2, "size": 9}
        ],
    }
    parsed = parse_manifest(
        json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json"
    )
    assert parsed.layers[0].digest == D2
    manifest["layers"][0]["mediaType"] = "text/plain"  # type: ignore[index]
    with pytest.raises(errors.FailedPrecondition):
        parse_manifest(json.dumps(manifest).encode(), "x")
    config = parse_config(
        json.dumps({"rootfs": {"diff_ids": [D1]}, "architecture": "amd64"}).encode()
    )
    assert config.diff_ids == (D1,)
    with pytest.raises(errors.FailedPrecondition):
        parse_config(b"[]")


def test_challenges_and_docker_config(tmp_path: pytest.TempPathFactory) -> None:
    c = parse_challenge('Bearer realm="https://auth.example/token",service="reg",scope="a:b:pull"')
    assert c is not None and c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "a:b:pull",
    }
    path = tmp_path / "config.json"  # type: ignore[operator]
    path.write_text(json.dumps({"auths": {"reg.example": {"auth": "dTpw"}}}))
    creds = docker_config_credentials("reg.example", path)
    assert creds is not None and (creds.username, creds.password) == ("u", "p")
    assert "p" not in repr(creds).replace("password", "")
    assert docker_config_credentials("other.example", path) is None


def test_spec_from_image_config_and_overrides() -> None:
    config = {
        "Entrypoint": ["/bin/app"],
        "Cmd": ["--flag"],
        "Env": ["PATH=/x", "A=1"],
        "WorkingDir": "/srv",
        "User": "1000:1001",
    }
    spec = spec_from_image(config)
    process = spec["process"]
    assert process["args"] == ["/bin/app", "--flag"]
    assert process["env"] == ["PATH=/x", "A=1"]
    assert process["cwd"] == "/srv"
    assert process["user"] == {"uid": 1000, "gid": 1001}
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    spec = spec_from_image(
        config, args=["other"], overrides={"process": {"cwd": "/"}, "hostname": "h"}
    )
    assert spec["process"]["args"] == ["/bin/app", "other"]
    assert spec["process"]["cwd"] == "/" and spec["hostname"] == "h"
    assert spec["process"]["env"] == ["PATH=/x", "A=1"]
    with pytest.raises(errors.InvalidArgument):
        spec_from_image({"Cmd": ["x"], "User": "nobody"})
    assert spec_from_image(
        {"Cmd": ["x"], "User": "nobody"},
        overrides={"process": {"user": {"uid": 65534, "gid": 65534}}},
    )
    with pytest.raises(errors.InvalidArgument):
        spec_from_image({})
