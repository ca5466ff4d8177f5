"""Every error class, bad input rejected before anything is made, nothing leaked."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import errors
from tests.integration.conftest import fifo_files, open_fds

pytestmark = pytest.mark.asyncio

BAD_IDS = ["", "../x", "a/b", "x" * 77, "a\0b", "café", ".hidden", "a..b", "trailing-", " a"]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
async def test_bad_container_ids_create_nothing(
    client: supervisor.Client, rootfs: str, state_dir: Path, bad: str
) -> None:
    spec = supervisor.default_spec(["true"], rootfs)
    with pytest.raises(errors.InvalidArgument):
        await client.new_container(bad, spec)
    assert await client.containers() == []
    assert not state_dir.exists() or list(state_dir.rglob("*")) == []


async def test_longest_valid_id_works(client: supervisor.Client, rootfs: str) -> None:
    cid = "a" * 76
    container = await client.new_container(cid, supervisor.default_spec(["true"], rootfs))
    await container.delete()


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
async def test_bad_exec_ids_create_nothing(
    client: supervisor.Client, rootfs: str, state_dir: Path, bad: str
) -> None:
    container = await client.new_container(
        "exec-ids", supervisor.default_spec(["sleep", "60"], rootfs)
    )
    task = await container.new_task()
    await task.start()
    before = sorted(state_dir.rglob("*"))
    with pytest.raises(errors.InvalidArgument):
        await task.exec(bad, supervisor.process_spec(["true"]))
    assert sorted(state_dir.rglob("*")) == before
    await task.delete(force=True)
    await container.delete()


@pytest.mark.parametrize("spec", [None, "spec", ["process"], {}, {"process": "x"}], ids=repr)
async def test_bad_specs(client: supervisor.Client, spec: object) -> None:
    with pytest.raises(errors.InvalidArgument):
        await client.new_container("bad-spec", spec)  # type: ignore[arg-type]
    assert await client.containers() == []


@pytest.mark.parametrize(
    "poison", [{1, 2}, object(), float("nan"), b"bytes"], ids=["set", "object", "nan", "bytes"]
)
async def test_spec_values_json_cannot_carry_are_refused_before_anything_is_made(
    client: supervisor.Client, rootfs: str, state_dir: Path, poison: object
) -> None:
    spec = supervisor.default_spec(["true"], rootfs)
    spec["annotations"] = {"x": poison}
    with pytest.raises(errors.InvalidArgument, match="spec is not JSON"):
        await client.new_container("poisoned", spec)
    assert await client.containers() == []
    assert not (state_dir / client.namespace / "poisoned").exists()
    container = await client.new_container(
        "exec-poison", supervisor.default_spec(["sleep", "60"], rootfs)
    )
    task = await container.new_task()
    await task.start()
    with pytest.raises(errors.InvalidArgument, match="process spec is not JSON"):
        await task.exec("e", {"args": ["true"], "env": [poison]})
    assert [p.pid for p in await task.pids()] == [task.pid]
    await task.delete(force=True)
    await container.delete()


async def test_bad_exec_spec(client: supervisor.Client, rootfs: str) -> None:
    container = await client.new_container(
        "bad-exec", supervisor.default_spec(["sleep", "60"], rootfs)
    )
    task = await container.new_task()
    await task.start()
    for spec in ({}, {"args": []}, {"args": "true"}, "args"):
        with pytest.raises(errors.InvalidArgument):
            await task.exec("e", spec)  # type: ignore[arg-type]
    await task.delete(force=True)
    await container.delete()


async def test_not_found_already_exists_failed_precondition(
    client: supervisor.Client, rootfs: str
) -> None:
    with pytest.raises(errors.NotFound) as caught:
        await client.load_container("nope")
    assert caught.value.container_id == "nope"
    assert "not found" in caught.value.message
    spec = supervisor.default_spec(["sleep", "60"], rootfs)
    container = await client.new_container("twice", spec)
    with pytest.raises(errors.AlreadyExists):
        await client.new_container("twice", spec)
    task = await container.new_task()
    with pytest.raises(errors.AlreadyExists):
        await container.new_task()
    await task.start()
    with pytest.raises(errors.FailedPrecondition):
        await container.delete()
    with pytest.raises(errors.FailedPrecondition):
        await task.delete()  # still running
    await task.delete(force=True)
    with pytest.raises(errors.NotFound):
        await task.delete()
    await container.delete()
    with pytest.raises(errors.NotFound):
        await container.delete()


async def test_unavailable_when_nothing_listens(tmp_path: Path) -> None:
    with pytest.raises(errors.Unavailable):
        async with supervisor.connect(str(tmp_path / "nothing.sock"), namespace="x"):
            pass
    with pytest.raises(errors.Unavailable):
        async with supervisor.connect(str(tmp_path / "nothing.sock"), namespace="x", events=False):
            pass


async def test_bad_namespace_is_invalid(containerd_address: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        async with supervisor.connect(containerd_address, namespace="a/b"):
            pass


async def test_missing_binary_fails_cleanly(
    client: supervisor.Client, rootfs: str, state_dir: Path
) -> None:
    spec = supervisor.default_spec(["/no/such/binary"], rootfs)
    container = await client.new_container("missing-bin", spec)
    with pytest.raises(errors.SupervisorError) as caught:
        task = await container.new_task()
        await task.start()
    assert "no such file" in str(caught.value).lower()
    assert fifo_files(state_dir) == []
    await container.delete()


async def test_twenty_failed_task_creations_leak_nothing(
    client: supervisor.Client, rootfs: str, state_dir: Path
) -> None:
    spec = supervisor.default_spec(["/no/such/binary"], rootfs)
    container = await client.new_container("leaky", spec)
    # one round first, so lazily created loop/channel resources are not counted
    with pytest.raises(errors.SupervisorError):
        await container.new_task()
    fds = open_fds()
    for _ in range(20):
        with pytest.raises(errors.SupervisorError):
            await container.new_task()
    assert fifo_files(state_dir) == []
    assert open_fds() == fds
    await container.delete()
    assert not (state_dir / client.namespace / "leaky").exists()


async def test_cancelled_create_leaves_nothing(
    client: supervisor.Client, rootfs: str, state_dir: Path
) -> None:
    spec = supervisor.default_spec(["sleep", "60"], rootfs)
    for i in range(5):
        with anyio.CancelScope() as scope:
            scope.cancel()  # cancelled before the first await: the shield still gets an answer
            await client.new_container(f"cancelled-{i}", spec)
        assert await client.containers() == []
    container = await client.new_container("task-cancel", spec)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await container.new_task()
    assert fifo_files(state_dir) == []
    await container.delete()  # no task left behind, or this would refuse


async def test_bundle_owned_by_remapped_root(
    client: supervisor.Client, rootfs: str, state_dir: Path
) -> None:
    spec = supervisor.default_spec(["true"], rootfs)
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    container = await client.new_container("userns", spec)
    st = os.stat(container.bundle_dir)
    assert (st.st_uid, st.st_gid) == (100000, 200000)
    assert st.st_mode & 0o777 == 0o700
    assert container.bundle_dir.parent.name == f"{client.namespace}@100000.200000"
    plain = await client.new_container("plain", supervisor.default_spec(["true"], rootfs))
    st = os.stat(plain.bundle_dir)
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o700)
    await container.delete()
    await plain.delete()
    assert not container.bundle_dir.exists()


async def test_already_exists_leaves_the_live_container_untouched(
    client: supervisor.Client, rootfs: str, state_dir: Path
) -> None:
    spec = supervisor.default_spec(["sh", "-c", "read x; echo got $x"], rootfs)
    container = await client.new_container("dup", spec)
    task = await container.new_task(stdin=True)
    await task.start()
    bundle = container.bundle_dir
    fifos = sorted(fifo_files(state_dir))
    assert fifos and all(p.parent == bundle for p in fifos)
    with pytest.raises(errors.AlreadyExists):
        await client.new_container("dup", supervisor.default_spec(["true"], rootfs))
    # its bundle and FIFOs are still there, and it still talks through them
    assert sorted(fifo_files(state_dir)) == fifos
    assert task.stdin is not None
    await task.stdin.send(b"hi\n")
    with anyio.fail_after(10):
        assert await task.stdout.receive() == b"got hi\n"
        assert (await task.wait()).exit_code == 0
    await task.delete()
    await container.delete()


async def test_replace_force_deletes_what_has_the_id_and_creates_anew(
    client: supervisor.Client, rootfs: str, state_dir: Path
) -> None:
    old = await client.new_container("again", supervisor.default_spec(["sleep", "300"], rootfs))
    old_task = await old.new_task()
    await old_task.start()
    new = await client.new_container(
        "again", supervisor.default_spec(["sh", "-c", "echo fresh"], rootfs), replace=True
    )
    assert new.spec["process"]["args"] == ["sh", "-c", "echo fresh"]
    with anyio.fail_after(10):
        assert (await old_task.wait()).exit_code == 137  # the old one was killed
    task = await new.new_task()
    await task.start()
    with anyio.fail_after(10):
        assert await task.stdout.receive() == b"fresh\n"
        assert (await task.wait()).exit_code == 0
    await task.delete()
    await new.delete()
    assert await client.containers() == []
    assert fifo_files(state_dir) == []


async def test_state_conflicts_are_failed_precondition(
    client: supervisor.Client, rootfs: str
) -> None:
    # containerd 1.6 reports these as UNKNOWN; only its words tell them apart.
    container = await client.new_container("states", supervisor.default_spec(["true"], rootfs))
    task = await container.new_task()
    for op in (task.pause, task.resume):
        with pytest.raises(errors.FailedPrecondition, match="created state"):
            await op()
    await task.start()
    assert (await task.wait()).exit_code == 0
    stopped_ops = (
        task.pause,
        task.resume,
        task.start,
        lambda: task.exec("late", supervisor.process_spec(["true"])),
        lambda: task.update_resources({"memory": {"limit": 64 << 20}}),
    )
    for op in stopped_ops:
        with pytest.raises(errors.FailedPrecondition, match="stopped"):
            await op()
    await task.delete()
    await container.delete()
