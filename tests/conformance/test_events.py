"""Events: what a subscription sees of a task and its execs, in which order
and with which fields, and the filters and markers a subscription takes.

containerd publishes a task's events from its shim, one queue per task, so
their order is fixed; when they arrive, relative to the replies of the calls
that caused them, is not. Each test therefore reads until the last event it
expects and compares the whole sequence (pids and times normalised), never
what has arrived at a given moment.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

import anyio
import pytest

from supervisor._types import TaskEvent, Topic
from supervisor.backends.base import EventStream, Sync, Transport
from supervisor.backends.fake import ZERO_TIME

from .conftest import GUARD, World

pytestmark = pytest.mark.asyncio


class Reader:
    """Keeps everything one subscription delivers, read in the background."""

    def __init__(self) -> None:
        self.items: list[TaskEvent | Sync] = []
        self._changed = anyio.Event()

    async def run(self, stream: EventStream) -> None:
        async for item in stream:
            self.items.append(item)
            self._changed.set()
            self._changed = anyio.Event()

    async def live(self, transport: Transport) -> None:
        """Until the subscription is live: a marker of ours came through it
        (containerd registers a subscription only at the stream's first read)."""
        with anyio.fail_after(GUARD):
            while not any(isinstance(item, Sync) for item in self.items):
                await transport.sync("live")
                await anyio.sleep(0.01)

    @property
    def events(self) -> list[TaskEvent]:
        return [e for e in self.items if isinstance(e, TaskEvent)]

    async def until(self, done: Callable[[list[TaskEvent | Sync]], bool]) -> None:
        with anyio.fail_after(GUARD):
            while not done(self.items):
                await self._changed.wait()


def seen(topic: Topic, process_id: str) -> Callable[[list[Any]], bool]:
    def done(items: list[Any]) -> bool:
        return any(
            isinstance(e, TaskEvent) and e.topic is topic and e.process_id == process_id
            for e in items
        )

    return done


def normalised(
    events: list[TaskEvent], names: dict[int, str], namespace: str
) -> list[tuple[str, str, str, str, int, str]]:
    """``(topic, container, process, pid name, exit code, exited_at)`` each,
    with pids named as the test knows them and times only told apart as
    set, unset or containerd's "never exited"."""
    rows = []
    for e in events:
        assert e.namespace == namespace
        assert isinstance(e.timestamp, datetime)
        rows.append(
            (
                e.topic.name,
                e.container_id,
                e.process_id,
                names.get(e.pid, f"unknown pid {e.pid}") if e.pid else "-",
                e.exit_code,
                _when(e.exited_at),
            )
        )
    return rows


def _when(at: datetime | None) -> str:
    if at is None:
        return "-"
    return "never" if at == ZERO_TIME else "at"


async def test_a_task_and_an_exec_from_create_to_delete(world: World, transport: Transport) -> None:
    reader = Reader()
    async with transport.subscribe() as stream, anyio.create_task_group() as tg:
        tg.start_soon(reader.run, stream)
        await reader.live(transport)
        await world.container("c1")
        pid = await transport.create_task("c1", world.stdio("c1"))
        await transport.start("c1", "")
        epid = await world.exec("c1", "e1")
        await transport.pause("c1")
        await transport.resume("c1")
        world.finish("c1", "e1", code=5)
        await world.wait("c1", "e1")
        await transport.delete_process("c1", "e1")
        world.finish("c1", code=3)
        await world.wait("c1")
        await transport.delete_task("c1")
        await reader.until(seen(Topic.DELETE, "c1"))
        tg.cancel_scope.cancel()
    ns = transport.namespace
    assert normalised(reader.events, {pid: "init", epid: "exec"}, ns) == [
        ("CREATE", "c1", "c1", "init", 0, "-"),
        ("START", "c1", "c1", "init", 0, "-"),
        ("EXEC_ADDED", "c1", "e1", "-", 0, "-"),
        ("EXEC_STARTED", "c1", "e1", "exec", 0, "-"),
        ("PAUSED", "c1", "c1", "-", 0, "-"),
        ("RESUMED", "c1", "c1", "-", 0, "-"),
        ("EXIT", "c1", "e1", "exec", 5, "at"),
        # No event for a deleted exec.
        ("EXIT", "c1", "c1", "init", 3, "at"),
        ("DELETE", "c1", "c1", "init", 3, "at"),
    ]
    exits = [e for e in reader.events if e.topic is Topic.EXIT]
    delete = reader.events[-1]
    assert delete.exited_at == exits[-1].exited_at


async def test_a_created_task_deleted(world: World, transport: Transport) -> None:
    reader = Reader()
    async with transport.subscribe() as stream, anyio.create_task_group() as tg:
        tg.start_soon(reader.run, stream)
        await reader.live(transport)
        pid = await world.task("c1", start=False)
        await transport.delete_task("c1")
        await reader.until(seen(Topic.DELETE, "c1"))
        tg.cancel_scope.cancel()
    # runc kills the waiting init, and the delete says it never exited. The
    # shim publishes that kill's exit (with "never exited" for a time) only
    # if its reaper gets there before the delete forgets the container:
    # nearly always, by design not always.
    rows = normalised(reader.events, {pid: "init"}, transport.namespace)
    assert rows[0] == ("CREATE", "c1", "c1", "init", 0, "-")
    assert rows[-1] == ("DELETE", "c1", "c1", "init", 0, "never")
    assert rows[1:-1] in ([], [("EXIT", "c1", "c1", "init", 128 + signal.SIGKILL, "never")])


async def test_a_killed_task_with_a_running_exec(world: World, transport: Transport) -> None:
    reader = Reader()
    async with transport.subscribe() as stream, anyio.create_task_group() as tg:
        tg.start_soon(reader.run, stream)
        await reader.live(transport)
        pid = await world.task("c1")
        epid = await world.exec("c1", "e1")
        await transport.kill("c1", "", signal.SIGKILL, False)
        await world.wait("c1")
        await world.wait("c1", "e1")
        await transport.delete_task("c1")
        await reader.until(seen(Topic.DELETE, "c1"))
        tg.cancel_scope.cancel()
    rows = normalised(reader.events, {pid: "init", epid: "exec"}, transport.namespace)
    killed = 128 + signal.SIGKILL
    assert rows[:4] == [
        ("CREATE", "c1", "c1", "init", 0, "-"),
        ("START", "c1", "c1", "init", 0, "-"),
        ("EXEC_ADDED", "c1", "e1", "-", 0, "-"),
        ("EXEC_STARTED", "c1", "e1", "exec", 0, "-"),
    ]
    # The kernel ends both processes at once: the shim may report either
    # exit first, and only then the delete.
    assert sorted(rows[4:6]) == [
        ("EXIT", "c1", "c1", "init", killed, "at"),
        ("EXIT", "c1", "e1", "exec", killed, "at"),
    ]
    assert rows[6:] == [("DELETE", "c1", "c1", "init", killed, "at")]


async def test_a_subscription_to_some_topics(world: World, transport: Transport) -> None:
    reader = Reader()
    topics: Collection[Topic] = [Topic.EXEC_STARTED, Topic.EXIT]
    async with transport.subscribe(topics) as stream, anyio.create_task_group() as tg:
        tg.start_soon(reader.run, stream)
        await reader.live(transport)
        pid = await world.task("c1")
        epid = await world.exec("c1", "e1")
        world.finish("c1", "e1", code=1)
        await world.wait("c1", "e1")
        world.finish("c1", code=2)
        await world.wait("c1")
        await transport.delete_task("c1")
        await reader.until(seen(Topic.EXIT, "c1"))
        # The delete comes after the exit if at all: a marker published
        # after it was sent shows the filter kept it out.
        await transport.sync("after")
        await reader.until(lambda items: Sync("after") in items)
        tg.cancel_scope.cancel()
    assert normalised(reader.events, {pid: "init", epid: "exec"}, transport.namespace) == [
        ("EXEC_STARTED", "c1", "e1", "exec", 0, "-"),
        ("EXIT", "c1", "e1", "exec", 1, "at"),
        ("EXIT", "c1", "c1", "init", 2, "at"),
    ]


async def test_sync_markers_reach_every_subscription(transport: Transport) -> None:
    first, second = Reader(), Reader()
    async with (
        transport.subscribe() as one,
        transport.subscribe([Topic.OOM]) as two,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(first.run, one)
        tg.start_soon(second.run, two)
        await first.live(transport)
        await second.live(transport)
        await transport.sync("m1")
        await transport.sync("m2")
        for reader in (first, second):
            await reader.until(lambda items: Sync("m2") in items)
        tg.cancel_scope.cancel()
    # One connection's markers come in the order they were published.
    for reader in (first, second):
        assert all(isinstance(item, Sync) for item in reader.items)
        assert reader.items[-2:] == [Sync("m1"), Sync("m2")]


async def test_a_subscription_sees_only_its_own_namespace(
    world: World, transport: Transport
) -> None:
    reader = Reader()
    # Publishing creates nothing in the other namespace: nothing to clean.
    other = world.connect(f"{transport.namespace}-x")
    try:
        async with transport.subscribe() as stream, anyio.create_task_group() as tg:
            tg.start_soon(reader.run, stream)
            await reader.live(transport)
            await other.sync("theirs")
            await transport.sync("ours")
            await reader.until(lambda items: Sync("ours") in items)
            tg.cancel_scope.cancel()
    finally:
        await other.aclose()
    assert Sync("theirs") not in reader.items
