"""``supervisor pull / images / rmi / import / export / run IMAGE`` through
the real command, against the suite's containerd and a private registry."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
import pytest_asyncio

import supervisor
from tests._registry import (
    Certificates,
    Layout,
    build_layout,
    busybox_layer,
    busybox_registry,
    docker_cert_dir,
    make_certificates,
    push_tls,
    start_tls_registry,
    stop,
)
from tests.integration.cli_runner import Cli, clean_env

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Layout]]:
    with busybox_registry(tmp_path_factory.mktemp("cli-registry")) as found:
        yield found


@pytest_asyncio.fixture
async def cli(
    containerd_address: str,
    namespace: str,
    state_dir: Path,
    rootfs: str,
    client: supervisor.Client,
) -> AsyncIterator[Cli]:
    yield Cli(containerd_address, namespace, state_dir, rootfs)
    for container in await client.containers():
        await container.delete()
    for image in await client.images():
        await client.remove_image(image.name)


async def test_pull_images_run_export_rmi_import(
    cli: Cli, registry: tuple[str, Layout], tmp_path: Path
) -> None:
    host, layout = registry
    ref = f"{host}/busybox:1"
    code, out, err = await cli("pull", ref)
    assert code == 0, err
    assert out == f"{ref}\n"
    # Not a terminal: plain lines, one per state a blob reaches.
    assert "\x1b[" not in err
    assert " done " in err and " unpacked " in err
    assert f"Digest: {layout.manifest_digest}" in err

    code, out, err = await cli("images")
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split() == ["NAME", "DIGEST", "TYPE", "CREATED"]
    assert row.split()[:2] == [ref, layout.manifest_digest[7:19]]
    code, out, err = await cli("images", "--format", "json")
    [record] = [json.loads(line) for line in out.splitlines()]
    assert (record["name"], record["digest"]) == (ref, layout.manifest_digest)

    code, out, err = await cli("run", "--rm", ref)
    assert (code, out) == (0, "hello from the image\n"), err
    code, out, err = await cli(
        "run", "--rm", "-e", "X=1", "-w", "/bin", "-u", "5:6", ref,
        "sh", "-c", "echo $GREETING $X; pwd; id -u; id -g; exit 3",
    )  # fmt: skip
    assert (code, out) == (3, "the image 1\n/bin\n5\n6\n"), err

    archive = tmp_path / "busybox.tar"
    code, out, err = await cli("export", ref, str(archive))
    assert code == 0 and archive.stat().st_size > 0, err
    code, out, err = await cli("rmi", ref, "example.com/missing:1")
    assert code == 125
    assert out == f"Untagged: {ref}\n"
    assert "NotFound" in err
    code, out, err = await cli("images", "--format", "json")
    assert out == ""

    code, out, err = await cli("import", str(archive))
    assert (code, out) == (0, f"{ref}\n"), err
    code, out, err = await cli("run", "--rm", ref, "echo", "imported")
    assert (code, out) == (0, "imported\n"), err


async def test_run_pulls_a_missing_image_as_docker_run_does(
    cli: Cli, registry: tuple[str, Layout]
) -> None:
    host, layout = registry
    ref = f"{host}/busybox:1"
    code, out, err = await cli("run", "--rm", ref)
    assert (code, out) == (0, "hello from the image\n"), err
    assert f"pulling {ref}" in err and " unpacked " in err
    code, out, _ = await cli("images", "--format", "json")
    assert [json.loads(line)["digest"] for line in out.splitlines()] == [layout.manifest_digest]
    # Here now: not pulled again, unless asked to.
    code, out, err = await cli("run", "--rm", ref, "echo", "again")
    assert (code, out) == (0, "again\n") and "pulling" not in err, err
    code, out, err = await cli("run", "--rm", "--pull", "always", ref, "echo", "fresh")
    assert (code, out) == (0, "fresh\n") and f"pulling {ref}" in err, err


async def test_refusals(cli: Cli, registry: tuple[str, Layout], tmp_path: Path) -> None:
    host, _ = registry
    code, _, err = await cli("pull", "-u", "nocolon", f"{host}/busybox:1")
    assert code == 125 and "USER:PASSWORD" in err
    code, _, err = await cli("run", "--rm", "--pull", "never", f"{host}/busybox:1")
    assert code == 125 and "--pull never" in err
    code, _, err = await cli("run", "--rm", f"{host}/absent:1")
    assert code == 125 and "NotFound" in err
    code, _, err = await cli("pull", f"{host}/absent:1")
    assert code == 125 and "NotFound" in err
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"junk")
    code, _, err = await cli("import", str(junk))
    assert code == 125 and "refused" in err


async def test_pull_progress_is_redrawn_on_a_terminal(
    cli: Cli, registry: tuple[str, Layout]
) -> None:
    host, _ = registry
    master, slave = os.openpty()
    try:
        process = await anyio.open_process(
            cli.argv("pull", f"{host}/busybox:1"), stderr=slave, env=clean_env()
        )
        os.close(slave)
        slave = -1
        with anyio.fail_after(60):
            code = await process.wait()
        await process.aclose()
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    text = b"".join(chunks).decode()
    assert code == 0, text
    assert "\x1b[2K" in text and "unpacked" in text


@pytest.fixture(scope="module")
def mtls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Certificates]]:
    """TLS on 127.0.0.1 with a private CA, a client certificate required,
    and basic auth (alice:s3cret)."""
    import subprocess

    tmp = tmp_path_factory.mktemp("cli-tls-registry")
    certs = make_certificates(tmp / "certs")
    htpasswd = tmp / "htpasswd"
    with open(htpasswd, "wb") as f:
        subprocess.run(["htpasswd", "-Bbn", "alice", "s3cret"], stdout=f, check=True)
    proc, host = start_tls_registry(tmp, certs, client_auth=True, htpasswd=htpasswd)
    try:
        layout = build_layout(tmp / "busybox", busybox_layer())
        push_tls(
            layout, f"{host}/private:1", docker_cert_dir(tmp / "push", certs), creds="alice:s3cret"
        )
        yield host, certs
    finally:
        stop(proc)


async def test_pull_with_tls_flags(
    cli: Cli, mtls_registry: tuple[str, Certificates], tmp_path: Path
) -> None:
    host, certs = mtls_registry
    ref = f"{host}/private:1"
    env = {"SUPERVISOR_CERTS_DIRS": str(tmp_path / "none"), "DOCKER_CONFIG": str(tmp_path)}
    code, _, err = await cli("pull", "-u", "alice:s3cret", ref, env=env)
    assert code == 125 and "not trusted" in err, err
    tls = ["--tlscacert", str(certs.ca), "--tlscert", str(certs.client_cert),
           "--tlskey", str(certs.client_key)]  # fmt: skip
    code, out, err = await cli("pull", "-u", "alice:s3cret", *tls, ref, env=env)
    assert (code, out) == (0, f"{ref}\n"), err
    code, _, err = await cli("rmi", ref, env=env)
    assert code == 0, err
    # --skip-verify still presents the client certificate.
    skip = ["--skip-verify", "--tlscert", str(certs.client_cert), "--tlskey", str(certs.client_key)]
    code, out, err = await cli("pull", "-u", "alice:s3cret", *skip, ref, env=env)
    assert (code, out) == (0, f"{ref}\n"), err
    code, _, err = await cli("pull", "--tlskey", str(certs.client_key), ref, env=env)
    assert code == 125 and "--tlscert" in err, err
    # --plain-http to a TLS server fails (the server answers 400).
    code, _, err = await cli("pull", "--plain-http", ref, env=env)
    assert code == 125, err


@pytest.mark.parametrize("command", ["pull", "run"])
async def test_an_unreachable_registry_is_named_not_containerd(cli: Cli, command: str) -> None:
    # A port nothing listens on: connection refused, as for a registry that is down.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ref = f"127.0.0.1:{port}/nothing:1"
    args = ["pull", ref] if command == "pull" else ["run", "--rm", ref]
    code, out, err = await cli(*args)
    assert code == 125, err
    assert f"registry at 127.0.0.1:{port}" in err, err
    assert "containerd" not in err, err
    assert "Traceback" not in err
