"""Fixtures for tests against the real private containerd."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import pytest_asyncio

import supervisor
from supervisor import errors


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


async def purge_namespace(address: str, namespace: str) -> None:
    """Remove every task and container a test left in its namespace."""
    async with supervisor.connect(address, namespace=namespace, events=False) as client:
        for container in await client.containers():
            with contextlib.suppress(errors.NotFound):
                task = await container.task()
                await task.delete(force=True)
            with contextlib.suppress(errors.NotFound):
                await container.delete()


@pytest_asyncio.fixture
async def namespace(
    containerd_address: str, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """A containerd namespace of the test's own, derived from its name, and
    emptied afterwards even when the test failed halfway: a shim left running
    would outlive the run."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    ns = f"t-{name}-{os.getpid() % 10000}"
    yield ns
    with anyio.CancelScope(shield=True), anyio.move_on_after(60):
        await purge_namespace(containerd_address, ns)


@pytest_asyncio.fixture
async def client(
    containerd_address: str, namespace: str, state_dir: Path
) -> AsyncIterator[supervisor.Client]:
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as c:
        yield c
    await purge_namespace(containerd_address, namespace)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def fifo_files(state_dir: Path) -> list[Path]:
    if not state_dir.exists():
        return []
    return [p for p in state_dir.rglob("*") if p.is_fifo()]
