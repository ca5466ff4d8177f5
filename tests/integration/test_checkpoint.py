"""Checkpoint and restore with CRIU (issue 26) against the real containerd.

The refusals run everywhere: a CRIU that is missing or whose ``criu check``
fails, a terminal, a name taken; each leaves the task running, the
container's spec, the content store and the leases as they were. The dumps
and restores themselves need a kernel CRIU can work on: they carry the
``criu`` marker, run in the cgroup v2 VM lane (``make test-cgroup2``), and
are skipped elsewhere with the reason ``criu check`` gives.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import pytest_asyncio

import supervisor
from supervisor import errors
from supervisor._types import ProcessState
from supervisor.domain import _criu
from supervisor.domain._checkpoint_store import (
    IMAGE_ANNOTATION,
    RUNTIME_ANNOTATION,
    SNAPSHOTTER_ANNOTATION,
    stores,
)
from supervisor.oci._digest import sha256_digest
from supervisor.oci._manifest import OCI_INDEX, Descriptor
from tests._containerd import PrivateContainerd, short_tmpdir
from tests.integration.helpers import Recorder, read_all

pytestmark = pytest.mark.asyncio

# A shell whose state lives in its memory (the counter) and in /tmp (a tmpfs
# of its own, which CRIU saves with it).
COUNTER = [
    "sh",
    "-c",
    "i=0; while :; do i=$((i+1)); echo $i; echo $i > /tmp/count; sleep 0.05; done",
]


def _criu_unusable() -> str | None:
    """Why CRIU cannot dump here (None where it can)."""
    criu = _criu.find_criu()
    if criu is None:
        return "CRIU is not installed here"
    if os.geteuid() != 0:
        return "CRIU needs root"
    done = subprocess.run([criu, "check"], capture_output=True, check=False, timeout=60)
    if done.returncode != 0:
        said = (done.stderr + done.stdout).decode(errors="replace").strip().splitlines()
        return f"`criu check` fails on this kernel: {'; '.join(said[-2:])}"
    return None


_UNUSABLE = _criu_unusable()
requires_criu = pytest.mark.skipif(
    _UNUSABLE is not None,
    reason=f"CRIU cannot run here ({_UNUSABLE}); make test-cgroup2 runs this",
)


async def _store_state(client: supervisor.Client) -> tuple[list[str], set[str], list[str]]:
    _, images = stores(client._session)
    names = [c.name for c in await client.checkpoints()]
    return names, set(await images.list_content()), sorted(await images.list_leases())


async def _counting(
    client: supervisor.Client, rootfs: str, cid: str, *, terminal: bool = False
) -> tuple[supervisor.Container, supervisor.Task]:
    spec = supervisor.default_spec(COUNTER, rootfs, terminal=terminal)
    container = await client.new_container(cid, spec)
    task = await container.new_task(terminal=terminal)
    await task.start()
    await _count_from(task, 0)
    return container, task


async def _count_from(task: supervisor.Task, after: int) -> int:
    """The first count the task prints past ``after``."""
    with anyio.fail_after(60):
        async for line in task.aiter_lines():
            text = line.strip()
            if text.isdigit() and int(text) > after:
                return int(text)
    raise AssertionError("the task stopped counting")


def _fake_criu(directory: Path, script: str) -> None:
    path = directory / "criu"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def criu_check_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A criu first on PATH whose check fails as Debian's 3.17 does on a
    kernel that maps the vDSO apart."""
    if shutil.which("sh") is None:
        pytest.skip("no sh")
    _fake_criu(
        tmp_path, 'echo "Error (criu/vdso.c:229): vdso: Unexpected rt vDSO area bounds" >&2; exit 1'
    )
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")


async def test_checkpoint_refused_when_criu_check_fails(
    client: supervisor.Client, rootfs: str, criu_check_fails: None
) -> None:
    container, task = await _counting(client, rootfs, "cp-check")
    spec_before = (await client._session.transport.get_container("cp-check")).spec
    before = await _store_state(client)
    if os.geteuid() != 0:
        pytest.skip("criu check is run as root only")
    with pytest.raises(errors.FailedPrecondition) as caught:
        await task.checkpoint("cp-check-1")
    message = str(caught.value)
    assert "CRIU" in message and "vDSO area bounds" in message
    assert caught.value.container_id == "cp-check"
    # Nothing changed: the task counts on, the spec, content and leases as they were.
    assert await task.status() is ProcessState.RUNNING
    await _count_from(task, 0)
    assert (await client._session.transport.get_container("cp-check")).spec == spec_before
    assert await _store_state(client) == before
    await task.delete(force=True)
    await container.delete()


async def test_checkpoint_refused_without_criu(
    client: supervisor.Client, rootfs: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    container, task = await _counting(client, rootfs, "cp-none")
    before = await _store_state(client)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(_criu, "_SBIN", (str(tmp_path / "sbin"),))
    with pytest.raises(errors.FailedPrecondition, match="need CRIU, which is not installed"):
        await task.checkpoint("cp-none-1")
    with pytest.raises(errors.NotFound):
        await client.restore_checkpoint("cp-none-1", "cp-none-2")
    assert await task.status() is ProcessState.RUNNING
    assert await _store_state(client) == before
    with pytest.raises(errors.NotFound):
        await client.load_container("cp-none-2")
    await task.delete(force=True)
    await container.delete()


@pytest.mark.skipif(_UNUSABLE is None, reason="CRIU works here: nothing to refuse")
async def test_checkpoint_refused_where_criu_cannot_run(
    client: supervisor.Client, rootfs: str
) -> None:
    # This machine's own CRIU (missing, or failing its check on this kernel).
    container, task = await _counting(client, rootfs, "cp-here")
    before = await _store_state(client)
    with pytest.raises(errors.FailedPrecondition, match="CRIU") as caught:
        await task.checkpoint("cp-here-1", exit=True)
    assert caught.value.container_id == "cp-here"
    assert await task.status() is ProcessState.RUNNING
    await _count_from(task, 0)
    assert await _store_state(client) == before
    await task.delete(force=True)
    await container.delete()


@pytest.mark.skipif(
    _criu.find_criu() is None or _UNUSABLE is None,
    reason="needs a CRIU that is installed and fails its check here",
)
async def test_a_dump_that_fails_leaves_the_task_and_the_store_as_they_were(
    client: supervisor.Client, rootfs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The check is taken as passed, so that the dump itself is tried, and
    # fails in runc's CRIU as it would on a kernel the check cannot judge.
    criu = _criu.find_criu()
    assert criu is not None
    monkeypatch.setattr(_criu, "_passed", {criu})
    container, task = await _counting(client, rootfs, "cp-fail")
    spec_before = (await client._session.transport.get_container("cp-fail")).spec
    before = await _store_state(client)
    for exit in (False, True):
        with pytest.raises(errors.FailedPrecondition) as caught:
            await task.checkpoint("cp-fail-1", exit=exit)
        # CRIU's own reason, from its log, not runc's "criu failed".
        assert str(caught.value).startswith("CRIU could not dump the task: ")
        assert "Error (criu/" in str(caught.value)
        assert caught.value.container_id == "cp-fail"
        assert await task.status() is ProcessState.RUNNING
        await _count_from(task, 0)
        assert (await client._session.transport.get_container("cp-fail")).spec == spec_before
        assert await _store_state(client) == before
    await task.delete(force=True)
    await container.delete()


async def test_checkpoint_of_a_terminal_task_is_refused(
    client: supervisor.Client, rootfs: str
) -> None:
    container, task = await _counting(client, rootfs, "cp-tty", terminal=True)
    before = await _store_state(client)
    with pytest.raises(errors.FailedPrecondition, match="terminal"):
        await task.checkpoint("cp-tty-1")
    assert await task.status() is ProcessState.RUNNING
    assert await _store_state(client) == before
    await task.delete(force=True)
    await container.delete()


async def test_bad_names_and_unknown_checkpoints(client: supervisor.Client, rootfs: str) -> None:
    container, task = await _counting(client, rootfs, "cp-names")
    for bad in ("", " x", "a b", "-x", "x" * 300, 7):
        with pytest.raises(errors.InvalidArgument):
            await task.checkpoint(bad)  # type: ignore[arg-type]
    with pytest.raises(errors.NotFound):
        await client.remove_checkpoint("no-such-checkpoint")
    with pytest.raises(errors.NotFound):
        await client.restore_checkpoint("no-such-checkpoint", "cp-names-2")
    assert await task.status() is ProcessState.RUNNING
    await task.delete(force=True)
    await container.delete()


# -- the dumps and restores themselves (the VM lane) ---------------------------


@pytest_asyncio.fixture
async def recorded(
    containerd_address: str, namespace: str, state_dir: Path
) -> AsyncIterator[tuple[supervisor.Client, Recorder]]:
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        yield client, rec


@pytest.mark.criu
@requires_criu
async def test_restored_task_goes_on_from_its_memory_and_tmp(
    recorded: tuple[supervisor.Client, Recorder], rootfs: str
) -> None:
    client, rec = recorded
    container, task = await _counting(client, rootfs, "cp-src")
    seen = await _count_from(task, 5)
    made = await task.checkpoint("cp-mem", exit=True)
    assert (made.name, made.container_id, made.exited) == ("cp-mem", "cp-src", True)
    await task.wait()
    await rec.wait_for(lambda: rec.exits()[("cp-src", "cp-src")] == 1)
    await task.delete()
    assert [c.name for c in await client.checkpoints()] == ["cp-mem"]

    new, restored = await client.restore_checkpoint("cp-mem", "cp-new")
    assert await restored.status() is ProcessState.RUNNING
    # It counts on from where the dump left it, not from 1: its memory came
    # back, and its output comes on the new task's stdout.
    assert await _count_from(restored, 0) > seen
    probe = await restored.exec(None, ["cat", "/tmp/count"])
    await probe.start()
    assert int((await read_all(probe.stdout)).strip()) > seen
    await probe.wait()
    await probe.delete()
    await restored.kill(signal.SIGKILL)
    assert (await restored.wait()).exit_code == 137
    await rec.wait_for(lambda: rec.exits()[("cp-new", "cp-new")] == 1)
    await restored.delete()
    await new.delete()
    await container.delete()
    assert rec.exits()[("cp-new", "cp-new")] == 1
    await client.remove_checkpoint("cp-mem")
    assert await client.checkpoints() == []


@pytest.mark.criu
@requires_criu
async def test_two_checkpoints_in_a_row_both_restore(
    client: supervisor.Client, rootfs: str
) -> None:
    # containerd issue #7980: the second dump of the same spec lost its CRIU image.
    container, task = await _counting(client, rootfs, "cp-two")
    spec_before = (await client._session.transport.get_container("cp-two")).spec
    first = await _count_from(task, 3)
    await task.checkpoint("cp-two-a")
    second = await _count_from(task, first + 3)
    await task.checkpoint("cp-two-b")
    assert await task.status() is ProcessState.RUNNING
    assert (await client._session.transport.get_container("cp-two")).spec == spec_before
    # Not into a new container while the task, whose cgroup it would share, runs.
    with pytest.raises(errors.FailedPrecondition, match="alive in the cgroup"):
        await client.restore_checkpoint("cp-two-b", "cp-two-new")
    with pytest.raises(errors.NotFound):
        await client.load_container("cp-two-new")
    await task.delete(force=True)

    # The first into the same container, whose task was deleted.
    same, again = await client.restore_checkpoint("cp-two-a", "cp-two")
    assert same.id == "cp-two"
    resumed = await _count_from(again, 0)
    assert first < resumed
    await again.delete(force=True)
    # The second into a new container.
    other, later = await client.restore_checkpoint("cp-two-b", "cp-two-new")
    assert await _count_from(later, 0) > second
    await later.delete(force=True)
    await other.delete()
    await container.delete()
    for name in ("cp-two-a", "cp-two-b"):
        await client.remove_checkpoint(name)


@pytest.mark.criu
@requires_criu
async def test_cancelled_checkpoint_leaves_the_task_running_and_nothing_made(
    client: supervisor.Client, rootfs: str
) -> None:
    container, task = await _counting(client, rootfs, "cp-cancel")
    before = await _store_state(client)
    # Whenever the cancellation lands (before the dump, during it, or after
    # the record was made), the outcome is the same.
    for delay in (0.0, 0.5, 2.0):
        with anyio.move_on_after(delay):
            await task.checkpoint("cp-cancel-1")
        assert await task.status() is ProcessState.RUNNING
        await _count_from(task, 0)
        names, content, leases = await _store_state(client)
        if names:
            # The call finished before its deadline: a checkpoint was made.
            assert names == ["cp-cancel-1"]
            await client.remove_checkpoint("cp-cancel-1")
            names, content, leases = await _store_state(client)
        assert (names, content, leases) == before
    await task.delete(force=True)
    await container.delete()


@pytest.fixture
def own_containerd() -> Iterator[PrivateContainerd]:
    """A containerd of this test's own: it gets killed."""
    directory = short_tmpdir("sv-cpkill-")
    ctrd = PrivateContainerd(directory)
    ctrd.start()
    try:
        yield ctrd
    finally:
        if ctrd.pid is None:
            ctrd.start()
        ctrd.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.criu
@pytest.mark.disruptive
@requires_criu
async def test_containerd_killed_during_a_checkpoint(
    own_containerd: PrivateContainerd, state_dir: Path, rootfs: str
) -> None:
    # runc's state is per namespace and machine-wide: a namespace of this run's own.
    ns = f"cpkill-{os.getpid()}-{int(time.time())}"
    timeouts = supervisor.Timeouts(cleanup=120.0)
    async with supervisor.connect(
        own_containerd.address, namespace=ns, state_dir=state_dir, timeouts=timeouts
    ) as client:
        container, task = await _counting(client, rootfs, "cp-kill")
        spec_before = (await client._session.transport.get_container("cp-kill")).spec
        before = await _store_state(client)
        outcome: list[BaseException | None] = []

        async def checkpoint() -> None:
            try:
                await task.checkpoint("cp-kill-1")
                outcome.append(None)
            except errors.SupervisorError as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(checkpoint)
            # Whenever the kill lands (before, during or after the dump), the
            # task runs on and nothing half made is left.
            await anyio.sleep(1.0)
            own_containerd.kill(signal.SIGKILL)
            own_containerd.start()
        assert await task.status() is ProcessState.RUNNING
        await _count_from(task, 0)
        assert (await client._session.transport.get_container("cp-kill")).spec == spec_before
        names, content, leases = await _store_state(client)
        if outcome == [None]:
            assert names == ["cp-kill-1"]
            await client.remove_checkpoint("cp-kill-1")
            names, content, leases = await _store_state(client)
        else:
            assert isinstance(outcome[0], errors.SupervisorError)
        assert (names, content, leases) == before
        await task.delete(force=True)
        await container.delete()


async def test_a_record_that_is_no_checkpoint_is_refused(client: supervisor.Client) -> None:
    # An index without CRIU's image (what containerd #7980 made), and a
    # checkpoint-labelled record of anything else: refused before anything
    # is made; an image without the label is no checkpoint at all.
    from contextlib import asynccontextmanager

    from supervisor.oci._digest import sha256_digest
    from supervisor.oci._manifest import OCI_INDEX, Descriptor

    _, images = stores(client._session)
    lease = await images.create_lease("cp-bad-lease", datetime.timedelta(minutes=5))
    data = json.dumps({"schemaVersion": 2, "manifests": [], "annotations": {}}).encode()
    desc = Descriptor(OCI_INDEX, sha256_digest(data), len(data))

    @asynccontextmanager
    async def source(offset: int) -> AsyncIterator[AsyncIterator[bytes]]:
        async def chunks() -> AsyncIterator[bytes]:
            yield data[offset:]

        yield chunks()

    await images.write_content("cp-bad", desc, source, lease=lease)
    await images.put_image("cp-bad", desc, {"containerd.io/checkpoint": "true"})
    await images.put_image("cp-plain", desc, {})
    await images.delete_lease(lease)
    with pytest.raises(errors.InvalidArgument, match="no CRIU image"):
        await client.restore_checkpoint("cp-bad", "cp-bad-new")
    with pytest.raises(errors.NotFound, match="not a checkpoint"):
        await client.restore_checkpoint("cp-plain", "cp-bad-new")
    with pytest.raises(errors.NotFound, match="not a checkpoint"):
        await client.remove_checkpoint("cp-plain")
    with pytest.raises(errors.NotFound):
        await client.load_container("cp-bad-new")
    assert [c.name for c in await client.checkpoints()] == ["cp-bad"]
    await client.remove_checkpoint("cp-bad")
    assert await client.checkpoints() == []
    await images.delete_image("cp-plain", sync=True)


# -- the read-write layer (rw=True) ---------------------------------------------

RW_REF = "example.com/checkpoint/rw:1"
# A file on the container's own snapshot (not /tmp, a tmpfs CRIU saves anyway)
# and a counter in memory.
RW_COUNTER = [
    "sh",
    "-c",
    "echo kept > /root/saved; i=0; while :; do i=$((i+1)); echo $i; echo $i > /root/count;"
    " sleep 0.05; done",
]


@pytest_asyncio.fixture
async def rw_image(client: supervisor.Client, tmp_path: Path) -> AsyncIterator[str]:
    from tests._image_layout import image_tar

    config = {"Cmd": ["sh"], "Env": ["PATH=/bin"]}
    await client.import_image(image_tar(tmp_path / "rw.tar", RW_REF, config), name=RW_REF)
    yield RW_REF
    with contextlib.suppress(errors.SupervisorError):
        await client.remove_image(RW_REF)


async def _image_counting(
    client: supervisor.Client, image: str, cid: str
) -> tuple[supervisor.Container, supervisor.Task]:
    container = await client.new_container(cid, image=image, args=RW_COUNTER)
    task = await container.new_task()
    await task.start()
    await _count_from(task, 0)  # /root/saved is written by now
    return container, task


async def _snapshots(client: supervisor.Client, snapshotter: str) -> set[str]:
    _, images = stores(client._session)
    return set(await images.list_snapshots(snapshotter))


async def _blob(images: Any, lease: str, media_type: str, data: bytes) -> Descriptor:
    desc = Descriptor(media_type, sha256_digest(data), len(data))

    @contextlib.asynccontextmanager
    async def source(offset: int) -> AsyncIterator[AsyncIterator[bytes]]:
        async def chunks() -> AsyncIterator[bytes]:
            yield data[offset:]

        yield chunks()

    await images.write_content(f"test-{desc.digest}", desc, source, lease=lease)
    return desc


async def _made_up_checkpoint(
    client: supervisor.Client,
    name: str,
    record: Any,
    layer: Descriptor | None,
    *,
    args: list[str] | None = None,
    snapshotter: str | None = None,
) -> None:
    """A checkpoint record of container ``record`` as Task.checkpoint(rw=True)
    stores it, with an empty CRIU image (CRIU cannot dump here)."""
    from supervisor._proto.google.protobuf import Any as PbAny
    from supervisor.backends.containerd import SPEC_TYPE_URL
    from supervisor.backends.containerd_checkpoint import CONFIG_MEDIA_TYPE, CRIU_MEDIA_TYPE

    _, images = stores(client._session)
    spec = json.loads(json.dumps(record.spec))
    if args is not None:
        spec["process"]["args"] = args
    lease = await images.create_lease(f"{name}-lease", datetime.timedelta(minutes=5))
    empty_tar = b"\0" * 1024
    criu = await _blob(images, lease, CRIU_MEDIA_TYPE, empty_tar)
    body = bytes(PbAny(type_url=SPEC_TYPE_URL, value=json.dumps(spec).encode()))
    config = await _blob(images, lease, CONFIG_MEDIA_TYPE, body)
    manifests = [criu, config] + ([layer] if layer is not None else [])
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [m.to_json() for m in manifests],
        "annotations": {
            RUNTIME_ANNOTATION: record.runtime,
            SNAPSHOTTER_ANNOTATION: snapshotter or record.snapshotter,
            IMAGE_ANNOTATION: record.image,
        },
    }
    target = await _blob(images, lease, OCI_INDEX, json.dumps(index).encode())
    refs = {f"containerd.io/gc.ref.content.{i}": m.digest for i, m in enumerate(manifests)}
    await images.set_content_labels(target.digest, refs)
    labels = {"containerd.io/checkpoint": "true", "io.supervisor.checkpoint.container": record.id}
    await images.put_image(name, target, labels)
    await images.delete_lease(lease)


async def test_rw_on_a_container_without_a_snapshot_is_refused(
    client: supervisor.Client, rootfs: str
) -> None:
    # A rootfs directory is used in place: there is no layer to save.
    container, task = await _counting(client, rootfs, "cp-rwdir")
    before = await _store_state(client)
    with pytest.raises(errors.InvalidArgument, match="rootfs directory") as caught:
        await task.checkpoint("cp-rwdir-1", rw=True)
    assert caught.value.container_id == "cp-rwdir"
    with pytest.raises(errors.InvalidArgument, match="rw must be"):
        await task.checkpoint("cp-rwdir-1", rw="yes")  # type: ignore[arg-type]
    assert await task.status() is ProcessState.RUNNING
    await _count_from(task, 0)
    assert await _store_state(client) == before
    await task.delete(force=True)
    await container.delete()


async def test_rw_layer_holds_the_snapshot_changes(
    client: supervisor.Client, rw_image: str
) -> None:
    # What the checkpoint stores as the rw layer (here without CRIU's dump):
    # the files the container wrote on its own snapshot, as ctr's --rw layer.
    import gzip
    import io
    import tarfile

    from supervisor.domain._checkpoint_rw import rw_layer

    container, task = await _image_counting(client, rw_image, "cp-rwdiff")
    record = await client._session.transport.get_container("cp-rwdiff")
    assert record.image == rw_image
    _, images = stores(client._session)
    views = await _snapshots(client, record.snapshotter)
    lease = await images.create_lease("cp-rwdiff-lease", datetime.timedelta(minutes=5))
    layer = await rw_layer(client._session, record, lease)
    assert layer.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert layer.platform is not None and layer.platform.os == "linux"
    data = await images.read_all(layer.digest, 1 << 20)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        saved = tar.extractfile("root/saved")
        assert saved is not None and saved.read() == b"kept\n"
        assert "bin/busybox" not in tar.getnames()  # the image's own files are not in it
    # The parent's view it was compared with is gone.
    assert await _snapshots(client, record.snapshotter) == views
    await images.delete_lease(lease, sync=True)
    assert await images.content_size(layer.digest) is None
    await task.delete(force=True)
    await container.delete()


@contextlib.asynccontextmanager
async def _with_rw_layer(
    client: supervisor.Client, rw_image: str, cid: str
) -> AsyncIterator[tuple[supervisor.Container, supervisor.Task, Any, Descriptor]]:
    """A counting container of the image, its record and its rw layer, held
    by a lease until the block ends (checkpoints made in it hold the layer)."""
    from supervisor.domain._checkpoint_rw import rw_layer

    container, task = await _image_counting(client, rw_image, cid)
    record = await client._session.transport.get_container(cid)
    _, images = stores(client._session)
    lease = await images.create_lease(f"{cid}-lease", datetime.timedelta(minutes=5))
    yield container, task, record, await rw_layer(client._session, record, lease)
    await images.delete_lease(lease)


async def test_restore_into_a_new_id_needs_the_rw_layer_and_the_image(
    client: supervisor.Client, rw_image: str
) -> None:
    # Each refusal comes before anything is made (and before CRIU is asked).
    async with _with_rw_layer(client, rw_image, "cp-rwref") as (container, task, record, layer):
        await _made_up_checkpoint(client, "cp-rwref-plain", record, None)
        await _made_up_checkpoint(client, "cp-rwref-rw", record, layer)
        await _made_up_checkpoint(client, "cp-rwref-native", record, layer, snapshotter="native")
    snaps = await _snapshots(client, record.snapshotter)
    before = await _store_state(client)

    with pytest.raises(errors.FailedPrecondition, match=r"rw=True") as caught:
        await client.restore_checkpoint("cp-rwref-plain", "cp-rwref-new")
    assert caught.value.container_id == "cp-rwref-new"
    with pytest.raises(errors.FailedPrecondition, match="not unpacked in snapshotter 'native'"):
        await client.restore_checkpoint("cp-rwref-native", "cp-rwref-new")
    assert await _snapshots(client, record.snapshotter) == snaps
    assert await _store_state(client) == before
    await client.remove_image(rw_image)
    before = await _store_state(client)
    with pytest.raises(errors.NotFound, match="pull or import it"):
        await client.restore_checkpoint("cp-rwref-rw", "cp-rwref-new")
    with pytest.raises(errors.NotFound):
        await client.load_container("cp-rwref-new")
    assert await _snapshots(client, record.snapshotter) == snaps
    assert await _store_state(client) == before
    await task.delete(force=True)
    await container.delete()
    for name in ("cp-rwref-plain", "cp-rwref-rw", "cp-rwref-native"):
        await client.remove_checkpoint(name)


async def test_rw_restore_puts_the_layer_on_a_new_snapshot(
    client: supervisor.Client, rw_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CRIU cannot restore everywhere: here the task is started afresh instead
    # of restored, with a process that shows the new container's files.
    from supervisor.client import _checkpoints

    async with _with_rw_layer(client, rw_image, "cp-rwnew") as (container, task, record, layer):
        args = ["cat", "/root/saved"]
        await _made_up_checkpoint(client, "cp-rwnew-1", record, layer, args=args)
    await task.delete(force=True)

    async def no_check(limit: float, *, container_id: str | None = None) -> None:
        return None

    async def started(container: supervisor.Container, criu: object, **kw: Any) -> Any:
        fresh = await container.new_task()
        await fresh.start()
        return fresh

    monkeypatch.setattr(_checkpoints, "criu_ready", no_check)
    monkeypatch.setattr(_checkpoints, "restore_task", started)
    new, restored = await client.restore_checkpoint("cp-rwnew-1", "cp-rwnew-2")
    assert await read_all(restored.stdout) == b"kept\n"
    assert (await restored.wait()).exit_code == 0
    loaded = await client._session.transport.get_container("cp-rwnew-2")
    assert (loaded.snapshotter, loaded.snapshot_key, loaded.image) == (
        record.snapshotter,
        "cp-rwnew-2",
        rw_image,
    )
    await restored.delete()
    await new.delete()
    assert "cp-rwnew-2" not in await _snapshots(client, record.snapshotter)
    await container.delete()
    await client.remove_checkpoint("cp-rwnew-1")


async def test_a_failed_or_cancelled_rw_restore_leaves_nothing(
    client: supervisor.Client, rw_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CRIU image is empty: the restore fails at the task, after the
    # snapshot, its layer and the container were made; or it is cancelled on
    # the way. Either way none of them is left, nor any content or lease.
    from supervisor.client import _checkpoints
    from supervisor.domain._checkpoint_rw import rw_layer

    container, task = await _image_counting(client, rw_image, "cp-rwfail")
    record = await client._session.transport.get_container("cp-rwfail")
    _, images = stores(client._session)
    lease = await images.create_lease("cp-rwfail-lease", datetime.timedelta(minutes=5))
    layer = await rw_layer(client._session, record, lease)
    await _made_up_checkpoint(client, "cp-rwfail-1", record, layer)
    await images.delete_lease(lease)
    await task.delete(force=True)

    async def no_check(limit: float, *, container_id: str | None = None) -> None:
        return None

    monkeypatch.setattr(_checkpoints, "criu_ready", no_check)
    snaps = await _snapshots(client, record.snapshotter)
    before = await _store_state(client)
    for delay in (None, 0.0, 0.02, 0.05, 0.1, 0.2, 0.5):
        with anyio.move_on_after(60 if delay is None else delay):
            with pytest.raises(errors.SupervisorError):
                await client.restore_checkpoint("cp-rwfail-1", "cp-rwfail-2")
        with pytest.raises(errors.NotFound):
            await client.load_container("cp-rwfail-2")
        assert await _snapshots(client, record.snapshotter) == snaps
        assert await _store_state(client) == before
    # A checkpoint whose layer is gone: refused before anything is made.
    await images.delete_content(layer.digest)
    with pytest.raises(errors.NotFound, match="rw layer"):
        await client.restore_checkpoint("cp-rwfail-1", "cp-rwfail-2")
    assert await _snapshots(client, record.snapshotter) == snaps
    await container.delete()
    await client.remove_checkpoint("cp-rwfail-1")


@pytest.mark.skipif(
    _criu.find_criu() is None or _UNUSABLE is None,
    reason="needs a CRIU that is installed and fails its check here",
)
async def test_an_rw_dump_that_fails_leaves_the_task_running_and_the_store_as_it_was(
    client: supervisor.Client, rw_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The task is paused for the diff and the dump; the dump fails (CRIU
    # cannot run here): the task is resumed, the layer and the parent's view
    # are gone.
    criu = _criu.find_criu()
    assert criu is not None
    monkeypatch.setattr(_criu, "_passed", {criu})
    container, task = await _image_counting(client, rw_image, "cp-rwdump")
    record = await client._session.transport.get_container("cp-rwdump")
    snaps = await _snapshots(client, record.snapshotter)
    before = await _store_state(client)
    for exit in (False, True):
        with pytest.raises(errors.FailedPrecondition, match="CRIU could not dump"):
            await task.checkpoint("cp-rwdump-1", exit=exit, rw=True)
        assert await task.status() is ProcessState.RUNNING
        await _count_from(task, 0)
        assert await _snapshots(client, record.snapshotter) == snaps
        assert await _store_state(client) == before
    await task.delete(force=True)
    await container.delete()


@pytest.mark.criu
@requires_criu
async def test_rw_checkpoint_restores_into_a_new_container(
    recorded: tuple[supervisor.Client, Recorder], rw_image: str, containerd_address: str
) -> None:
    from supervisor.domain._checkpoint_store import load_checkpoint

    client, rec = recorded
    container, task = await _image_counting(client, rw_image, "cp-rwsrc")
    # Leave-running: the task is paused for the diff and the dump, and goes on.
    first = await _count_from(task, 3)
    await task.checkpoint("cp-rw-a", rw=True)
    assert await task.status() is ProcessState.RUNNING
    seen = await _count_from(task, first)
    made = await task.checkpoint("cp-rw-b", exit=True, rw=True)
    assert (made.container_id, made.exited) == ("cp-rwsrc", True)
    await task.wait()
    await rec.wait_for(lambda: rec.exits()[("cp-rwsrc", "cp-rwsrc")] == 1)
    await task.delete()
    saved = await load_checkpoint(client._session, "cp-rw-b")
    assert saved.rw is not None and saved.image == rw_image

    new, restored = await client.restore_checkpoint("cp-rw-b", "cp-rwnew")
    assert await restored.status() is ProcessState.RUNNING
    # Its memory came back (the count goes on) and so did its files.
    assert await _count_from(restored, 0) > seen
    probe = await restored.exec(None, ["cat", "/root/saved"])
    await probe.start()
    assert await read_all(probe.stdout) == b"kept\n"
    await probe.wait()
    await probe.delete()
    record = await client._session.transport.get_container("cp-rwnew")
    assert (record.snapshot_key, record.image) == ("cp-rwnew", rw_image)
    await restored.kill(signal.SIGKILL)
    assert (await restored.wait()).exit_code == 137
    await rec.wait_for(lambda: rec.exits()[("cp-rwnew", "cp-rwnew")] == 1)
    await restored.delete()
    await new.delete()
    assert "cp-rwnew" not in await _snapshots(client, record.snapshotter)
    assert rec.exits()[("cp-rwnew", "cp-rwnew")] == 1
    assert rec.exits()[("cp-rwsrc", "cp-rwsrc")] == 1

    # The leave-running one, restored by ctr (`containers restore --rw --live`).
    await _ctr_restores(containerd_address, client._session.namespace, "cp-rw-a", "cp-rwctr", first)
    await container.delete()
    for name in ("cp-rw-a", "cp-rw-b"):
        await client.remove_checkpoint(name)


async def _ctr_restores(address: str, ns: str, name: str, cid: str, after: int) -> None:
    """ctr restores a library checkpoint with its rw layer: its files are
    there and it counts on from where it was."""
    if shutil.which("ctr") is None:
        pytest.skip("no ctr here")
    ctr = ["ctr", "-a", address, "-n", ns]

    async def run(*args: str, limit: float = 120) -> str:
        with anyio.fail_after(limit):
            done = await anyio.run_process(
                [*ctr, *args], check=False, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
            )
        assert done.returncode == 0, (args, done.stderr.decode())
        return done.stdout.decode()

    # ctr 1.6 returns once the restored task has started (its stdio is then
    # the shim's to keep open).
    await run("containers", "restore", "--rw", "--live", cid, name)
    assert cid in await run("task", "ls")
    count = await run("task", "exec", "--exec-id", "probe-1", cid, "cat", "/root/count", limit=60)
    assert int(count) > after
    saved = await run("task", "exec", "--exec-id", "probe-2", cid, "cat", "/root/saved", limit=60)
    assert saved == "kept\n"
    await run("task", "kill", "-s", "SIGKILL", cid)
    await run("task", "rm", "-f", cid)
    await run("containers", "rm", cid)
