"""Images against the real containerd and a private registry (Debian's
``docker-registry``, the Distribution server) on a loopback port, seeded
with a busybox image built here from ``busybox-static``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest
import pytest_asyncio
from grpclib.events import SendRequest, listen

import supervisor
from supervisor import errors
from tests._registry import (
    BUSYBOX,
    Registry,
    TokenService,
    build_layout,
    busybox_layer,
    push,
    start_registry,
    stop,
)
from tests.integration.helpers import read_all

if TYPE_CHECKING:
    # Not at collection: loading supervisor.images changes the package's namespace.
    from supervisor.images import LayerProgress

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="session")
def layer_tar() -> bytes:
    return busybox_layer()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, layer_tar: bytes) -> Iterator[Registry]:
    tmp = tmp_path_factory.mktemp("registry")
    proc, host = start_registry(tmp)
    try:
        busybox = build_layout(tmp / "busybox", layer_tar)
        multi = build_layout(tmp / "multi", layer_tar, multi=True)
        push(busybox, f"{host}/busybox:1")
        push(multi, f"{host}/multi:1", all_=True)
        yield Registry(host, tmp / "data", busybox, multi)
    finally:
        stop(proc)


@pytest_asyncio.fixture
async def images_cleanup(client: supervisor.Client) -> AsyncIterator[None]:
    yield
    # The plugin empties containers; images and their content are ours.
    for image in await client.images():
        await client.remove_image(image.name)


async def _leases(client: supervisor.Client) -> list[str]:
    from supervisor.images._service import ImageService

    return await ImageService(client._session).store.list_leases()


async def test_pull_by_tag_runs_a_container(
    client: supervisor.Client, registry: Registry, images_cleanup: None
) -> None:
    seen: list[LayerProgress] = []
    image = await client.pull(f"{registry.host}/busybox:1", progress=seen.append)
    assert image.name == f"{registry.host}/busybox:1"
    assert image.digest == registry.busybox.manifest_digest
    assert {p.state for p in seen} >= {"done", "unpacked"}
    assert [i.name for i in await client.images()] == [image.name]
    assert await _leases(client) == []

    container = await client.new_container("from-image", image=image.name)
    assert container.snapshot_key == "from-image"
    task = await container.new_task()
    await task.start()
    out, _ = await task.communicate()
    assert (await task.wait()).exit_code == 0
    assert out == b"hello from the image\n"
    await task.delete()

    service_store = await _store(client)
    snapshotter = container.snapshotter
    assert snapshotter is not None
    assert "from-image" in await service_store.list_snapshots(snapshotter)
    await container.delete()
    assert "from-image" not in await service_store.list_snapshots(snapshotter)


async def _store(client: supervisor.Client):  # type: ignore[no-untyped-def]
    from supervisor.images._service import ImageService

    return ImageService(client._session).store


async def test_args_and_spec_override_the_image(
    client: supervisor.Client, registry: Registry, images_cleanup: None
) -> None:
    await client.pull(f"{registry.host}/busybox:1")
    container = await client.new_container(
        "override",
        image=f"{registry.host}/busybox:1",
        args=["sh", "-c", "echo $GREETING $X; pwd; id -u"],
        spec={
            "process": {
                "env": ["PATH=/bin", "GREETING=caller", "X=y"],
                "user": {"uid": 7, "gid": 7},
            }
        },
    )
    try:
        task = await container.new_task()
        await task.start()
        out, _ = await task.communicate()
        await task.wait()
        await task.delete()
    finally:
        await container.delete()
    assert out == b"caller y\n/tmp\n7\n"


async def test_pull_by_digest_and_from_an_index(
    client: supervisor.Client, registry: Registry, images_cleanup: None
) -> None:
    digest = registry.busybox.manifest_digest
    image = await client.pull(f"{registry.host}/busybox@{digest}")
    assert image.digest == digest
    multi = await client.pull(f"{registry.host}/multi:1")
    assert multi.digest == registry.multi.index_digest
    assert multi.media_type == "application/vnd.oci.image.index.v1+json"
    # The amd64 manifest was chosen and unpacked: a container runs from it.
    result_container = await client.new_container("multi", image=multi.name, args=["true"])
    await result_container.delete()
    with pytest.raises(errors.NotFound):
        await client.pull(f"{registry.host}/multi:1", platform="linux/s390x")


async def test_a_wrong_digest_is_refused(
    client: supervisor.Client, registry: Registry, images_cleanup: None
) -> None:
    with pytest.raises(errors.NotFound):
        await client.pull(f"{registry.host}/busybox@sha256:{'0' * 64}")
    assert await client.images() == []
    assert await _leases(client) == []


async def test_corrupt_blob_is_refused_and_leaves_nothing(
    client: supervisor.Client,
    registry: Registry,
    tmp_path: Path,
    layer_tar: bytes,
    images_cleanup: None,
) -> None:
    # A repository of its own whose layer the registry serves corrupted.
    layout = build_layout(tmp_path / "bad", layer_tar + b"\0" * 1024)
    push(layout, f"{registry.host}/corrupt:1")
    manifest = json.loads(
        (tmp_path / "bad" / "blobs" / "sha256" / layout.manifest_digest[7:]).read_bytes()
    )
    layer = manifest["layers"][0]["digest"][7:]
    data = registry.data / "docker/registry/v2/blobs/sha256" / layer[:2] / layer / "data"
    original = data.read_bytes()
    data.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    store = await _store(client)
    with pytest.raises(errors.FailedPrecondition):
        await client.pull(f"{registry.host}/corrupt:1")
    assert await client.images() == []
    assert await _leases(client) == []
    assert f"sha256:{layer}" not in await store.list_content()


async def test_a_cancelled_pull_leaves_no_lease_behind(
    client: supervisor.Client, registry: Registry, images_cleanup: None
) -> None:
    store = await _store(client)
    started = anyio.Event()

    def progress(p: LayerProgress) -> None:
        if p.state == "downloading":
            started.set()

    async with anyio.create_task_group() as tg:

        async def pull() -> None:
            await client.pull(f"{registry.host}/busybox:1", progress=progress)

        tg.start_soon(pull)
        with anyio.fail_after(30):
            await started.wait()
        tg.cancel_scope.cancel()
    assert await _leases(client) == []
    assert await client.images() == []
    # GC takes what the lease held; a sync delete of a dummy lease runs it.
    await store.create_lease("gc-now", __import__("datetime").timedelta(minutes=1))
    await store.delete_lease("gc-now", sync=True)
    assert registry.busybox.manifest_digest not in await store.list_content()


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory, layer_tar: bytes) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("auth-registry")
    htpasswd = tmp / "htpasswd"
    with open(htpasswd, "wb") as f:
        subprocess.run(["htpasswd", "-Bbn", "alice", "s3cret"], stdout=f, check=True)
    proc, host = start_registry(tmp, htpasswd=htpasswd)
    try:
        layout = build_layout(tmp / "busybox", layer_tar)
        push(layout, f"{host}/private:1", creds="alice:s3cret")
        yield host
    finally:
        stop(proc)


async def test_basic_auth_refused_then_accepted(
    client: supervisor.Client,
    auth_registry: str,
    images_cleanup: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ref = f"{auth_registry}/private:1"
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with pytest.raises(errors.FailedPrecondition):
        await client.pull(ref)
    with pytest.raises(errors.FailedPrecondition):
        await client.pull(ref, auth=("alice", "wrong"))
    image = await client.pull(ref, auth=("alice", "s3cret"))
    await client.remove_image(image.name)
    # The same credentials, as `docker login` stores them.
    import base64

    token = base64.b64encode(b"alice:s3cret").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {auth_registry: {"auth": token}}}))
    assert (await client.pull(ref)).name == ref


@pytest.fixture(scope="session")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, layer_tar: bytes
) -> Iterator[tuple[str, TokenService]]:
    tmp = tmp_path_factory.mktemp("token-registry")
    tokens = TokenService(tmp)
    try:
        proc, host = start_registry(tmp, tokens=tokens)
        try:
            layout = build_layout(tmp / "busybox", layer_tar)
            push(layout, f"{host}/team/private:1", creds="alice:s3cret")
            yield host, tokens
        finally:
            stop(proc)
    finally:
        tokens.close()


async def test_token_auth_as_docker_hub_does_it(
    client: supervisor.Client,
    token_registry: tuple[str, TokenService],
    images_cleanup: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The registry answers 401 with a Bearer challenge naming the token
    # service; the token (a JWT the registry checks against its issuer's
    # certificate) is fetched with the credentials and sent as Bearer.
    host, tokens = token_registry
    ref = f"{host}/team/private:1"
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with pytest.raises(errors.FailedPrecondition):
        await client.pull(ref)
    with pytest.raises(errors.FailedPrecondition):
        await client.pull(ref, auth=("alice", "wrong"))
    tokens.requests.clear()
    image = await client.pull(ref, auth=("alice", "s3cret"))
    assert image.name == ref
    # One token served the whole pull (manifest, config, layer), asked for
    # the pull scope of the repository and the registry's service.
    assert len(tokens.requests) == 1, tokens.requests
    query = tokens.requests[0]["query"]
    assert query == {"scope": ["repository:team/private:pull"], "service": ["test-registry"]}
    container = await client.new_container("from-token", image=ref)
    task = await container.new_task()
    await task.start()
    with anyio.fail_after(30):
        out = await read_all(task.stdout)
        assert (await task.wait()).exit_code == 0
    assert out == b"hello from the image\n"
    await task.delete()
    await container.delete()
    await client.remove_image(image.name)

    # The same credentials from a credential helper, as `docker login` with
    # a credsStore leaves them: the helper is asked about this registry.
    helper = tmp_path / "bin" / "docker-credential-test"
    helper.parent.mkdir()
    asked = tmp_path / "asked"
    helper.write_text(
        f"#!/bin/sh\ncat > {asked}\n"
        'echo \'{"ServerURL": "", "Username": "alice", "Secret": "s3cret"}\'\n'
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:{os.environ['PATH']}")
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {host: "test"}}))
    assert (await client.pull(ref)).name == ref
    assert asked.read_text() == host


async def test_remove_image(
    client: supervisor.Client, registry: Registry, images_cleanup: None
) -> None:
    image = await client.pull(f"{registry.host}/busybox:1")
    await client.remove_image(image.name)
    assert await client.images() == []
    with pytest.raises(errors.NotFound):
        await client.remove_image(image.name)
    with pytest.raises(errors.NotFound):
        await client.new_container("gone", image=image.name)


async def test_loopback_tries_https_then_plain_http() -> None:
    from supervisor.images._tls import TLSOptions, resolve_tls

    none = TLSOptions(certs_dirs=())
    assert resolve_tls("127.0.0.1:5000", "127.0.0.1:5000", True, none).schemes == ("https", "http")
    assert resolve_tls("example.com", "example.com", False, none).schemes == ("https",)
    plain = TLSOptions(plain_http=True, certs_dirs=())
    assert resolve_tls("example.com", "example.com", False, plain).schemes == ("http",)
    assert shutil.which("docker-registry") and os.path.exists(BUSYBOX)


async def test_a_loaded_image_container_runs_and_deletes_its_snapshot(
    client: supervisor.Client, registry: Registry, images_cleanup: None
) -> None:
    image = await client.pull(f"{registry.host}/busybox:1")
    made = await client.new_container("reloaded", image=image.name)
    # What an application after its restart has: containerd's record only.
    loaded = await client.load_container("reloaded")
    assert (loaded.snapshotter, loaded.snapshot_key) == (made.snapshotter, "reloaded")
    task = await loaded.new_task()
    await task.start()
    out, _ = await task.communicate()
    assert out == b"hello from the image\n"
    await task.delete()
    store = await _store(client)
    assert made.snapshotter is not None
    await loaded.delete()
    assert "reloaded" not in await store.list_snapshots(made.snapshotter)


async def test_a_refused_image_container_prepares_no_snapshot(
    client: supervisor.Client, registry: Registry, images_cleanup: None
) -> None:
    image = await client.pull(f"{registry.host}/busybox:1")
    store = await _store(client)
    before = {s: await store.list_snapshots(s) for s in ("overlayfs", "native")}
    rpcs: list[str] = []

    async def count(event: SendRequest) -> None:
        rpcs.append(event.method_name)

    listen(client._session.raw_transport._channel, SendRequest, count)  # type: ignore[attr-defined]
    for kwargs in (
        {"id": "bad..id"},
        {"id": "ok", "labels": {"k": 5}},
        {"id": "ok", "runtime": ""},
        {"id": "ok", "runtime_options": ["x"]},
    ):
        with pytest.raises(supervisor.errors.InvalidArgument):
            await client.new_container(image=image.name, **kwargs)  # type: ignore[arg-type]
    assert rpcs == []  # refused before any call: no snapshot was ever prepared
    assert {s: await store.list_snapshots(s) for s in before} == before
    assert await client.containers() == []
