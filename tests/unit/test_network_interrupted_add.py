"""An ADD interrupted between plugins (cancelled, or the application killed)
is DELeted with the result of the last plugin that finished as
``prevResult``: plugins such as ``firewall`` find their rules by the
addresses in it, so a DEL without it left their rules behind (the network
soak found two in CNI-FORWARD)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor.network import CNI
from tests.unit.test_network_cni import GUARD, conflist, rt, wait_until, write_plugin

pytestmark = pytest.mark.asyncio


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    for name in ("fake-a", "fake-b"):
        write_plugin(directory, name)
    return directory


@pytest.fixture
def calls(tmp_path: Path) -> Callable[[], list[dict[str, Any]]]:
    log = tmp_path / "calls.jsonl"
    return lambda: [json.loads(line) for line in log.read_text().splitlines()]


async def _hung_add(tmp_path: Path, plugins: Path, snapshot: Path | None = None) -> None:
    """ADD through fake-a (gives an address) and fake-b (hangs), cancelled
    while fake-b hangs; ``snapshot`` gets a copy of the cache as it was then
    (what a killed application leaves)."""
    cni = CNI([plugins], tmp_path / "cache")
    pids = tmp_path / "pids"
    net = conflist(
        tmp_path, {"type": "fake-a"}, {"type": "fake-b", "mode": "hang", "pids": str(pids)}
    )
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(cni.add, net, rt())
            await wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 2)
            if snapshot is not None:
                shutil.copytree(tmp_path / "cache", snapshot)
            tg.cancel_scope.cancel()


async def test_cancelled_add_is_undone_with_the_last_result(
    tmp_path: Path, plugins: Path, calls: Callable[[], list[dict[str, Any]]]
) -> None:
    await _hung_add(tmp_path, plugins)
    added = next(c for c in calls() if c["command"] == "ADD" and c["plugin"] == "fake-a")
    dels = [c for c in calls() if c["command"] == "DEL"]
    assert [c["plugin"] for c in dels] == ["fake-b", "fake-a"]
    for c in dels:
        assert c["conf"]["prevResult"]["ips"][0]["address"] == "10.99.0.5/24", c
    assert added["conf"].get("prevResult") is None


async def test_an_add_a_crash_interrupted_is_deleted_with_the_last_result(
    tmp_path: Path, plugins: Path, calls: Callable[[], list[dict[str, Any]]]
) -> None:
    left = tmp_path / "left-by-the-crash"
    await _hung_add(tmp_path, plugins, snapshot=left)
    # The next run finds the entry the crash left and DELs with it.
    cni = CNI([plugins], left)
    [cached] = cni.cache.all()
    assert cached.result is not None and cached.result["ips"][0]["address"] == "10.99.0.5/24"
    before = len(calls())
    await cni.delete(cached.network, cached.runtime)
    dels = calls()[before:]
    assert [c["plugin"] for c in dels] == ["fake-b", "fake-a"]
    assert all(c["conf"]["prevResult"] == cached.result for c in dels)
    assert cni.cache.all() == []
