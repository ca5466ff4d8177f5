"""Task.summary()'s per-process details on Linux: /proc read for each pid."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from supervisor import _platform
from supervisor.stats._summary import ProcessSummary, read_proc, with_host_details

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGESIZE")


def _fake_proc(
    root: Path, pid: int, comm: str, cmdline: bytes, *, btime: int = 1_700_000_000
) -> None:
    (root / str(pid)).mkdir(parents=True)
    # pid (comm) state ppid ... utime(14) stime(15) ... starttime(22) vsize(23) rss(24)
    fields = ["S", "1"] + ["0"] * 9 + [str(3 * TICKS), str(2 * TICKS)] + ["0"] * 6
    fields += [str(10 * TICKS), "123456", "25"] + ["0"] * 20
    (root / str(pid) / "stat").write_text(f"{pid} ({comm}) " + " ".join(fields) + "\n")
    (root / str(pid) / "cmdline").write_bytes(cmdline)
    (root / "stat").write_text(f"cpu  1 2 3 4\nbtime {btime}\nprocesses 9\n")


def test_stat_and_cmdline_are_read(tmp_path: Path) -> None:
    # A name with spaces and parentheses: the fields start after the last ')'.
    _fake_proc(tmp_path, 42, "we (ird) name", b"/bin/sh\0-c\0sleep 1\0")
    s = read_proc(ProcessSummary(pid=42), proc=tmp_path)
    assert s.command == "/bin/sh -c sleep 1"
    assert s.state == "S"
    assert s.user_ns == 3_000_000_000 and s.kernel_ns == 2_000_000_000
    assert s.rss_bytes == 25 * PAGE
    assert s.created_at == datetime.fromtimestamp(1_700_000_010, UTC)


def test_a_process_without_a_command_line_shows_its_name(tmp_path: Path) -> None:
    _fake_proc(tmp_path, 7, "kworker/0:1", b"")
    assert read_proc(ProcessSummary(pid=7), proc=tmp_path).command == "kworker/0:1"


def test_what_containerd_said_is_kept(tmp_path: Path) -> None:
    _fake_proc(tmp_path, 8, "sh", b"sh\0")
    given = ProcessSummary(pid=8, exec_id="e1", command="given")
    s = read_proc(given, proc=tmp_path)
    assert (s.exec_id, s.command, s.state) == ("e1", "given", "S")


def test_a_gone_or_unreadable_process_keeps_only_what_containerd_said(tmp_path: Path) -> None:
    given = ProcessSummary(pid=9, exec_id="e1")
    assert read_proc(given, proc=tmp_path) is given
    (tmp_path / "10").mkdir()
    (tmp_path / "10" / "stat").write_text("10 (truncated")
    assert read_proc(ProcessSummary(pid=10), proc=tmp_path) == ProcessSummary(pid=10)
    (tmp_path / "11").mkdir()
    (tmp_path / "11" / "stat").write_text("11 (short) R 1 2")
    assert read_proc(ProcessSummary(pid=11), proc=tmp_path) == ProcessSummary(pid=11)


def test_a_real_process_through_the_real_proc() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        # Popen returns once the child's exec has closed its close-on-exec
        # fds, which the kernel does before it sets up the new command line:
        # wait (bounded) until /proc shows one.
        cmdline = Path(f"/proc/{child.pid}/cmdline")
        for _ in range(500):
            if cmdline.read_bytes():
                break
            time.sleep(0.01)
        (s,) = with_host_details([ProcessSummary(pid=child.pid)])
        (me,) = with_host_details([ProcessSummary(pid=os.getpid())])
    finally:
        child.kill()
        child.wait()
    assert s.command == f"{sys.executable} -c import time; time.sleep(30)", s
    assert s.state in {"R", "S", "D"}, s
    # A process that has just exec'd may not have its resident pages counted
    # yet; this one has run long enough.
    assert me.rss_bytes > 0 and "pytest" in me.command, me
    # Started after this test's own process, by the kernel's clock.
    assert s.created_at is not None and me.created_at is not None
    assert me.created_at <= s.created_at, (me, s)


def test_windows_keeps_what_runhcs_said_and_reads_no_proc(tmp_path: Path) -> None:
    given = [ProcessSummary(pid=42, command="cmd.exe")]
    _fake_proc(tmp_path, 42, "sh", b"sh\0")
    windows = _platform.detect("win32")
    assert with_host_details(given, platform=windows, proc=tmp_path) is given
    assert with_host_details(given, platform=_platform.detect("linux"), proc=tmp_path)[0].state


def test_no_pids_reads_nothing() -> None:
    assert with_host_details([], proc=Path("/nonexistent")) == []


@pytest.mark.parametrize("pid", [0, -1])
def test_a_pid_of_nothing_is_left_alone(pid: int) -> None:
    assert read_proc(ProcessSummary(pid=pid)) == ProcessSummary(pid=pid)
