"""The embedded containerd's routine lines (plugin loading on every start,
the shim clean-up at every task delete) reach ``supervisor.containerd`` at
DEBUG, and ``Daemon(log_level=)`` is the knob for the rest."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import supervisor
from supervisor import Daemon, DaemonTimeouts
from tests._containerd import short_tmpdir
from tests._logs import capture_logs

pytestmark = pytest.mark.asyncio

FAST = DaemonTimeouts(health_interval=0.2, health_timeout=0.5, health_failures=2, stop=5)
ROUTINE = (
    "loading plugin ",
    "skip loading plugin ",
    "starting signal loop",
    "shim disconnected",
    "cleaning up after shim disconnected",
    "cleaning up dead shim",
    "cleanup warnings ",
    "failed to load plugin io.containerd.snapshotter.v1.devmapper",
    "could not use snapshotter devmapper",
)


@pytest.fixture
def base() -> Iterator[Path]:
    directory = short_tmpdir("sv-chat-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _containerd(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["logger"] == "supervisor.containerd"]


async def _until(predicate: Any, what: str) -> None:
    with anyio.fail_after(20):
        while not predicate():
            await anyio.sleep(0.01)


async def _one_task(daemon: Daemon, rootfs: str, state: Path) -> None:
    ns = f"chat-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    async with supervisor.connect(daemon.address, namespace=ns, state_dir=state) as client:
        result = await client.run("once", supervisor.default_spec(["true"], rootfs))
        assert result.exit_code == 0


async def test_routine_lines_are_debug(base: Path, rootfs: str) -> None:
    with capture_logs() as logs:
        async with Daemon(base / "root", base / "state", timeouts=FAST) as daemon:
            await _one_task(daemon, rootfs, base / "sv")
            # The delete's clean-up lines are in the log once the shim is gone.
            await _until(
                lambda: any(
                    e.get("msg", "").startswith("cleaning up dead shim") for e in _containerd(logs)
                ),
                "the shim's clean-up lines",
            )
    lines = _containerd(logs)
    routine = [e for e in lines if e.get("msg", "").startswith(ROUTINE)]
    assert sum(e["msg"].startswith("loading plugin ") for e in routine) >= 20
    assert {e["log_level"] for e in routine} == {"debug"}
    loud = [e["msg"] for e in lines if e["log_level"] != "debug"]
    assert not [m for m in loud if m.startswith(ROUTINE)], loud
    # Not everything is silenced: the boot line stays for operators.
    assert any(m.startswith("containerd successfully booted") for m in loud), loud


async def test_log_level_warning_leaves_no_info(base: Path, rootfs: str) -> None:
    with capture_logs() as logs:
        async with Daemon(
            base / "root", base / "state", timeouts=FAST, log_level="warning"
        ) as daemon:
            await _one_task(daemon, rootfs, base / "sv")
    levels = {e["log_level"] for e in _containerd(logs)}
    assert "info" not in levels
    assert "containerd successfully booted" not in (base / "state" / "containerd.log").read_text()
