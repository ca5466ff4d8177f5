"""A program that embeds a Daemon and configures no logging writes nothing:
not on start, not on stop, not when containerd dies and is replaced; and a
stdout that is closed or full fails none of it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._containerd import REPO, short_tmpdir

_PROGRAM = textwrap.dedent(
    """
    import os, signal, sys, anyio
    from supervisor import Daemon, DaemonTimeouts

    async def main(base):
        timeouts = DaemonTimeouts(health_interval=0.2, health_timeout=0.5)
        async with Daemon(base + "/root", base + "/state", timeouts=timeouts) as daemon:
            first = daemon.pid
            os.kill(first, signal.SIGKILL)  # warnings and a restart, all logged
            with anyio.fail_after(30):
                while daemon.restarts == 0 or daemon.pid is None:
                    await anyio.sleep(0.02)
        # a second start on the same directories: a stale pid file, a
        # leftover socket and log
        async with Daemon(base + "/root", base + "/state", timeouts=timeouts):
            pass

    anyio.run(main, sys.argv[1])
    """
)


@pytest.fixture
def base() -> Iterator[Path]:
    directory = short_tmpdir("sv-dq-")
    try:
        yield directory
    finally:
        subprocess.run(["rm", "-rf", str(directory)], check=False)


@pytest.mark.parametrize("stdout", ["pipe", "closed", "full"])
def test_a_daemon_in_a_program_without_logging_writes_nothing(base: Path, stdout: str) -> None:
    # ResourceWarnings shown: a descriptor or socket left open would print.
    args = [sys.executable, "-W", "always::ResourceWarning", "-c", _PROGRAM, str(base)]
    if stdout == "pipe":
        result = subprocess.run(args, capture_output=True, timeout=120, cwd=REPO)
        assert result.returncode == 0, result.stderr.decode()
        assert (result.stdout, result.stderr) == (b"", b"")
    else:
        # fd 1 closed, or on a device where every write fails: nothing of
        # ours may write there (Python would report the failure at exit).
        target = "exec 1>&-" if stdout == "closed" else "exec 1>/dev/full"
        result = subprocess.run(
            ["sh", "-c", f'{target}; exec "$@"', "sh", *args],
            stderr=subprocess.PIPE,
            timeout=120,
            cwd=REPO,
        )
        assert result.returncode == 0, result.stderr.decode()
        assert result.stderr == b""
    # what containerd said went to its log file, not to our stdio
    assert b"containerd successfully booted" in (base / "state" / "containerd.log").read_bytes()
