"""The plugin's async fixtures, registered when pytest-asyncio is installed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from ._record import RECORD

if TYPE_CHECKING:
    import supervisor

    from ._containerd import Containerd
    from ._factory import Containers


@pytest_asyncio.fixture
async def supervisor_client(
    containerd_daemon: Containerd,
    supervisor_namespace: str,
    supervisor_state_dir: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[supervisor.Client]:
    """A :class:`supervisor.Client` connected to the session's containerd in
    the test's own namespace. Afterwards an asyncio task the test started and
    left pending, or a FIFO left open, fails the test at teardown."""
    import supervisor

    record = request.node.stash[RECORD]
    record.watch_tasks(asyncio.get_running_loop())
    try:
        async with supervisor.connect(
            containerd_daemon.address,
            namespace=supervisor_namespace,
            state_dir=supervisor_state_dir,
        ) as client:
            yield client
    finally:
        record.leaks += await record.pending_tasks()
        record.leaks += record.open_fifos()


@pytest_asyncio.fixture
async def containers(
    supervisor_client: supervisor.Client,
    busybox_rootfs: Path,
    containerd_daemon: Containerd,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Containers]:
    """A factory of started containers (see :class:`supervisor.testing.Containers`)."""
    from ._factory import Containers

    record = request.node.stash[RECORD]
    factory = Containers(
        supervisor_client, busybox_rootfs, containerd_daemon.session.labels(), request.node.name
    )
    record.containers = factory
    await factory._open()
    try:
        yield factory
    finally:
        record.leaks += await factory._close()
