"""A client of a containerd other than the machine's default keeps its
files in that containerd's own ``@<scope>`` directory of the default state
directory. A Daemon that stops removes its containerd's directory when
nothing is left in it, and never one that holds something, nor that of a
Daemon still running."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import supervisor
from supervisor import Daemon, DaemonTimeouts, _platform, errors
from tests._containerd import short_tmpdir

pytestmark = pytest.mark.asyncio

FAST = DaemonTimeouts(health_interval=0.2, health_timeout=0.5, health_failures=2, stop=5)


@pytest.fixture
def base() -> Iterator[Path]:
    directory = short_tmpdir("sv-scope-")
    scope_dir = _platform.default_state_dir(address=str(directory / "state" / "containerd.sock"))
    try:
        yield directory
    finally:
        # Only this test's own (the name is a hash of its socket's path).
        shutil.rmtree(scope_dir, ignore_errors=True)
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_stopped_daemon_leaves_no_empty_scope_directory(base: Path) -> None:
    async with Daemon(base / "root", base / "state", timeouts=FAST) as daemon:
        scope_dir = _platform.default_state_dir(address=daemon.address)
        assert scope_dir.name.startswith("@")
        async with supervisor.connect(daemon.address, namespace="x", events=False) as client:
            assert client.state_dir == scope_dir
            assert scope_dir.is_dir()
        # Still there while the Daemon runs: its next client uses it.
        assert scope_dir.is_dir()
    assert not scope_dir.exists()
    assert scope_dir.parent.is_dir()


async def test_a_scope_directory_with_something_in_it_stays(base: Path) -> None:
    async with Daemon(base / "root", base / "state", timeouts=FAST) as daemon:
        scope_dir = _platform.default_state_dir(address=daemon.address)
        async with supervisor.connect(daemon.address, namespace="x", events=False):
            (scope_dir / "kept").write_bytes(b"")
    assert (scope_dir / "kept").exists()


async def test_a_refused_daemon_leaves_the_running_ones_directory(base: Path) -> None:
    async with Daemon(base / "root", base / "state", timeouts=FAST) as first:
        scope_dir = _platform.default_state_dir(address=first.address)
        async with supervisor.connect(first.address, namespace="x", events=False):
            pass
        with pytest.raises(errors.FailedPrecondition, match="another supervisor"):
            async with Daemon(base / "root", base / "state", timeouts=FAST):
                pass
        assert scope_dir.is_dir()
    assert not scope_dir.exists()
