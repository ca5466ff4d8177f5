"""Hostile and careless inputs to today's code, against the real containerd:
archive links that lie about their digest, loading tasks with and without
attaching from a second client, and what the command prints of data another
client stored.

A test marked ``xfail(strict=True)`` shows a defect of the current code: it
fails now, and turns the suite red once the defect is fixed (then drop the
mark). The others hold today and guard against regressions.
"""

from __future__ import annotations

import datetime
import gzip
import io
import json
import os
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import pytest_asyncio

import supervisor
from supervisor import errors
from tests._registry import build_layout, busybox_layer, digest
from tests.integration.cli_runner import Cli
from tests.integration.conftest import fifo_files

pytestmark = pytest.mark.asyncio

# Hang guard for waits that must end (a shared, sometimes slow machine).
GUARD = 30

# -- helpers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def layer_tar() -> bytes:
    return busybox_layer()


def _store(client: supervisor.Client) -> Any:
    from supervisor.images._service import ImageService

    return ImageService(client._session).store


async def _nothing_left(client: supervisor.Client) -> None:
    store = _store(client)
    assert await client.images() == []
    assert await store.list_leases() == []
    # A sync delete of a lease runs containerd's GC before it answers.
    await store.create_lease("gc-now", datetime.timedelta(minutes=1))
    await store.delete_lease("gc-now", sync=True)
    assert await store.list_content() == {}


@pytest_asyncio.fixture
async def images_cleanup(client: supervisor.Client) -> AsyncIterator[None]:
    yield
    for image in await client.images():
        await client.remove_image(image.name)


_Member = tuple[str, str, "bytes | str | None"]


def _tar(path: Path, members: list[_Member]) -> Path:
    """``(name, kind, payload)``: kind ``f`` a file, ``d`` a directory,
    ``s``/``h`` a symbolic/hard link to ``payload``."""
    with tarfile.open(path, "w") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "f":
                assert isinstance(payload, bytes)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            if kind == "d":
                info.type = tarfile.DIRTYPE
            else:
                assert isinstance(payload, str)
                info.type = tarfile.SYMTYPE if kind == "s" else tarfile.LNKTYPE
                info.linkname = payload
            tar.addfile(info)
    return path


def _layout_files(root: Path, name: str) -> dict[str, bytes]:
    """An on-disk OCI layout's files by archive path, ``index.json`` naming
    the image in full."""
    files = {
        f"blobs/sha256/{p.name}": p.read_bytes() for p in sorted((root / "blobs/sha256").iterdir())
    }
    index = json.loads((root / "index.json").read_text())
    index["manifests"][0]["annotations"] = {"io.containerd.image.name": name}
    files["index.json"] = json.dumps(index).encode()
    files["oci-layout"] = (root / "oci-layout").read_bytes()
    return files


def _layer_name(files: dict[str, bytes], root: Path) -> str:
    index = json.loads((root / "index.json").read_text())
    manifest = json.loads(files["blobs/sha256/" + index["manifests"][0]["digest"][7:]])
    return "blobs/sha256/" + str(manifest["layers"][0]["digest"][7:])


def _config(diff_ids: list[str]) -> bytes:
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["echo", "saved by docker"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()


async def _output(client: supervisor.Client, cid: str, image: str) -> bytes:
    container = await client.new_container(cid, image=image)
    try:
        task = await container.new_task()
        await task.start()
        with anyio.fail_after(GUARD):
            out, _ = await task.communicate()
            assert (await task.wait()).exit_code == 0
        await task.delete()
    finally:
        await container.delete()
    return out


# -- 2. archive links ---------------------------------------------------------------


def _linked_to_a_lookalike(tmp_path: Path, layer_tar: bytes, name: str) -> tuple[Path, Path]:
    """A good layout archive, and the same whose layer member is a symbolic
    link (named by the layer's digest) to a blob of the same size holding
    other bytes (stored under its own, true digest)."""
    root = tmp_path / "layout"
    build_layout(root, layer_tar)
    files = _layout_files(root, name)
    layer = _layer_name(files, root)
    good = _tar(tmp_path / "good.tar", [(n, "f", b) for n, b in files.items()])
    real = files.pop(layer)
    lookalike = real[:-1] + bytes([real[-1] ^ 0xFF])
    lookalike_name = digest(lookalike)[7:]
    members: list[_Member] = [(n, "f", b) for n, b in files.items()]
    members += [(f"blobs/sha256/{lookalike_name}", "f", lookalike)]
    members += [(layer, "s", lookalike_name)]
    return good, _tar(tmp_path / "hostile.tar", members)


async def test_a_link_named_by_a_digest_to_other_bytes_is_refused(
    client: supervisor.Client, tmp_path: Path, layer_tar: bytes
) -> None:
    _, hostile = _linked_to_a_lookalike(tmp_path, layer_tar, "example.com/link/lies:1")
    with pytest.raises(errors.FailedPrecondition):
        await client.import_image(hostile)
    await _nothing_left(client)


async def test_the_lie_is_caught_when_containerd_already_has_the_real_layer(
    client: supervisor.Client, tmp_path: Path, layer_tar: bytes, images_cleanup: None
) -> None:
    # containerd takes no bytes for content it holds: the link's must still be hashed.
    good, hostile = _linked_to_a_lookalike(tmp_path, layer_tar, "example.com/link/lies:1")
    [first] = await client.import_image(good)
    with pytest.raises(errors.FailedPrecondition):
        await client.import_image(hostile, name="example.com/link/other:1")
    assert [i.name for i in await client.images()] == [first.name]
    assert await _store(client).list_leases() == []


async def test_a_docker_save_layer_link_named_by_another_digest_is_refused(
    client: supervisor.Client, tmp_path: Path, layer_tar: bytes
) -> None:
    # A newer docker save lists layers as blobs/sha256/<hex>: the name is a
    # promise the bytes behind a link must keep, even when the config's diff
    # id matches those bytes.
    real = digest(layer_tar)[7:]
    claimed = "f" * 64
    config = _config([digest(layer_tar)])
    config_name = digest(config)[7:] + ".json"
    manifest = [
        {"Config": config_name, "RepoTags": ["lies:1"], "Layers": [f"blobs/sha256/{claimed}"]}
    ]
    members: list[_Member] = [
        (f"blobs/sha256/{real}", "f", layer_tar),
        (f"blobs/sha256/{claimed}", "s", real),
        (config_name, "f", config),
        ("manifest.json", "f", json.dumps(manifest).encode()),
    ]
    with pytest.raises(errors.FailedPrecondition, match="not the content of"):
        await client.import_image(_tar(tmp_path / "named.tar", members))
    await _nothing_left(client)


async def test_a_docker_save_with_hard_links_imports_and_runs(
    client: supervisor.Client, tmp_path: Path, layer_tar: bytes, images_cleanup: None
) -> None:
    # The repeated layer as a hard link, and one link placed before the
    # member it names (tar writers order members as they like).
    layer = gzip.compress(layer_tar, mtime=0)
    config = _config([digest(layer_tar)] * 3)
    config_name = digest(config)[7:] + ".json"
    dirs = ["a" * 64, "b" * 64, "c" * 64]
    manifest = [
        {
            "Config": config_name,
            "RepoTags": ["linked:1"],
            "Layers": [f"{d}/layer.tar" for d in dirs],
        }
    ]
    members: list[_Member] = [
        (f"{dirs[0]}/layer.tar", "h", f"./{dirs[1]}/layer.tar"),
        (f"{dirs[1]}/layer.tar", "f", layer),
        (f"{dirs[2]}/layer.tar", "s", f"..//{dirs[1]}/./layer.tar"),
        (config_name, "f", config),
        ("manifest.json", "f", json.dumps(manifest).encode()),
    ]
    [image] = await client.import_image(_tar(tmp_path / "linked.tar", members))
    assert await _output(client, "linked", image.name) == b"saved by docker\n"


# -- 4. loading tasks from a second client ------------------------------------------


def _spec(rootfs: str, script: str) -> dict[str, Any]:
    return supervisor.default_spec(["sh", "-c", script], rootfs)


def open_fds() -> set[str]:
    """Our fds but sockets and pipes: a closed client's connection is let
    go a loop iteration later, and the event loop's own come and go."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the fd listing the directory itself, already closed
        if not target.startswith(("socket:", "pipe:", "anon_inode:")):
            found.add(fd)
    return found


async def _exactly(stream: Any, size: int) -> bytes:
    got = b""
    with anyio.fail_after(GUARD):
        while len(got) < size:
            got += await stream.receive()
    return got


async def test_a_look_only_client_opens_nothing_then_attaches_and_reads_what_was_left(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    def connect() -> Any:
        return supervisor.connect(containerd_address, namespace=namespace, state_dir=state_dir)

    async with connect() as first:
        spec = _spec(rootfs, "echo one; echo two; exec sleep 60")
        container = await first.new_container("left", spec)
        task = await container.new_task()
        await task.start()
        proc = await task.exec("side", ["sh", "-c", "echo three; exec sleep 60"])
        await proc.start()
    # The first run is gone without reading: the output waits in the FIFOs.
    files = fifo_files(state_dir)
    assert len(files) == 4
    before = open_fds()
    async with connect() as second:
        await second.containers()  # connected: only stdio changes the fds now
        fds = open_fds()
        ((looker, looked),) = await second.restore(attach=False)
        assert looked is not None and sorted(looked.execs) == ["side"]
        await looker.task(attach=False)
        await second.restore(attach=False)
        assert open_fds() == fds and fifo_files(state_dir) == files
        with pytest.raises(errors.FailedPrecondition, match="attach=False"):
            looked.stdout  # noqa: B018

        assert await looker.task() is looked  # attaches these same objects
        attached = open_fds() - fds
        assert len(attached) == 4
        assert await _exactly(looked.stdout, 8) == b"one\ntwo\n"
        assert await _exactly(looked.execs["side"].stdout, 6) == b"three\n"
        for _ in range(3):
            ((_, again),) = await second.restore()
            assert again is not None and again.stdout is looked.stdout
        assert open_fds() - fds == attached

        with anyio.fail_after(GUARD):
            await again.execs["side"].delete(force=True)
            await again.delete(force=True)
        assert fifo_files(state_dir) == []
        assert open_fds() == fds
        await looker.delete()
    assert open_fds() == before


async def test_a_look_only_delete_from_another_client_removes_the_files(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as owner:
        container = await owner.new_container("owned", _spec(rootfs, "exec sleep 60"))
        task = await container.new_task()
        await task.start()
        proc = await task.exec("side", ["sleep", "60"])
        await proc.start()
        owner_fds = open_fds()
        async with supervisor.connect(
            containerd_address, namespace=namespace, state_dir=state_dir
        ) as other:
            await other.containers()  # connected: only stdio changes the fds now
            other_fds = open_fds()
            ((_, looked),) = await other.restore(attach=False)
            assert looked is not None
            assert open_fds() == other_fds
            with anyio.fail_after(GUARD):
                await looked.execs["side"].delete(force=True)
                await looked.delete(force=True)
            assert fifo_files(state_dir) == []
            assert open_fds() == other_fds
        assert open_fds() == owner_fds
        # The owner hears the exits; its own delete finds nothing and lets go.
        with anyio.fail_after(GUARD):
            await task.wait()
            await proc.wait()
        with pytest.raises(errors.NotFound):
            await proc.delete()
        with pytest.raises(errors.NotFound):
            await task.delete()
        await container.delete()
        assert fifo_files(state_dir) == []


async def test_restores_racing_each_other_and_a_delete_share_and_release_the_fds(
    client: supervisor.Client, state_dir: Path, rootfs: str
) -> None:
    await client.containers()  # connected: only stdio changes the fds now
    before = open_fds()
    container = await client.new_container("raced", _spec(rootfs, "exec sleep 60"))
    task = await container.new_task()
    await task.start()
    after_create = open_fds()
    restored: list[supervisor.Task | None] = []

    async def restore() -> None:
        for c, t in await client.restore():
            if c.id == "raced":
                restored.append(t)

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(restore)
    assert len(restored) == 4 and all(t is not None and t.stdout is task.stdout for t in restored)
    assert open_fds() == after_create
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: task.delete(force=True))
            for _ in range(3):
                tg.start_soon(restore)
    assert open_fds() == before
    assert fifo_files(state_dir) == []
    for late in restored[4:]:
        if late is not None:
            with pytest.raises(errors.NotFound):
                await late.delete()
    assert open_fds() == before
    await container.delete()


# -- 5. what the command prints of stored data --------------------------------------


def _raw_controls(text: str) -> list[str]:
    return [ch for ch in text if (ord(ch) < 0x20 and ch != "\n") or 0x7F <= ord(ch) <= 0x9F]


async def _store_raw_container(
    address: str, namespace: str, tmp_path: Path, cid: str, spec: dict[str, Any], runtime: str
) -> None:
    """A container as another client of containerd may store it: the spec
    JSON written with ``\\uXXXX`` escapes, any runtime name; past the
    library's own checks."""
    from supervisor._proto.google.protobuf import Any as PbAny
    from supervisor.backends import containerd as backend

    def escaped(type_url: str, value: Any) -> PbAny:
        return PbAny(type_url=type_url, value=json.dumps(value).encode())

    original = backend._json_any
    backend._json_any = escaped
    try:
        async with supervisor.connect(
            address, namespace=namespace, state_dir=tmp_path / "other", events=False
        ) as other:
            await other._session.raw_transport.create_container(
                cid, spec, runtime=runtime, runtime_options=None, labels={}
            )
    finally:
        backend._json_any = original


async def test_images_of_another_client_are_listed_escaped(
    cli: Cli, client: supervisor.Client, images_cleanup: None
) -> None:
    from supervisor.oci._manifest import Descriptor

    hostile = "\x1b]0;pwned\x07\x9b2J"
    target = Descriptor(f"application/x{hostile}", "sha256:" + "a" * 64, 10)
    await _store(client).put_image(f"example.com/{hostile}:1", target)
    code, out, err = await cli("images")
    assert code == 0, err
    assert _raw_controls(out) == [] and "\\x1b]0;pwned\\x07\\x9b2J" in out
    # The CLI cannot name it to remove it; the library can.
    await _store(client).delete_image(f"example.com/{hostile}:1")


@pytest.mark.parametrize("command", [("ps",), ("inspect", "surrogate")])
async def test_a_spec_with_a_lone_surrogate_does_not_break_the_listing(
    cli: Cli, containerd_address: str, namespace: str, tmp_path: Path, command: tuple[str, ...]
) -> None:
    spec = supervisor.default_spec(["sh", "-c", "true \ud800"], cli.rootfs)
    await _store_raw_container(
        containerd_address, namespace, tmp_path, "surrogate", spec, "io.containerd.runc.v2"
    )
    code, out, err = await cli(*command)
    assert (code, "Traceback" in err) == (0, False), err[-500:]
    assert "surrogate" in out


async def test_start_does_not_pass_a_stored_runtime_name_to_the_terminal(
    cli: Cli, containerd_address: str, namespace: str, tmp_path: Path
) -> None:
    spec = supervisor.default_spec(["true"], cli.rootfs)
    await _store_raw_container(
        containerd_address, namespace, tmp_path, "badrt", spec, "\x1b]0;pwned\x07\x9b2J"
    )
    code, out, err = await cli("start", "badrt")
    assert code == 125
    assert "pwned" in err
    assert _raw_controls(out + err) == [], repr(err)


async def test_import_does_not_pass_an_archive_member_name_to_the_terminal(
    cli: Cli, tmp_path: Path
) -> None:
    config = _config([])
    config_path = "\x1b]0;pwned\x07/" + "0" * 64 + ".json"  # not its digest
    manifest = [{"Config": config_path, "RepoTags": ["esc:1"], "Layers": []}]
    archive = _tar(
        tmp_path / "esc.tar",
        [(config_path, "f", config), ("manifest.json", "f", json.dumps(manifest).encode())],
    )
    code, out, err = await cli("import", str(archive))
    assert code == 125
    assert "not the content of" in err
    assert _raw_controls(out + err) == [], repr(err)
