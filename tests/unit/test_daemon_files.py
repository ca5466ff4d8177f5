"""The daemon's directories must be ours, and nothing in them is followed
through a symlink. Each Daemon here is refused (or fails to spawn) before
any containerd would run, so these need none."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor import Daemon, errors
from tests._logs import capture_logs

pytestmark = pytest.mark.asyncio

NOBODY = 65534
# Entry gets as far as spawning, then fails: everything before was done.
MISSING = "/nonexistent/containerd"


@pytest.fixture
def base(tmp_path: Path) -> Path:
    tmp_path.chmod(0o700)
    return tmp_path


@pytest.fixture
def no_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


async def enter(root: Path, state: Path) -> None:
    async with Daemon(root, state, binary=MISSING):
        raise AssertionError("entered")


@pytest.mark.parametrize("which", ["root", "state"])
@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("group-writable", "writable by other users (mode 775)"),
        ("world-writable", "writable by other users (mode 777)"),
        ("another owner", f"belongs to uid {NOBODY}"),
        ("a symlink", "is not a directory (or is a symlink)"),
        ("a file", "is not a directory"),
    ],
)
async def test_a_directory_not_ours_alone_is_refused(
    base: Path, which: str, problem: str, message: str
) -> None:
    dirs = {"root": base / "root", "state": base / "state"}
    bad = dirs[which]
    if problem == "a symlink":
        (base / "real").mkdir(mode=0o711)
        bad.symlink_to(base / "real")
    elif problem == "a file":
        bad.write_text("")
    else:
        bad.mkdir()
        if problem == "another owner":
            os.chown(bad, NOBODY, NOBODY)
            bad.chmod(0o755)
        else:
            bad.chmod(0o775 if problem == "group-writable" else 0o777)
    with pytest.raises(errors.FailedPrecondition) as info:
        await enter(dirs["root"], dirs["state"])
    assert str(bad) in str(info.value) and message in str(info.value)
    # refused before anything was written into the state directory
    state = dirs["state"]
    if state.is_dir() and not state.is_symlink():
        assert sorted(p.name for p in state.iterdir()) in ([], ["daemon"])


async def test_parents_we_make_are_ours_whatever_the_umask(base: Path, no_umask: None) -> None:
    # mkdir -p gives parents the umask's mode; with umask 0 that would be a
    # world-writable directory on the path to our pid file.
    root = base / "made" / "by" / "us" / "root"
    state = base / "made" / "too" / "state"
    with pytest.raises(errors.InvalidArgument, match="not found"):
        await enter(root, state)
    for directory in (
        base / "made",
        base / "made" / "by",
        base / "made" / "by" / "us",
        root,
        base / "made" / "too",
        state,
        state / "daemon",
        state / "runc",
    ):
        mode = stat.S_IMODE(directory.stat().st_mode)
        assert mode & 0o022 == 0, (directory, oct(mode))
        assert directory.stat().st_uid == os.geteuid()


async def test_the_lock_file_is_never_followed(base: Path) -> None:
    state = base / "state"
    state.mkdir(mode=0o711)
    victim = base / "victim"
    victim.write_text("precious\n")
    (state / "supervisor.lock").symlink_to(victim)
    with pytest.raises(errors.FailedPrecondition, match=r"supervisor\.lock is a symlink"):
        await enter(base / "root", state)
    assert victim.read_text() == "precious\n"


async def test_the_log_file_is_never_followed(base: Path) -> None:
    state = base / "state"
    state.mkdir(mode=0o711)
    victim = base / "victim"
    victim.write_text("precious\n")
    (state / "containerd.log").symlink_to(victim)
    # A real binary: without the check, its output would land in the victim.
    with pytest.raises(errors.FailedPrecondition, match=r"containerd\.log is a symlink"):
        async with Daemon(base / "root", state, binary="/bin/echo"):
            pass
    assert victim.read_text() == "precious\n"
    assert not (state / "containerd.pid").exists()


async def test_a_fifo_in_place_of_the_log_is_refused_not_waited_on(base: Path) -> None:
    state = base / "state"
    state.mkdir(mode=0o711)
    os.mkfifo(state / "containerd.log")
    with pytest.raises(errors.FailedPrecondition, match="not a regular file"):
        await enter(base / "root", state)


async def test_config_and_pid_file_symlinks_are_replaced_not_followed(base: Path) -> None:
    state = base / "state"
    state.mkdir(mode=0o711)
    victims = {name: base / f"victim-{name}" for name in ("containerd.toml", "containerd.pid")}
    for name, victim in victims.items():
        victim.write_text("1\n")  # a pid file naming init, were it read
        (state / name).symlink_to(victim)
    with capture_logs() as logs:
        with pytest.raises(errors.InvalidArgument, match="not found"):
            await enter(base / "root", state)
    for victim in victims.values():
        assert victim.read_text() == "1\n"
    config = state / "containerd.toml"
    assert not config.is_symlink() and "version = 2" in config.read_text()
    assert not os.path.lexists(state / "containerd.pid")
    (stale,) = [e for e in logs if e["event"] == "daemon.stale_pid_file"]
    assert "symlink" in stale["reason"]


async def test_new_files_are_made_exclusively_and_private(base: Path) -> None:
    state = base / "state"
    with pytest.raises(errors.InvalidArgument, match="not found"):
        await enter(base / "root", state)
    for name in ("containerd.toml", "containerd.log", "supervisor.lock"):
        st = (state / name).lstat()
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, name
    # no temporary files left beside them
    assert sorted(p.name for p in state.iterdir()) == [
        "containerd.log",
        "containerd.toml",
        "daemon",
        "runc",
        "supervisor.lock",
    ]


async def test_a_runc_root_not_ours_alone_is_refused(base: Path) -> None:
    # runc, run by our containerd, trusts what it finds there: another user's
    # directory in its place would hold our containers' state.
    state = base / "state"
    state.mkdir(mode=0o711)
    (state / "runc").mkdir()
    os.chown(state / "runc", NOBODY, NOBODY)
    with pytest.raises(errors.FailedPrecondition, match=f"belongs to uid {NOBODY}"):
        await enter(base / "root", state)
