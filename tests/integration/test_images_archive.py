"""Image archives against the real containerd: export → remove → import →
run; a ``docker save`` tar made here; hostile archives refused without a
trace (no image, no lease, no content once GC has run)."""

from __future__ import annotations

import datetime
import io
import json
import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import supervisor
from supervisor import errors
from tests._registry import Layout, build_layout, busybox_layer, busybox_registry, digest

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def layer_tar() -> bytes:
    return busybox_layer()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Layout]]:
    with busybox_registry(tmp_path_factory.mktemp("archive-registry")) as found:
        yield found


def _store(client: supervisor.Client) -> Any:
    from supervisor.images._service import ImageService

    return ImageService(client._session).store


async def _gc(client: supervisor.Client) -> None:
    # A sync delete of a lease runs containerd's GC before it answers.
    store = _store(client)
    await store.create_lease("gc-now", datetime.timedelta(minutes=1))
    await store.delete_lease("gc-now", sync=True)


@pytest_asyncio.fixture
async def images_cleanup(client: supervisor.Client) -> AsyncIterator[None]:
    yield
    for image in await client.images():
        await client.remove_image(image.name)


async def _output(client: supervisor.Client, cid: str, image: str, **kw: Any) -> bytes:
    container = await client.new_container(cid, image=image, **kw)
    try:
        task = await container.new_task()
        await task.start()
        out, _ = await task.communicate()
        assert (await task.wait()).exit_code == 0
        await task.delete()
    finally:
        await container.delete()
    return out


async def _nothing_left(client: supervisor.Client) -> None:
    store = _store(client)
    assert await client.images() == []
    assert await store.list_leases() == []
    await _gc(client)
    assert await store.list_content() == {}


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _layout_members(layout: Layout) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """The files of an on-disk OCI layout as tar members (``index.json``
    naming the image in full)."""
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for path in sorted((layout.path / "blobs" / "sha256").iterdir()):
        members.append(_file(f"blobs/sha256/{path.name}", path.read_bytes()))
    index = json.loads((layout.path / "index.json").read_text())
    index["manifests"][0]["annotations"] = {"io.containerd.image.name": "example.com/hand/made:2"}
    members.append(_file("index.json", json.dumps(index).encode()))
    members.append(_file("oci-layout", (layout.path / "oci-layout").read_bytes()))
    return members


async def test_export_remove_import_run(
    client: supervisor.Client,
    registry: tuple[str, Layout],
    tmp_path: Path,
    images_cleanup: None,
) -> None:
    host, layout = registry
    image = await client.pull(f"{host}/busybox:1")
    archive = tmp_path / "busybox.tar"
    await client.export_image(image.name, archive)
    with pytest.raises(errors.AlreadyExists):
        await client.export_image(image.name, archive)

    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        docker = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert {"oci-layout", "index.json", "manifest.json"} <= names
    assert f"blobs/sha256/{layout.manifest_digest[7:]}" in names
    assert index["manifests"][0]["digest"] == layout.manifest_digest
    assert docker[0]["RepoTags"] == [f"{host}/busybox:1"]
    assert all(layer in names for layer in docker[0]["Layers"])

    await client.remove_image(image.name)
    await _gc(client)
    assert await _store(client).list_content() == {}

    imported = await client.import_image(archive)
    assert [(i.name, i.digest) for i in imported] == [(image.name, image.digest)]
    assert await _store(client).list_leases() == []
    assert await _output(client, "imported", image.name) == b"hello from the image\n"

    # Under another name, as a caller chooses.
    again = await client.import_image(archive, name="example.com/renamed:7")
    assert again[0].name == "example.com/renamed:7"
    out = await _output(client, "renamed", "example.com/renamed:7", args=["echo", "renamed"])
    assert out == b"renamed\n"


async def test_an_index_layout_with_one_platform_present(
    client: supervisor.Client, tmp_path: Path, layer_tar: bytes, images_cleanup: None
) -> None:
    layout = build_layout(tmp_path / "multi", layer_tar, multi=True)
    # Drop the arm64 manifest's blobs: an index whose other platform is absent.
    index_blob = json.loads((layout.path / "blobs/sha256" / layout.index_digest[7:]).read_text())  # type: ignore[index]
    arm = next(m for m in index_blob["manifests"] if m["platform"]["architecture"] == "arm64")
    (layout.path / "blobs/sha256" / arm["digest"][7:]).unlink()
    archive = _tar(tmp_path / "multi.tar", _layout_members(layout))
    [image] = await client.import_image(archive)
    assert image.name == "example.com/hand/made:2"
    assert image.digest == layout.index_digest
    assert await _output(client, "multi", image.name) == b"hello from the image\n"


def _docker_save(
    tmp_path: Path, layer_tar: bytes, tags: list[str], *, repeated: bool = False
) -> tuple[Path, str]:
    """The legacy ``docker save`` shape: ``<id>/layer.tar``, ``<hex>.json``
    and ``manifest.json``; with ``repeated``, the layer twice, the second a
    symbolic link to the first as docker writes one."""
    diff_id = digest(layer_tar)
    layer_dir, again = "a" * 64, "c" * 64
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["echo", "saved by docker"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id, diff_id] if repeated else [diff_id]},
    }
    config_body = json.dumps(config).encode()
    config_name = digest(config_body)[7:] + ".json"
    layers = [f"{layer_dir}/layer.tar"] + ([f"{again}/layer.tar"] if repeated else [])
    manifest = [{"Config": config_name, "RepoTags": tags, "Layers": layers}]
    members = [
        (tarfile.TarInfo(layer_dir), None),
        _file(f"{layer_dir}/layer.tar", layer_tar),
        _file(config_name, config_body),
        _file("manifest.json", json.dumps(manifest).encode()),
    ]
    members[0][0].type = tarfile.DIRTYPE
    if repeated:
        link = tarfile.TarInfo(f"{again}/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, f"../{layer_dir}/layer.tar"
        members.append((link, None))
    return _tar(tmp_path / "saved.tar", members), digest(config_body)


async def test_a_docker_save_archive_imports(
    client: supervisor.Client, tmp_path: Path, layer_tar: bytes, images_cleanup: None
) -> None:
    archive, config_digest = _docker_save(tmp_path, layer_tar, ["busybox-saved:1"])
    [image] = await client.import_image(archive)
    assert image.name == "docker.io/library/busybox-saved:1"
    assert image.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert config_digest in await _store(client).list_content()
    assert await _output(client, "saved", image.name) == b"saved by docker\n"
    # Its own export goes through docker's manifest.json with the short name.
    out = tmp_path / "again.tar"
    await client.export_image(image.name, out)
    with tarfile.open(out) as tar:
        docker = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert docker[0]["RepoTags"] == ["busybox-saved:1"]


async def test_a_docker_save_with_a_repeated_layer_imports(
    client: supervisor.Client, tmp_path: Path, layer_tar: bytes, images_cleanup: None
) -> None:
    # docker save writes a layer that repeats (the same diff id twice) once,
    # and the second as a symbolic link to the first.
    archive, _ = _docker_save(tmp_path, layer_tar, ["twice:1"], repeated=True)
    [image] = await client.import_image(archive)
    assert await _output(client, "twice", image.name) == b"saved by docker\n"


async def test_an_untagged_docker_save_needs_a_name(
    client: supervisor.Client, tmp_path: Path, layer_tar: bytes, images_cleanup: None
) -> None:
    archive, _ = _docker_save(tmp_path, layer_tar, [])
    with pytest.raises(errors.InvalidArgument, match="name="):
        await client.import_image(archive)
    await _nothing_left(client)
    [image] = await client.import_image(archive, name="local/untagged:x")
    assert image.name == "docker.io/local/untagged:x"


def _hostile_cases(layout: Layout) -> dict[str, list[tuple[tarfile.TarInfo, bytes | None]]]:
    good = _layout_members(layout)
    climbing = [*good, _file("blobs/../../escape", b"x")]
    absolute = [*good, _file("/etc/evil", b"x")]
    link = tarfile.TarInfo(f"blobs/sha256/{'b' * 64}")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
    symlinked = [*good, (link, None)]
    hard = tarfile.TarInfo("hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "nowhere"
    hardlinked = [*good, (hard, None)]

    def symlink(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.SYMTYPE, target
        return info, None

    link_climbing = [*good, symlink("blobs/x", "../../etc/shadow")]
    dir_entry = tarfile.TarInfo("blobs/dir")
    dir_entry.type = tarfile.DIRTYPE
    link_to_dir = [*good, (dir_entry, None), symlink("blobs/y", "dir")]
    link_chain = [*good, symlink("blobs/a", "b"), symlink("blobs/b", "../index.json")]
    link_loop = [*good, symlink("blobs/a", "b"), symlink("blobs/b", "a")]
    # The layer's bytes altered, its name (the digest) kept.
    manifest = json.loads((layout.path / "blobs/sha256" / layout.manifest_digest[7:]).read_text())
    layer_name = "blobs/sha256/" + manifest["layers"][0]["digest"][7:]
    tampered = []
    for info, data in good:
        if info.name == layer_name and data is not None:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        tampered.append((info, data))
    twice = [*good, _file("index.json", b'{"manifests": []}')]
    return {
        "climbing": climbing,
        "absolute": absolute,
        "symlink": symlinked,
        "hardlink": hardlinked,
        "symlink climbing": link_climbing,
        "symlink to a directory": link_to_dir,
        "symlink to a symlink": link_chain,
        "symlink loop": link_loop,
        "tampered layer": tampered,
        "a name twice": twice,
    }


@pytest.mark.parametrize(
    "case",
    [
        "climbing",
        "absolute",
        "symlink",
        "hardlink",
        "symlink climbing",
        "symlink to a directory",
        "symlink to a symlink",
        "symlink loop",
        "tampered layer",
        "a name twice",
    ],
)
async def test_a_hostile_archive_is_refused_and_leaves_nothing(
    client: supervisor.Client, tmp_path: Path, layer_tar: bytes, case: str
) -> None:
    layout = build_layout(tmp_path / "layout", layer_tar)
    archive = _tar(tmp_path / "hostile.tar", _hostile_cases(layout)[case])
    expected = errors.FailedPrecondition if case == "tampered layer" else errors.InvalidArgument
    with pytest.raises(expected, match="refused|not the expected"):
        await client.import_image(archive)
    await _nothing_left(client)
    assert not (tmp_path / "escape").exists()


async def test_a_manifest_whose_bytes_are_not_its_digest_is_refused(
    client: supervisor.Client, tmp_path: Path, layer_tar: bytes
) -> None:
    layout = build_layout(tmp_path / "layout", layer_tar)
    members = []
    for info, data in _layout_members(layout):
        if info.name.endswith(layout.manifest_digest[7:]) and data is not None:
            data = data.replace(b'"schemaVersion": 2', b'"schemaVersion":  2')
        members.append((info, data))
    with pytest.raises(errors.FailedPrecondition, match="not the content of"):
        await client.import_image(_tar(tmp_path / "bad.tar", members))
    await _nothing_left(client)


async def test_not_an_archive(client: supervisor.Client, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(errors.InvalidArgument):
        await client.import_image(junk)
    with pytest.raises(errors.NotFound):
        await client.import_image(tmp_path / "missing.tar")
    with pytest.raises(errors.NotFound):
        await client.export_image("example.com/none:1", tmp_path / "none.tar")
    assert not (tmp_path / "none.tar").exists()
    await _nothing_left(client)


async def test_a_tampered_blob_is_refused_even_when_containerd_has_the_real_one(
    client: supervisor.Client, tmp_path: Path, layer_tar: bytes, images_cleanup: None
) -> None:
    # containerd takes no bytes for content it already holds: the archive's
    # must still be checked.
    layout = build_layout(tmp_path / "layout", layer_tar)
    good = _tar(tmp_path / "good.tar", _layout_members(layout))
    await client.import_image(good, name="example.com/genuine:1")
    bad = _tar(tmp_path / "bad.tar", _hostile_cases(layout)["tampered layer"])
    with pytest.raises(errors.FailedPrecondition, match="not the expected"):
        await client.import_image(bad)
    assert [i.name for i in await client.images()] == ["example.com/genuine:1"]
    assert await _store(client).list_leases() == []


async def test_a_layer_already_stored_is_held_by_the_import_lease(
    client: supervisor.Client,
    tmp_path: Path,
    layer_tar: bytes,
    images_cleanup: None,
    containerd_daemon: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The layer is in the store (the first import's image holds it); while
    # the second import goes on, that image is removed and containerd's GC
    # runs. The import's lease must hold the layer, or unpack finds it gone.
    import subprocess

    from supervisor.images import _archive

    layout = build_layout(tmp_path / "layout", layer_tar)
    archive = _tar(tmp_path / "image.tar", _layout_members(layout))
    [first] = await client.import_image(archive)
    verify = _archive._verify_member

    def remove_first_then_verify(*args: Any) -> None:
        # Runs where the import checks the archive's copy of a blob it found
        # in the store: GC runs before the import takes another step.
        subprocess.run(
            ["ctr", "-a", containerd_daemon.address, "-n", client.namespace,
             "images", "rm", "--sync", first.name],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        verify(*args)

    monkeypatch.setattr(_archive, "_verify_member", remove_first_then_verify)
    [second] = await client.import_image(archive, name="example.com/second:1")
    assert [i.name for i in await client.images()] == [second.name]
    out = await _output(client, "second", second.name, args=["echo", "held"])
    assert out == b"held\n"
