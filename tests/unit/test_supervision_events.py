"""An exit containerd never published: a task it deleted on its own (its
shim gone while containerd was down) is reported from the delete's status,
so a wait() on it (the supervisor's, above all) ends."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from supervisor._types import TaskEvent, Topic
from supervisor.backends.fake import FakeTransport
from tests.unit.conftest import GUARD, Recorder, connect, spec

pytestmark = pytest.mark.asyncio


async def test_a_delete_without_an_exit_ends_the_wait(fake: FakeTransport, state_dir: Path) -> None:
    rec = Recorder()
    async with connect(fake, state_dir, backend=rec) as client:
        container = await client.new_container("gone", spec())
        task = await container.new_task()
        await task.start()
        at = datetime(2026, 1, 1, tzinfo=UTC)
        monitor = client._session.monitor
        deleted = TaskEvent(client.namespace, Topic.DELETE, "gone", "gone", task.pid, 255, at)
        monitor.handle(deleted)
        monitor.handle(deleted)  # sent twice: still one exit
        with anyio.fail_after(GUARD):
            status = await task.wait()
        assert (status.exit_code, status.exited_at) == (255, at)
        await rec.barrier(fake, "gone")
        assert rec.exits()[("gone", "gone")] == 1
        await container.delete(force=True)


async def test_a_delete_of_another_instance_is_no_exit(
    fake: FakeTransport, state_dir: Path
) -> None:
    async with connect(fake, state_dir) as client:
        container = await client.new_container("other", spec())
        task = await container.new_task()
        await task.start()
        monitor = client._session.monitor
        monitor.handle(TaskEvent(client.namespace, Topic.DELETE, "other", "other", task.pid + 1))
        assert not client._session.tracker.exited_known("other", "other")
        await container.delete(force=True)
