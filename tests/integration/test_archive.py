"""Files in and out of containers (put_archive/get_archive) against the real
containerd: a running task, a container made from an image without a task,
a spec container without a task; hostile archives and links that try to
lead out of the container's root."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import supervisor
from supervisor import errors
from tests._image_layout import image_tar

pytestmark = pytest.mark.asyncio

REF = "example.com/archive/app:1"


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def _special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info, None


async def _members(stream: supervisor.ArchiveStream) -> dict[str, bytes | str]:
    async with stream:
        data = await stream.read()
    found: dict[str, bytes | str] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar:
            f = tar.extractfile(m) if m.isreg() else None
            found[m.name] = f.read() if f is not None else ("dir" if m.isdir() else m.linkname)
    return found


@pytest.fixture
def own_rootfs(rootfs: str, tmp_path: Path) -> Path:
    """A private, writable copy of the busybox rootfs."""
    root = tmp_path / "rootfs"
    shutil.copytree(rootfs, root, symlinks=True)
    return root


@pytest_asyncio.fixture
async def image(client: supervisor.Client, tmp_path: Path) -> AsyncIterator[str]:
    config = {"Cmd": ["sleep", "60"], "WorkingDir": "/"}
    await client.import_image(image_tar(tmp_path / "img.tar", REF, config), name=REF)
    yield REF
    for found in await client.images():
        await client.remove_image(found.name)


async def test_running_task_files_in_and_out(client: supervisor.Client, rootfs: str) -> None:
    spec = supervisor.default_spec(["sleep", "60"], rootfs)
    async with client.running("cp-live", spec) as task:
        container = task.container
        await container.put_archive("/tmp", _tar(_file("dir/hello.txt", b"hi\n", 0o640)))
        script = "cat /tmp/dir/hello.txt; stat -c %a /tmp/dir/hello.txt"
        proc = await task.exec("cat", ["sh", "-c", script])
        await proc.start()
        out, _ = await proc.communicate()
        assert out == b"hi\n640\n"
        stream, stat = await container.get_archive("/tmp/dir")
        assert (stat.name, stat.size >= 0) == ("dir", True)
        assert await _members(stream) == {"dir": "dir", "dir/hello.txt": b"hi\n"}
        # The root is read-only to its processes, so to the copy too.
        with pytest.raises(errors.FailedPrecondition):
            await container.put_archive("/", _tar(_file("x", b"")))


async def test_image_container_without_a_task(client: supervisor.Client, image: str) -> None:
    container = await client.new_container("cp-image", image=image)
    await container.put_archive("/root", _tar(_file("note", b"written before start\n")))
    stream, stat = await container.get_archive("/etc/passwd")
    assert stat.name == "passwd"
    assert await _members(stream) == {"passwd": b"root:x:0:0:root:/root:/bin/sh\n"}
    # The snapshot was mounted only while it was used: nothing is left mounted.
    assert ".archive" not in Path("/proc/self/mountinfo").read_text()
    assert list((client.state_dir / ".archive").iterdir()) == []
    read_only = await client.new_container(
        "cp-image-ro", image=image, spec={"root": {"readonly": True}}
    )
    with pytest.raises(errors.FailedPrecondition):
        await read_only.put_archive("/root", _tar(_file("x", b"")))
    await read_only.delete()
    task = await container.new_task()
    await task.start()
    proc = await task.exec("cat", ["cat", "/root/note"])
    await proc.start()
    assert (await proc.communicate())[0] == b"written before start\n"
    await task.delete(force=True)
    await container.delete()


async def test_spec_container_without_a_task(
    client: supervisor.Client, rootfs: str, own_rootfs: Path
) -> None:
    shared = await client.new_container("cp-shared", supervisor.default_spec(["true"], rootfs))
    with pytest.raises(errors.FailedPrecondition):
        await shared.put_archive("/tmp", _tar(_file("x", b"")))
    assert not (Path(rootfs) / "tmp" / "x").exists()
    spec = supervisor.default_spec(["true"], str(own_rootfs), read_only=False)
    container = await client.new_container("cp-own", spec)
    await container.put_archive("/etc", _tar(_file("motd", b"hello\n")))
    assert (own_rootfs / "etc" / "motd").read_bytes() == b"hello\n"
    stream, _ = await container.get_archive("/etc/motd")
    assert await _members(stream) == {"motd": b"hello\n"}
    with pytest.raises(errors.NotFound):
        await container.get_archive("/nothing/here")


@pytest.mark.parametrize(
    "members",
    [
        [_file("/abs", b"x")],
        [_file("../up", b"x")],
        [_file("a/../../up", b"x")],
        [_special("dev", tarfile.CHRTYPE)],
        [_special("fifo", tarfile.FIFOTYPE)],
        [_special("hard", tarfile.LNKTYPE, "/etc/passwd")],
        [_special("hard", tarfile.LNKTYPE, "../../etc/passwd")],
        [_file("twice", b"1"), _file("twice", b"2")],
        [_file("ok", b"fine"), _special("dev", tarfile.BLKTYPE)],
        [_special("l", tarfile.SYMTYPE, "/etc"), _special("h", tarfile.LNKTYPE, "l/passwd")],
    ],
    ids=[
        "absolute",
        "climbs",
        "climbs-inside",
        "chardev",
        "fifo",
        "hardlink-abs",
        "hardlink-out",
        "twice",
        "late-device",
        "hardlink-via-symlink",
    ],
)
async def test_hostile_archives_write_nothing(
    client: supervisor.Client, own_rootfs: Path, members: list[Any]
) -> None:
    spec = supervisor.default_spec(["true"], str(own_rootfs), read_only=False)
    container = await client.new_container("cp-hostile", spec)
    before = sorted(str(p) for p in own_rootfs.rglob("*"))
    with pytest.raises(errors.InvalidArgument):
        await container.put_archive("/tmp", _tar(*members))
    assert sorted(str(p) for p in own_rootfs.rglob("*")) == before


async def test_links_stay_inside_the_root(
    client: supervisor.Client, own_rootfs: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (own_rootfs / "tmp" / "abs").symlink_to(outside)  # absolute, as the host sees it
    (own_rootfs / "tmp" / "up").symlink_to("../../../../../../..")
    spec = supervisor.default_spec(["true"], str(own_rootfs), read_only=False)
    container = await client.new_container("cp-links", spec)
    archive = _tar(
        _special("root-link", tarfile.SYMTYPE, "/"),
        _file("root-link/via-root-link", b"1"),
        _special("climb", tarfile.SYMTYPE, "../../../../.."),
        _file("climb/via-climb", b"2"),
    )
    await container.put_archive("/tmp", archive)
    await container.put_archive("/tmp/up", _tar(_file("via-up", b"3")))
    with pytest.raises(errors.NotFound):  # /<outside> does not exist in the container
        await container.put_archive("/tmp/abs", _tar(_file("via-abs", b"4")))
    assert os.listdir(outside) == []
    for name in ("via-root-link", "via-climb", "via-up"):
        assert (own_rootfs / name).is_file(), name
        assert not (Path("/") / name).exists()
    # Read back through a link to the host's /etc: the container's /etc.
    (own_rootfs / "tmp" / "etc").symlink_to("/etc")
    stream, _ = await container.get_archive("/tmp/etc/passwd")
    assert await _members(stream) == {"passwd": (own_rootfs / "etc" / "passwd").read_bytes()}
    stream, stat = await container.get_archive("/tmp/etc")
    assert stat.link_target == "/etc"
    assert await _members(stream) == {"etc": "/etc"}


async def test_bad_arguments(client: supervisor.Client, own_rootfs: Path) -> None:
    spec = supervisor.default_spec(["true"], str(own_rootfs), read_only=False)
    container = await client.new_container("cp-bad", spec)
    with pytest.raises(errors.InvalidArgument):
        await container.put_archive("/tmp", b"not a tar at all")
    with pytest.raises(errors.InvalidArgument):
        await container.put_archive("/tmp", "text")  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument):
        await container.get_archive("")
    with pytest.raises(errors.NotFound):
        await container.put_archive("/no/such/dir", _tar(_file("x", b"")))


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_an_abandoned_or_cancelled_copy_holds_nothing(
    client: supervisor.Client, image: str
) -> None:
    import anyio

    container = await client.new_container("cp-abandon", image=image)
    before = _fds()
    # Closed after the first chunk of a tree larger than one chunk.
    stream, _ = await container.get_archive("/bin")
    async with stream:
        async for _chunk in stream:
            break
    # Cancelled while the copy is being made (at its first checkpoint).
    with anyio.move_on_after(0):
        stream, _ = await container.get_archive("/bin")
        await stream.read()
    with anyio.move_on_after(0):
        await container.put_archive("/tmp", _tar(_file("x", b"x")))
    # Never read nor closed: dropping it releases the snapshot too.
    stream, _ = await container.get_archive("/bin")
    del stream
    import gc

    gc.collect()
    assert _fds() == before
    assert ".archive" not in Path("/proc/self/mountinfo").read_text()
    await container.delete()


async def test_an_exited_task_is_refused(client: supervisor.Client, rootfs: str) -> None:
    container = await client.new_container("cp-exited", supervisor.default_spec(["true"], rootfs))
    task = await container.new_task(output="null")
    await task.start()
    await task.wait()
    with pytest.raises(errors.FailedPrecondition):
        await container.get_archive("/etc")
    await task.delete()
    stream, stat = await container.get_archive("/etc/passwd")  # the spec's root now
    await stream.aclose()
    assert stat.name == "passwd"
    await container.delete()
