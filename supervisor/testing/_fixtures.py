"""The plugin's async fixtures, registered when pytest-asyncio is installed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
            record.clients.append(client)
            yield client
    finally:
        record.leaks += await record.pending_tasks()
        record.leaks += record.open_fifos()


@pytest.fixture
def supervisor_client_factory(
    containerd_daemon: Containerd,
    supervisor_namespace: str,
    supervisor_state_dir: Path,
    request: pytest.FixtureRequest,
) -> Callable[..., contextlib.AbstractAsyncContextManager[supervisor.Client]]:
    """``async with supervisor_client_factory(**options) as client``: another
    client on the test's namespace and state directory, as the application
    would have after a restart (``options`` as :func:`supervisor.connect`
    takes: ``events``, ``backend``, ``timeouts``). Leave the block to close it."""
    import supervisor

    record = request.node.stash[RECORD]

    @contextlib.asynccontextmanager
    async def connect(**options: Any) -> AsyncIterator[supervisor.Client]:
        opened: list[supervisor.Client] = []
        try:
            async with supervisor.connect(
                containerd_daemon.address,
                namespace=supervisor_namespace,
                state_dir=supervisor_state_dir,
                **options,
            ) as client:
                opened.append(client)
                record.clients.append(client)
                try:
                    yield client
                finally:
                    record.clients.remove(client)
        finally:
            # A closed client keeps its ends of the pipes of processes it
            # did not delete (the shim keeps the FIFOs for the next client);
            # an application that ends closes them by exiting, so they are
            # closed here as if it had.
            for client in opened:
                _close_stdio(client)

    return connect


def _close_stdio(client: supervisor.Client) -> None:
    for sets in client._session.stdio.values():
        for stdio in sets:
            stdio.close()


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
