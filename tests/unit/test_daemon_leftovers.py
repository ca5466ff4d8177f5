"""Which task directories the Daemon removes before it starts containerd
(``supervisor.daemon._leftovers``), on planted directories: only one of the
expected shape that ``runc create`` never reached and that no live shim
holds, never through a symlink, and nothing while containerd runs.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.daemon._leftovers import METADATA_DB, TASK_PLUGIN, TaskDirs, remove_leftover_tasks
from tests.unit.test_daemon_adopt import Mimic

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc")

ADDRESS = "/run/nowhere/containerd.sock"


@pytest.fixture
def dirs(tmp_path: Path) -> TaskDirs:
    db = tmp_path / "root" / METADATA_DB
    db.parent.mkdir(parents=True)
    db.touch()
    return TaskDirs(tmp_path / "root", tmp_path / "state", ADDRESS)


def _plant(dirs: TaskDirs, ns: str, cid: str, *files: str) -> Path:
    bundle = dirs.state / TASK_PLUGIN / ns / cid
    bundle.mkdir(parents=True)
    work = dirs.root / TASK_PLUGIN / ns / cid
    work.mkdir(parents=True)
    (bundle / "work").symlink_to(work)
    (bundle / "config.json").write_text("{}")
    (bundle / "rootfs").mkdir()
    for name in files:
        (bundle / name).write_text("x")
    return bundle


@pytest.fixture
def sleeper() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        p.kill()
        p.wait()


def test_only_a_half_made_task_without_a_shim_is_removed(
    dirs: TaskDirs, tmp_path: Path, sleeper: list[subprocess.Popen[bytes]]
) -> None:
    gone = _plant(dirs, "ns", "gone")
    made = _plant(dirs, "ns", "made", "runtime")
    ran = _plant(dirs, "ns", "ran", "init.pid")
    held = _plant(dirs, "ns", "held")
    sleeper.append(subprocess.Popen(["sleep", "600"], cwd=held))
    hidden = _plant(dirs, "ns", ".hidden")
    # Links are never followed: neither a namespace nor a task that is one.
    outside = tmp_path / "outside"
    (outside / "victim").mkdir(parents=True)
    (dirs.state / TASK_PLUGIN / "linked").symlink_to(outside)
    (dirs.state / TASK_PLUGIN / "ns" / "link").symlink_to(outside / "victim")

    assert remove_leftover_tasks(dirs) == ["ns/gone"]
    assert not gone.exists()
    assert not (dirs.root / TASK_PLUGIN / "ns" / "gone").exists()
    for kept in (made, ran, held, hidden, outside / "victim"):
        assert kept.is_dir()
    assert (dirs.root / TASK_PLUGIN / "ns" / "made").is_dir()


def _shim_argv(cid: str, address: str = ADDRESS) -> list[str]:
    return ["/usr/bin/containerd-shim-runc-v2", "-namespace", "ns", "-id", cid, "-address", address]


def test_a_shim_command_or_an_answering_socket_keeps_it(dirs: TaskDirs, tmp_path: Path) -> None:
    starting = _plant(dirs, "ns", "starting")
    command = Mimic([*_shim_argv("starting"), "start"])
    answering = _plant(dirs, "ns", "answering")
    path = tmp_path / "shim.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()
        (answering / "address").write_text(f"unix://{path}")
        dead = _plant(dirs, "ns", "dead")
        (dead / "address").write_text(f"unix://{tmp_path / 'gone.sock'}")
        try:
            assert remove_leftover_tasks(dirs) == ["ns/dead"]
            assert command.process.poll() is None
        finally:
            command.stop()
    assert starting.is_dir() and answering.is_dir()


def test_our_shim_of_a_create_that_never_ran_is_killed_and_its_directory_removed(
    dirs: TaskDirs,
) -> None:
    ours = _plant(dirs, "ns", "ours")
    shim = Mimic(_shim_argv("ours"), cwd=ours)
    theirs = _plant(dirs, "ns", "theirs")
    other = Mimic(_shim_argv("theirs", "/run/other/containerd.sock"), cwd=theirs)
    try:
        assert remove_leftover_tasks(dirs) == ["ns/ours"]
        assert shim.process.wait(timeout=10) == -signal.SIGKILL
        assert other.process.poll() is None
    finally:
        shim.stop()
        other.stop()
    assert not ours.exists() and theirs.is_dir()


def test_nothing_is_removed_while_containerd_holds_its_database(dirs: TaskDirs) -> None:
    bundle = _plant(dirs, "ns", "gone")
    fd = os.open(dirs.root / METADATA_DB, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as bbolt does while containerd runs
        assert remove_leftover_tasks(dirs) == []
        assert bundle.is_dir()
    finally:
        os.close(fd)
    assert remove_leftover_tasks(dirs) == ["ns/gone"]


def test_nothing_is_looked_at_where_no_containerd_ever_ran(tmp_path: Path) -> None:
    dirs = TaskDirs(tmp_path / "root", tmp_path / "state", ADDRESS)
    bundle = _plant(dirs, "ns", "gone")
    assert remove_leftover_tasks(dirs) == []
    assert bundle.is_dir()


def test_a_directory_with_something_mounted_in_it_is_kept(dirs: TaskDirs, tmp_path: Path) -> None:
    # A bind mount of the same file system: only the mount table tells.
    bundle = _plant(dirs, "ns", "mounted")
    source = tmp_path / "precious"
    source.mkdir()
    (source / "data").write_text("keep")
    if subprocess.run(["mount", "--bind", str(source), str(bundle / "rootfs")]).returncode:
        pytest.skip("cannot mount here")
    try:
        assert remove_leftover_tasks(dirs) == []
    finally:
        subprocess.run(["umount", str(bundle / "rootfs")], check=True)
    assert (source / "data").read_text() == "keep"
    assert bundle.is_dir()
