"""Pulls from a hostile registry (a loopback server whose answers each test
rewrites): every body is bounded in size and in time, whatever the server
sends, and a refused pull leaves nothing behind."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import pytest_asyncio

import supervisor
from supervisor import errors
from tests._registry import HostileRegistry

if TYPE_CHECKING:
    from supervisor.images import LayerProgress

pytestmark = pytest.mark.asyncio

MiB = 1 << 20


def _layer() -> bytes:
    """A layer tar holding one file of 10 KiB that does not compress."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = os.urandom(10 * 1024)
        info = tarfile.TarInfo("noise")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


LAYER = _layer()


@pytest.fixture
def hostile() -> Iterator[HostileRegistry]:
    server = HostileRegistry()
    try:
        yield server
    finally:
        server.close()


@pytest_asyncio.fixture
async def images_cleanup(client: supervisor.Client) -> AsyncIterator[None]:
    yield
    for image in await client.images():
        await client.remove_image(image.name)


async def _leases(client: supervisor.Client) -> list[str]:
    from supervisor.images._service import ImageService

    return await ImageService(client._session).store.list_leases()


async def _wait(event: object) -> None:
    # The server's thread records how its answer ended; wait for it off
    # the event loop (bounded: a server stuck writing is a failure).
    import threading

    assert isinstance(event, threading.Event)
    assert await anyio.to_thread.run_sync(event.wait, 60)


async def test_a_layer_body_is_capped_at_its_descriptor_size(
    client: supervisor.Client, hostile: HostileRegistry, images_cleanup: None
) -> None:
    _, layer = hostile.serve_image("app", "1", LAYER)
    size = len(gzip.compress(LAYER, mtime=0))
    # The layer's descriptor says ~10 KiB; the server sends 32 MiB.
    hostile.stream(f"/v2/app/blobs/{layer}", total=32 * MiB)
    seen: list[LayerProgress] = []
    with pytest.raises(errors.FailedPrecondition, match="more than"):
        await client.pull(f"{hostile.host}/app:1", progress=seen.append)
    # Nothing past the descriptor's size was handed to containerd.
    assert max(p.offset for p in seen if p.digest == layer) <= size
    assert await _leases(client) == []
    assert await client.images() == []


async def test_error_bodies_are_read_only_a_little(
    client: supervisor.Client, hostile: HostileRegistry, images_cleanup: None
) -> None:
    hostile.stream("/v2/app/manifests/1", status=404, total=64 * MiB, chunk=b"e" * 65536)
    with pytest.raises(errors.NotFound) as caught:
        await client.pull(f"{hostile.host}/app:1")
    await _wait(hostile.done["/v2/app/manifests/1"])
    # The client hung up after a small prefix instead of reading 64 MiB.
    assert not hostile.served["/v2/app/manifests/1"].completed
    assert len(str(caught.value)) < 1024


async def test_token_replies_are_read_only_up_to_a_bound(
    client: supervisor.Client, hostile: HostileRegistry, images_cleanup: None
) -> None:
    realm = f"http://{hostile.host}/token"
    hostile.routes["/v2/app/manifests/1"] = lambda h: hostile.send(
        h, 401, b"{}", headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="r"'}
    )
    hostile.stream("/token", total=64 * MiB, chunk=b" " * 65536, content_type="application/json")
    with pytest.raises(errors.FailedPrecondition, match="token"):
        await client.pull(f"{hostile.host}/app:1")
    await _wait(hostile.done["/token"])
    assert not hostile.served["/token"].completed


async def test_a_trickling_blob_fails_by_its_minimum_rate(
    client: supervisor.Client, hostile: HostileRegistry, images_cleanup: None
) -> None:
    # One byte every 0.5 s: each read is prompt, the transfer never ends.
    _, layer = hostile.serve_image("app", "1", LAYER)
    hostile.stream(f"/v2/app/blobs/{layer}", total=len(LAYER), chunk=b"x", pause=0.5)
    # The bound is only there so that the code before the fix fails
    # instead of hanging: a minimum rate ends the pull long before it.
    # (3 s, not less: the honest answers must still come in time on a
    # loaded machine.)
    with anyio.fail_after(120), pytest.raises(errors.DeadlineExceeded, match="rate"):
        await client.pull(f"{hostile.host}/app:1", http_timeout=3.0)
    assert await _leases(client) == []
    assert await client.images() == []


async def test_a_digest_reference_is_written_with_an_at_sign(
    client: supervisor.Client, hostile: HostileRegistry, images_cleanup: None
) -> None:
    manifest, _ = hostile.serve_image("app", "1", LAYER)
    wrong = "sha256:" + "0" * 64
    # The server answers a digest with another manifest's bytes.
    hostile.routes[f"/v2/app/manifests/{wrong}"] = hostile.routes["/v2/app/manifests/1"]
    with pytest.raises(errors.FailedPrecondition) as caught:
        await client.pull(f"{hostile.host}/app@{wrong}")
    assert f"app@{wrong}" in str(caught.value)
    assert f"app:{wrong}" not in str(caught.value)
    with pytest.raises(errors.NotFound, match=f"app@sha256:{'1' * 64}"):
        await client.pull(f"{hostile.host}/app@sha256:{'1' * 64}")
    assert manifest


async def test_registry_errors_name_the_registry(
    client: supervisor.Client, hostile: HostileRegistry, images_cleanup: None
) -> None:
    with pytest.raises(errors.NotFound) as caught:
        await client.pull(f"{hostile.host}/app:1")
    assert getattr(caught.value, "registry", None) == hostile.host


async def test_a_layer_already_stored_is_held_by_the_pull_lease(
    client: supervisor.Client,
    hostile: HostileRegistry,
    images_cleanup: None,
    containerd_daemon: Any,
) -> None:
    # The layer is in the store (another image holds it); while the pull
    # goes on, that image is removed and containerd's GC runs. The pull's
    # lease must hold the layer, or unpack finds it gone.
    _, layer = hostile.serve_image("app", "1", LAYER)
    first = await client.pull(f"{hostile.host}/app:1")

    def progress(p: LayerProgress) -> None:
        if p.digest == layer and p.state == "exists":
            # Blocking on purpose: GC runs before the pull takes another step.
            subprocess.run(
                ["ctr", "-a", containerd_daemon.address, "-n", client.namespace,
                 "images", "rm", "--sync", first.name],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip

    image = await client.pull(f"{hostile.host}/app:1", progress=progress)
    assert image.name == first.name
    assert await _leases(client) == []


async def test_a_snapshot_already_there_is_held_by_the_pull_lease(
    client: supervisor.Client,
    hostile: HostileRegistry,
    images_cleanup: None,
    containerd_daemon: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The layer's snapshot exists (the image pulled before holds it); just
    # after the pull finds it, that image is removed and GC runs. The
    # pull must then make the snapshot again, not record one that is gone.
    from supervisor.backends.containerd_images import ContainerdImages
    from supervisor.images._service import ImageService
    from supervisor.oci._digest import chain_ids

    hostile.serve_image("app", "1", LAYER)
    first = await client.pull(f"{hostile.host}/app:1")
    service = ImageService(client._session)
    snapshotter = await service.snapshotter(None)
    top = chain_ids((await service.local(first.name)).config.diff_ids)[-1]
    found = ContainerdImages.snapshot_exists
    removed: list[bool] = []

    async def exists_then_gc(self: ContainerdImages, name: str, key: str) -> bool:
        there = await found(self, name, key)
        if there and not removed:
            removed.append(True)
            with anyio.fail_after(60):
                await anyio.run_process(
                    ["ctr", "-a", containerd_daemon.address, "-n", client.namespace,
                     "images", "rm", "--sync", first.name],
                )  # fmt: skip
        return there

    monkeypatch.setattr(ContainerdImages, "snapshot_exists", exists_then_gc)
    await client.pull(f"{hostile.host}/app:1")
    monkeypatch.undo()
    assert removed
    assert await service.store.snapshot_exists(snapshotter, top)
