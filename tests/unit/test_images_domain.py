"""Image domain logic without containerd: references, chain ids, platforms,
manifests, challenges, specs from image configs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest

from supervisor import errors


def _load() -> SimpleNamespace:
    # Imported per test, not at collection: loading supervisor.images adds
    # it to the package's namespace, which test_exports inspects.
    from supervisor.images import _auth, _image_spec, _reference
    from supervisor.oci import _digest, _manifest, _platform

    ns = SimpleNamespace()
    for module in (_auth, _digest, _image_spec, _manifest, _platform, _reference):
        ns.__dict__.update(vars(module))
    return ns


@pytest.fixture
def m() -> SimpleNamespace:
    return _load()


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
def test_references_normalise(m: SimpleNamespace, text: str, expected: str) -> None:
    assert str(m.parse_reference(text)) == expected


@pytest.mark.parametrize("text", ["", "UPPER/case", "a@sha256:12", "a:b:c", " x", "a//b"])
def test_bad_references_refused(m: SimpleNamespace, text: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        m.parse_reference(text)


def test_loopback_and_api_host(m: SimpleNamespace) -> None:
    assert m.parse_reference("127.0.0.1:5000/a").is_loopback
    assert m.parse_reference("localhost:5000/a").is_loopback
    assert not m.parse_reference("example.com/a").is_loopback
    assert m.parse_reference("busybox").api_host == "registry-1.docker.io"


def test_chain_ids_as_containerd_computes_them(m: SimpleNamespace) -> None:
    second = "sha256:" + hashlib.sha256(f"{D1} {D2}".encode()).hexdigest()
    assert m.chain_ids([D1, D2]) == [D1, second]
    assert m.chain_ids([]) == []


def test_verifier_refuses_wrong_bytes(m: SimpleNamespace) -> None:
    data = b"hello"
    good = m.Verifier("sha256:" + hashlib.sha256(data).hexdigest(), 5)
    good.update(data)
    good.check()
    bad = m.Verifier(D1, 5)
    bad.update(data)
    with pytest.raises(errors.FailedPrecondition):
        bad.check()
    with pytest.raises(errors.FailedPrecondition):
        m.Verifier(D1, 2).update(data)


def test_platform_selection(m: SimpleNamespace) -> None:
    offered = [
        m.Platform("linux", "arm", "v6"),
        m.Platform("linux", "arm64"),
        None,
        m.Platform("linux", "amd64"),
    ]
    assert m.select_platform(m.parse_platform("linux/amd64"), offered) == 3
    assert m.select_platform(m.parse_platform("linux/arm64/v8"), offered) == 1
    with pytest.raises(errors.NotFound):
        m.select_platform(m.parse_platform("linux/arm/v7"), offered)
    with pytest.raises(errors.InvalidArgument):
        m.parse_platform("linux")


def test_manifest_and_config_parsing(m: SimpleNamespace) -> None:
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
    parsed = m.parse_manifest(
        json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json"
    )
    assert parsed.layers[0].digest == D2
    manifest["layers"][0]["mediaType"] = "text/plain"  # type: ignore[index]
    with pytest.raises(errors.FailedPrecondition):
        m.parse_manifest(json.dumps(manifest).encode(), "x")
    config = m.parse_config(
        json.dumps({"rootfs": {"diff_ids": [D1]}, "architecture": "amd64"}).encode()
    )
    assert config.diff_ids == (D1,)
    with pytest.raises(errors.FailedPrecondition):
        m.parse_config(b"[]")


def test_challenges_and_docker_config(m: SimpleNamespace, tmp_path: pytest.TempPathFactory) -> None:
    c = m.parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg",scope="a:b:pull"'
    )
    assert c is not None and c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "a:b:pull",
    }
    path = tmp_path / "config.json"  # type: ignore[operator]
    path.write_text(json.dumps({"auths": {"reg.example": {"auth": "dTpw"}}}))
    creds = m.docker_config_credentials("reg.example", path)
    assert creds is not None and (creds.username, creds.password) == ("u", "p")
    assert "p" not in repr(creds).replace("password", "")
    assert m.docker_config_credentials("other.example", path) is None


def test_spec_from_image_config_and_overrides(m: SimpleNamespace) -> None:
    config = {
        "Entrypoint": ["/bin/app"],
        "Cmd": ["--flag"],
        "Env": ["PATH=/x", "A=1"],
        "WorkingDir": "/srv",
        "User": "1000:1001",
    }
    spec = m.spec_from_image(config)
    process = spec["process"]
    assert process["args"] == ["/bin/app", "--flag"]
    assert process["env"] == ["PATH=/x", "A=1"]
    assert process["cwd"] == "/srv"
    assert process["user"] == {"uid": 1000, "gid": 1001}
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    spec = m.spec_from_image(
        config, args=["other"], overrides={"process": {"cwd": "/"}, "hostname": "h"}
    )
    assert spec["process"]["args"] == ["/bin/app", "other"]
    assert spec["process"]["cwd"] == "/" and spec["hostname"] == "h"
    assert spec["process"]["env"] == ["PATH=/x", "A=1"]
    with pytest.raises(errors.InvalidArgument):
        m.spec_from_image({"Cmd": ["x"], "User": "nobody"})
    assert m.spec_from_image(
        {"Cmd": ["x"], "User": "nobody"},
        overrides={"process": {"user": {"uid": 65534, "gid": 65534}}},
    )
    with pytest.raises(errors.InvalidArgument):
        m.spec_from_image({})


@pytest.mark.asyncio
async def test_credentials_never_go_to_a_plain_http_token_service() -> None:
    # A registry reached over HTTPS that points its Bearer challenge at an
    # http:// realm would have the credentials cross the network in clear.
    import httpx

    from supervisor.images._auth import Credentials
    from supervisor.images._reference import parse_reference
    from supervisor.images._registry import Registry

    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.host == "registry.example":
            challenge = 'Bearer realm="http://tokens.example/token",service="registry"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return httpx.Response(200, json={"token": "t"})

    registry = Registry(
        parse_reference("registry.example/team/app:1"), credentials=Credentials("alice", "pw")
    )
    async with registry:
        assert registry._client is not None
        await registry._client.aclose()
        registry._client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        with pytest.raises(errors.FailedPrecondition, match="plain HTTP"):
            await registry.manifest("1")
    assert seen == ["https://registry.example/v2/team/app/manifests/1"]


def _helper(directory: Path, name: str, body: str) -> None:
    script = directory / f"docker-credential-{name}"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)


@pytest.mark.asyncio
async def test_credential_helpers_as_docker_runs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisor.images._auth import Credentials, configured_credentials

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    # Answers for the server it is asked about (on stdin), as the real ones do.
    _helper(
        bin_dir,
        "store",
        'read server; case "$server" in\n'
        '  reg.example:5000) echo \'{"ServerURL":"x","Username":"alice","Secret":"pw"}\';;\n'
        '  https://index.docker.io/v1/) echo \'{"Username":"<token>","Secret":"tok"}\';;\n'
        '  *) echo "credentials not found in native keychain"; exit 1;;\n'
        "esac",
    )
    _helper(bin_dir, "broken", 'echo "cannot unlock the keyring" >&2; exit 3')
    _helper(bin_dir, "junk", "echo not json")
    _helper(bin_dir, "slow", f"echo $$ > {tmp_path / 'slow.pid'}; exec sleep 30")
    config = tmp_path / "config.json"

    def write(data: dict[str, object]) -> None:
        config.write_text(json.dumps(data))

    auths = {"auths": {"other.example": {"auth": "Ym9iOnNlY3JldA=="}}}
    write({**auths, "credsStore": "store"})
    assert await configured_credentials("reg.example:5000", config) == Credentials("alice", "pw")
    assert await configured_credentials("docker.io", config) == Credentials("<token>", "tok")
    # The store does not know it: no credentials (docker too ignores auths then).
    assert await configured_credentials("other.example", config) is None
    # A registry's own helper comes before the store; none at all: auths.
    write({**auths, "credsStore": "broken", "credHelpers": {"reg.example:5000": "store"}})
    assert await configured_credentials("reg.example:5000", config) == Credentials("alice", "pw")
    write(auths)
    assert await configured_credentials("other.example", config) == Credentials("bob", "secret")

    for helper, words in [
        ("broken", "cannot unlock the keyring"),
        ("junk", "not credentials"),
        ("absent", "not on PATH"),
        ("slow", "did not answer"),
    ]:
        write({"credsStore": helper})
        with pytest.raises(errors.FailedPrecondition, match=words):
            await configured_credentials("reg.example:5000", config, limit=0.5)
    for bad in ("../../bin/sh", "a b", "-x"):
        write({"credHelpers": {"reg.example:5000": bad}})
        with pytest.raises(errors.InvalidArgument):
            await configured_credentials("reg.example:5000", config)

    # Cancelled while the helper runs: the helper is killed, not left behind.
    write({"credsStore": "slow"})
    with anyio.move_on_after(0.5):
        await configured_credentials("reg.example:5000", config)
    pid = int((tmp_path / "slow.pid").read_text())
    assert not Path(f"/proc/{pid}").exists()
