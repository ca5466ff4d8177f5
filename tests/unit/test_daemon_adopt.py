"""Adopting the containerd a pid file names: only one we would have started.

The impostors are real processes whose command line reads exactly like our
containerd's (``containerd --config <our config>``): a Python process that
rewrites its own argument area, as ``setproctitle`` does, optionally after
switching to another user. Their executable is Python's, so with
``binary=sys.executable`` everything but the owner matches, and with
``binary="containerd"`` everything but the executable does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor import errors
from supervisor.daemon._child import adopt, alive
from tests._logs import capture_logs

NOBODY = 65534

_MIMIC = textwrap.dedent(
    """
    import ctypes, os, sys, time
    argv, uid = sys.argv[1:-2], int(sys.argv[-2])
    # /proc/<pid>/cmdline is read from the memory between arg_start and
    # arg_end (fields 48 and 49 of /proc/self/stat): write our lie there.
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])
    blob = b"\\0".join(a.encode() for a in argv) + b"\\0"
    assert len(blob) <= end - start
    ctypes.memmove(start, blob + b"\\0" * (end - start - len(blob)), end - start)
    if uid:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    print("ready", flush=True)
    time.sleep(600)
    """
)


class Mimic:
    """A process whose command line is ``argv``, running as ``uid`` (in
    ``cwd``, if given)."""

    def __init__(self, argv: list[str], uid: int = 0, cwd: Path | None = None) -> None:
        padding = "x" * (sum(len(a) + 1 for a in argv) + 16)
        self.process = subprocess.Popen(
            [sys.executable, "-c", _MIMIC, *argv, str(uid), padding],
            stdout=subprocess.PIPE,
            cwd=cwd,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == b"ready\n"
        self.pid = self.process.pid

    def cmdline(self) -> list[str]:
        raw = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        return [a.decode() for a in raw.split(b"\0") if a]

    def status_uid(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
        raise AssertionError("no Uid line")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o711)
    return directory


@pytest.fixture
def mimics() -> Iterator[list[Mimic]]:
    started: list[Mimic] = []
    yield started
    for m in started:
        m.stop()


def _write_pid(state: Path, pid: int | str) -> Path:
    pid_file = state / "containerd.pid"
    pid_file.write_text(f"{pid}\n")
    return pid_file


def test_the_mimic_reads_like_our_containerd(state: Path, mimics: list[Mimic]) -> None:
    # The premise of the other tests: only the executable (or the owner) tells.
    config = state / "containerd.toml"
    m = Mimic(["containerd", "--config", str(config)], uid=NOBODY)
    mimics.append(m)
    assert m.cmdline() == ["containerd", "--config", str(config)]
    assert m.status_uid() == NOBODY


def test_same_user_same_executable_same_command_line_is_adopted(
    state: Path, mimics: list[Mimic]
) -> None:
    config = state / "containerd.toml"
    m = Mimic([sys.executable, "--config", str(config)])
    mimics.append(m)
    pid_file = _write_pid(state, m.pid)
    child = adopt(pid_file, sys.executable, config, poll=0.1)
    assert child is not None and child.pid == m.pid and child.adopted
    child.close()
    assert pid_file.exists()


def test_another_executable_with_our_command_line_is_not_adopted(
    state: Path, mimics: list[Mimic]
) -> None:
    config = state / "containerd.toml"
    m = Mimic(["containerd", "--config", str(config)])
    mimics.append(m)
    pid_file = _write_pid(state, m.pid)
    with capture_logs() as logs:
        assert adopt(pid_file, "containerd", config, poll=0.1) is None
    assert alive(m.pid)
    assert not pid_file.exists()  # stale: removed, the process untouched
    (stale,) = [e for e in logs if e["event"] == "daemon.stale_pid_file"]
    assert "executable" in stale["reason"] and stale["log_level"] == "info"


def test_another_users_process_is_not_adopted(state: Path, mimics: list[Mimic]) -> None:
    config = state / "containerd.toml"
    # Same executable and command line as the binary we are told to run:
    # only the owner differs.
    m = Mimic([sys.executable, "--config", str(config)], uid=NOBODY)
    mimics.append(m)
    pid_file = _write_pid(state, m.pid)
    with capture_logs() as logs:
        assert adopt(pid_file, sys.executable, config, poll=0.1) is None
    assert alive(m.pid)
    (stale,) = [e for e in logs if e["event"] == "daemon.stale_pid_file"]
    assert f"uid {NOBODY}" in stale["reason"]


def test_another_config_is_not_adopted(state: Path, mimics: list[Mimic]) -> None:
    config = state / "containerd.toml"
    m = Mimic([sys.executable, "--config", str(state / "other.toml")])
    mimics.append(m)
    pid_file = _write_pid(state, m.pid)
    with capture_logs() as logs:
        assert adopt(pid_file, sys.executable, config, poll=0.1) is None
    (stale,) = [e for e in logs if e["event"] == "daemon.stale_pid_file"]
    assert "command line" in stale["reason"]


def test_a_symlinked_pid_file_is_not_followed(
    state: Path, tmp_path: Path, mimics: list[Mimic]
) -> None:
    config = state / "containerd.toml"
    m = Mimic([sys.executable, "--config", str(config)])  # adoptable, were it read
    mimics.append(m)
    elsewhere = tmp_path / "elsewhere.pid"
    elsewhere.write_text(f"{m.pid}\n")
    pid_file = state / "containerd.pid"
    pid_file.symlink_to(elsewhere)
    with capture_logs() as logs:
        assert adopt(pid_file, sys.executable, config, poll=0.1) is None
    assert not os.path.lexists(pid_file) and elsewhere.read_text() == f"{m.pid}\n"
    (stale,) = [e for e in logs if e["event"] == "daemon.stale_pid_file"]
    assert "symlink" in stale["reason"]


@pytest.mark.parametrize("content", ["", "garbage", "0", "-5", "99999999999", "4194303"])
def test_a_pid_file_naming_no_live_process_is_removed(state: Path, content: str) -> None:
    pid_file = _write_pid(state, content)
    with capture_logs() as logs:
        assert adopt(pid_file, "containerd", state / "containerd.toml", poll=0.1) is None
    assert not pid_file.exists()
    (stale,) = [e for e in logs if e["event"] == "daemon.stale_pid_file"]
    assert stale["log_level"] == "debug"  # nothing anyone needs to act on


def test_a_directory_in_place_of_the_pid_file_is_refused(state: Path) -> None:
    (state / "containerd.pid").mkdir()
    with pytest.raises(errors.FailedPrecondition, match="containerd.pid"):
        adopt(state / "containerd.pid", "containerd", state / "containerd.toml", poll=0.1)


def test_no_pid_file_is_nothing_to_adopt(state: Path) -> None:
    assert (
        adopt(state / "containerd.pid", "containerd", state / "containerd.toml", poll=0.1) is None
    )
