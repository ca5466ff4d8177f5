"""Pulls from registries run as they really are: ``docker-registry`` over
TLS on 127.0.0.1 with a private CA made here, client certificates, basic
auth over TLS, and the places certificates and credentials are found."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import supervisor
from supervisor import errors
from tests._registry import (
    Certificates,
    build_layout,
    busybox_layer,
    docker_cert_dir,
    make_certificates,
    push_tls,
    start_tls_registry,
    stop,
)

pytestmark = pytest.mark.asyncio


@dataclass
class TLSRegistry:
    host: str
    certs: Certificates


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def tls_registry(
    tmp_path_factory: pytest.TempPathFactory, certs: Certificates
) -> Iterator[TLSRegistry]:
    """TLS with the private CA, no client certificate, no credentials."""
    tmp = tmp_path_factory.mktemp("tls-registry")
    proc, host = start_tls_registry(tmp, certs)
    try:
        layout = build_layout(tmp / "busybox", busybox_layer())
        push_tls(layout, f"{host}/busybox:1", docker_cert_dir(tmp / "push", certs, client=False))
        yield TLSRegistry(host, certs)
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def mtls_registry(
    tmp_path_factory: pytest.TempPathFactory, certs: Certificates
) -> Iterator[TLSRegistry]:
    """TLS wanting a client certificate, and basic auth (alice:s3cret)."""
    tmp = tmp_path_factory.mktemp("mtls-registry")
    htpasswd = tmp / "htpasswd"
    with open(htpasswd, "wb") as f:
        subprocess.run(["htpasswd", "-Bbn", "alice", "s3cret"], stdout=f, check=True)
    proc, host = start_tls_registry(tmp, certs, client_auth=True, htpasswd=htpasswd)
    try:
        layout = build_layout(tmp / "busybox", busybox_layer())
        cert_dir = docker_cert_dir(tmp / "push", certs)
        push_tls(layout, f"{host}/private:1", cert_dir, creds="alice:s3cret")
        yield TLSRegistry(host, certs)
    finally:
        stop(proc)


@pytest.fixture(autouse=True)
def no_ambient_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from this machine: no certs.d, no saved credentials."""
    monkeypatch.setenv("SUPERVISOR_CERTS_DIRS", str(tmp_path / "no-certs.d"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)


@pytest_asyncio.fixture
async def images_cleanup(client: supervisor.Client) -> AsyncIterator[None]:
    yield
    for image in await client.images():
        await client.remove_image(image.name)


async def _pull(client: supervisor.Client, ref: str, **options: Any) -> Any:
    # The TLS choices are ImageService's until Client.pull passes them on.
    from supervisor.images._service import ImageService

    image = await ImageService(client._session).pull(ref, **options)
    await client.remove_image(image.name)
    return image


async def _leases(client: supervisor.Client) -> list[str]:
    from supervisor.images._service import ImageService

    return await ImageService(client._session).store.list_leases()


async def test_a_loopback_registry_with_a_private_ca(
    client: supervisor.Client,
    tls_registry: TLSRegistry,
    images_cleanup: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ref = f"{tls_registry.host}/busybox:1"
    ca = tls_registry.certs.ca
    # Loopback tries HTTPS first: a certificate nobody vouches for is
    # refused, not answered by falling back to plain HTTP.
    with pytest.raises(errors.FailedPrecondition, match="not trusted") as caught:
        await client.pull(ref)
    assert caught.value.registry == tls_registry.host
    assert await _leases(client) == []
    # The CA given with the call.
    assert (await _pull(client, ref, tls_ca=ca)).name == ref
    # Not verifying at all, as ctr --skip-verify.
    assert (await _pull(client, ref, skip_verify=True)).name == ref
    # Plain HTTP to a TLS server does not work (and says so).
    with pytest.raises(errors.SupervisorError):
        await _pull(client, ref, plain_http=True)
    # containerd's hosts.toml (a path relative to its directory).
    containerd_dir = tmp_path / "containerd-certs.d"
    (containerd_dir / tls_registry.host).mkdir(parents=True)
    (containerd_dir / tls_registry.host / "my-ca.pem").write_bytes(ca.read_bytes())
    (containerd_dir / tls_registry.host / "hosts.toml").write_text(
        f'server = "https://{tls_registry.host}"\n'
        f'[host."https://{tls_registry.host}"]\n  ca = "my-ca.pem"\n'
    )
    assert (await _pull(client, ref, certs_dirs=[containerd_dir])).name == ref
    # docker's certs.d, found through the environment by Client.pull itself.
    docker_dir = tmp_path / "docker-certs.d"
    docker_cert_dir(docker_dir / tls_registry.host, tls_registry.certs, client=False)
    monkeypatch.setenv("SUPERVISOR_CERTS_DIRS", f"{containerd_dir / 'x'}:{docker_dir}")
    image = await client.pull(ref)
    assert image.name == ref
    await client.remove_image(ref)
    # The system trust store, as OpenSSL's SSL_CERT_FILE sets it.
    monkeypatch.setenv("SUPERVISOR_CERTS_DIRS", str(tmp_path / "none"))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    assert (await client.pull(ref)).name == ref


async def test_client_certificates_and_basic_auth_over_tls(
    client: supervisor.Client,
    mtls_registry: TLSRegistry,
    images_cleanup: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ref = f"{mtls_registry.host}/private:1"
    certs = mtls_registry.certs
    tls = {"tls_ca": certs.ca, "tls_cert": certs.client_cert, "tls_key": certs.client_key}
    # Without a client certificate the server ends the handshake.
    with pytest.raises(errors.SupervisorError) as caught:
        await _pull(client, ref, tls_ca=certs.ca, auth=("alice", "s3cret"))
    assert caught.value.registry == mtls_registry.host
    # With it, the credentials are still needed, and checked.
    with pytest.raises(errors.FailedPrecondition, match="credentials"):
        await _pull(client, ref, **tls)
    with pytest.raises(errors.FailedPrecondition):
        await _pull(client, ref, auth=("alice", "wrong"), **tls)
    assert (await _pull(client, ref, auth=("alice", "s3cret"), **tls)).name == ref
    # The client certificate from docker's certs.d (client.cert, client.key).
    docker_dir = tmp_path / "docker-certs.d"
    docker_cert_dir(docker_dir / mtls_registry.host, certs)
    image = await _pull(client, ref, auth=("alice", "s3cret"), certs_dirs=[docker_dir])
    assert image.name == ref
    # The credentials from podman's auth.json.
    auth_file = tmp_path / "auth.json"
    token = base64.b64encode(b"alice:s3cret").decode()
    auth_file.write_text(json.dumps({"auths": {mtls_registry.host: {"auth": token}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    assert (await _pull(client, ref, **tls)).name == ref
    # A repository-scoped entry wins over the registry's.
    wrong = base64.b64encode(b"alice:wrong").decode()
    auth_file.write_text(
        json.dumps(
            {
                "auths": {
                    mtls_registry.host: {"auth": wrong},
                    f"{mtls_registry.host}/private": {"auth": token},
                }
            }
        )
    )
    assert (await _pull(client, ref, **tls)).name == ref
    # And from $XDG_RUNTIME_DIR/containers/auth.json.
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    runtime = tmp_path / "run"
    (runtime / "containers").mkdir(parents=True)
    (runtime / "containers" / "auth.json").write_text(
        json.dumps({"auths": {mtls_registry.host: {"auth": token}}})
    )
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert (await _pull(client, ref, **tls)).name == ref
    assert await _leases(client) == []
