"""Fixtures for tests against the real containerd: the plugin's, under the
names these tests use (``namespace``, ``client``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

import supervisor
from supervisor.testing._namespaces import purge
from tests.integration.cli_runner import Cli


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


async def purge_namespace(address: str, namespace: str) -> None:
    """Remove every task and container a test left in a namespace of its own
    making (the plugin empties the test's ``namespace`` by itself)."""
    await purge(address, namespace)


@pytest.fixture
def namespace(supervisor_namespace: str) -> str:
    """A containerd namespace of the test's own, emptied and removed afterwards."""
    return supervisor_namespace


@pytest.fixture
def client(supervisor_client: supervisor.Client) -> supervisor.Client:
    return supervisor_client


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def fifo_files(state_dir: Path) -> list[Path]:
    if not state_dir.exists():
        return []
    return [p for p in state_dir.rglob("*") if p.is_fifo()]


@pytest_asyncio.fixture
async def cli(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> AsyncIterator[Cli]:
    """The command against the suite's containerd, on the test's namespace
    (purged afterwards)."""
    yield Cli(containerd_address, namespace, state_dir, rootfs)
    await purge_namespace(containerd_address, namespace)
