"""Where a registry's certificates and credentials are found, without a
registry: the order, containerd's hosts.toml, docker's certs.d, refusals."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from supervisor import errors

if TYPE_CHECKING:
    from supervisor.images._tls import TLSSettings


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=t", "-keyout", "k.pem", "-out", "c.pem"],
        cwd=tmp, check=True, capture_output=True,
    )  # fmt: skip
    return tmp / "c.pem", tmp / "k.pem"


def _resolve(domain: str = "reg.example:5000", **options: Any) -> TLSSettings:
    from supervisor.images._tls import TLSOptions, resolve_tls

    options.setdefault("certs_dirs", ())
    return resolve_tls(domain, domain, False, TLSOptions(**options))


def test_schemes(tmp_path: Path) -> None:
    from supervisor.images._reference import parse_reference
    from supervisor.images._registry import Registry
    from supervisor.images._tls import TLSOptions, resolve_tls

    assert _resolve().schemes == ("https",)
    assert _resolve(plain_http=True).schemes == ("http",)
    loop = resolve_tls("localhost:5000", "localhost:5000", True, TLSOptions(certs_dirs=()))
    assert loop.schemes == ("https", "http")
    # insecure= is the old name of plain_http=.
    assert Registry(parse_reference("reg.example/a"), insecure=True)._tls.plain_http
    # hosts.toml's server says plain HTTP.
    (tmp_path / "reg.example:5000").mkdir()
    (tmp_path / "reg.example:5000" / "hosts.toml").write_text(
        'server = "http://reg.example:5000"\n'
    )
    assert _resolve(certs_dirs=(str(tmp_path),)).schemes == ("http",)


def test_certificates_in_hosts_directories(tmp_path: Path, pem: tuple[Path, Path]) -> None:
    cert, key = pem
    containerd = tmp_path / "containerd" / "reg.example:5000"
    docker = tmp_path / "docker" / "reg.example:5000"
    containerd.mkdir(parents=True)
    docker.mkdir(parents=True)
    (containerd / "hosts.toml").write_text(
        f'server = "https://reg.example:5000"\nca = "{cert}"\n'
        f'[host."https://reg.example:5000"]\n  client = [["{cert}", "{key}"]]\n'
        '[host."https://mirror.example"]\n  skip_verify = true\n'
    )
    (docker / "ca.crt").write_bytes(cert.read_bytes())
    found = _resolve(certs_dirs=(str(tmp_path / "containerd"), str(tmp_path / "docker")))
    assert found.sources == (str(containerd / "hosts.toml"), str(docker))
    # The mirror's skip_verify is not this registry's.
    assert found.context is not None
    assert found.context.verify_mode == ssl.CERT_REQUIRED
    # docker's client pair, without its key, is refused.
    (docker / "client.cert").write_bytes(cert.read_bytes())
    with pytest.raises(errors.InvalidArgument, match="client.key"):
        _resolve(certs_dirs=(str(tmp_path / "docker"),))
    (docker / "client.key").write_bytes(key.read_bytes())
    _resolve(certs_dirs=(str(tmp_path / "docker"),))
    skip = _resolve(skip_verify=True)
    assert skip.context is not None
    assert skip.context.verify_mode == ssl.CERT_NONE


def test_the_environment_names_the_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisor.images._tls import DEFAULT_CERTS_DIRS, certs_dirs

    monkeypatch.delenv("SUPERVISOR_CERTS_DIRS", raising=False)
    assert certs_dirs(None) == DEFAULT_CERTS_DIRS
    assert DEFAULT_CERTS_DIRS == ("/etc/containerd/certs.d", "/etc/docker/certs.d")
    monkeypatch.setenv("SUPERVISOR_CERTS_DIRS", f"{tmp_path}/a:{tmp_path}/b")
    assert certs_dirs(None) == (f"{tmp_path}/a", f"{tmp_path}/b")
    assert certs_dirs(["x"]) == ("x",)


def test_bad_certificate_files_are_refused(tmp_path: Path, pem: tuple[Path, Path]) -> None:
    cert, _ = pem
    with pytest.raises(errors.InvalidArgument, match="cannot read"):
        _resolve(tls_ca=str(tmp_path / "missing.pem"))
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(errors.InvalidArgument, match="no usable certificate"):
        _resolve(tls_ca=str(tmp_path / "junk.pem"))
    with pytest.raises(errors.InvalidArgument, match="needs tls_cert"):
        _resolve(tls_key=str(cert))
    # A FIFO where a CA should be is refused, not waited on.
    os.mkfifo(tmp_path / "fifo.pem")
    with pytest.raises(errors.InvalidArgument, match="not a regular file"):
        _resolve(tls_ca=str(tmp_path / "fifo.pem"))
    (tmp_path / "reg.example:5000").mkdir()
    (tmp_path / "reg.example:5000" / "hosts.toml").write_text("server = [")
    with pytest.raises(errors.InvalidArgument, match="not TOML"):
        _resolve(certs_dirs=(str(tmp_path),))


def test_auth_json_is_looked_up_as_podman_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisor.images._auth import auth_json_credentials, auth_json_paths

    def entry(secret: str) -> dict[str, str]:
        return {"auth": base64.b64encode(f"alice:{secret}".encode()).decode()}

    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "given.json"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert auth_json_paths() == [
        tmp_path / "given.json",
        tmp_path / "run" / "containers" / "auth.json",
        tmp_path / "config" / "containers" / "auth.json",
    ]
    assert auth_json_credentials("reg.example", "team/app") is None
    (tmp_path / "config" / "containers").mkdir(parents=True)
    (tmp_path / "config" / "containers" / "auth.json").write_text(
        json.dumps({"auths": {"reg.example": entry("config")}})
    )
    assert _password(auth_json_credentials("reg.example", "team/app")) == "config"
    (tmp_path / "given.json").write_text(
        json.dumps({"auths": {"reg.example": entry("host"), "reg.example/team": entry("team")}})
    )
    assert _password(auth_json_credentials("reg.example", "team/app")) == "team"
    assert _password(auth_json_credentials("reg.example", "other/app")) == "host"


def _password(found: object) -> str:
    password = getattr(found, "password", None)
    assert isinstance(password, str)
    return password
