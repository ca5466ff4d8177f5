"""Checkpoint and restore with CRIU (issue 26) against the real containerd.

The refusals run everywhere: a CRIU that is missing or whose ``criu check``
fails, a terminal, a name taken; each leaves the task running, the
container's spec, the content store and the leases as they were. The dumps
and restores themselves need a kernel CRIU can work on: they carry the
``criu`` marker, run in the cgroup v2 VM lane (``make test-cgroup2``), and
are skipped elsewhere with the reason ``criu check`` gives.
"""

from __future__ import annotations

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

import anyio
import pytest
import pytest_asyncio

import supervisor
from supervisor import errors
from supervisor._types import ProcessState
from supervisor.domain import _criu
from supervisor.domain._checkpoint_store import stores
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
