"""Fixtures for the domain tests: clients over the in-memory fake containerd."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import pytest_asyncio

import supervisor
from supervisor import EventInfo, EventType
from supervisor._types import TaskEvent, Topic
from supervisor.backends.fake import FakeTransport
from supervisor.events import Backend

NS = "unit"
ROOTFS = "/nonexistent/rootfs"  # nothing runs: the fake never looks at it
# Fast resubscription keeps the stream-breaking tests quick; the bounds on
# clean-up stay generous (this machine is shared and slow at times).
FAST = supervisor.Timeouts(resubscribe_initial=0.001, resubscribe_max=0.01)
# Hang guard for waits that must end: a failing test fails instead of hanging.
GUARD = 10.0
_MARKER = "~barrier"  # not a valid process id: never confused with a real event


def spec(args: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    return supervisor.default_spec(args or ["sleep", "60"], ROOTFS, **kw)


def connect(
    fake: FakeTransport,
    state_dir: Path,
    *,
    backend: Backend | None = None,
    events: bool = True,
    timeouts: supervisor.Timeouts = FAST,
) -> AbstractAsyncContextManager[supervisor.Client]:
    return supervisor.connect(
        "fake",
        # connect() binds a fake that is not bound yet (the fixture's).
        namespace=fake.controls.namespace or NS,
        transport=fake,
        backend=backend,
        state_dir=state_dir,
        events=events,
        timeouts=timeouts,
    )


@pytest.fixture
def fake() -> FakeTransport:
    return FakeTransport()


@pytest_asyncio.fixture
async def client(fake: FakeTransport, state_dir: Path) -> AsyncIterator[supervisor.Client]:
    async with connect(fake, state_dir) as c:
        yield c


def fifo_files(state_dir: Path) -> list[Path]:
    if not state_dir.exists():
        return []
    return sorted(p for p in state_dir.rglob("*") if p.is_fifo())


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def settle(rounds: int = 100) -> None:
    """Let every other task run until it blocks: the fake does no I/O, so a
    bounded number of scheduler rounds is enough (no clock involved)."""
    for _ in range(rounds):
        await anyio.lowlevel.checkpoint()


class Recorder:
    """A backend keeping every event; :meth:`barrier` waits until it has
    handled all that was published for a container so far."""

    def __init__(self, fail_exits_of: frozenset[str] = frozenset()) -> None:
        self.events: list[tuple[str, EventType, EventInfo]] = []
        self.fail_exits_of = fail_exits_of
        self._markers = 0
        self._changed: anyio.Event | None = None

    async def process_event(self, container_id: str, event: EventType, info: EventInfo) -> None:
        if info.process_id == _MARKER:
            self._markers += 1
        else:
            self.events.append((container_id, event, info))
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        if event is EventType.EXIT and container_id in self.fail_exits_of:
            raise RuntimeError("the handler failed")

    def of(self, container_id: str) -> list[tuple[EventType, str]]:
        return [(e, i.process_id) for c, e, i in self.events if c == container_id]

    def exits(self) -> Counter[tuple[str, str]]:
        return Counter((c, i.process_id) for c, e, i in self.events if e is EventType.EXIT)

    def exit_info(self, container_id: str, process_id: str | None = None) -> EventInfo:
        (info,) = [
            i
            for c, e, i in self.events
            if c == container_id
            and e is EventType.EXIT
            and i.process_id == (process_id or container_id)
        ]
        return info

    async def wait_for(self, pred: Callable[[], bool]) -> None:
        with anyio.fail_after(GUARD):
            while not pred():
                if self._changed is None:
                    self._changed = anyio.Event()
                await self._changed.wait()

    async def barrier(self, fake: FakeTransport, container_id: str) -> None:
        # Events of one container reach the backend in order: once the
        # marker is handled, so is everything published before it.
        target = self._markers + 1
        fake.controls.publish(TaskEvent(fake.namespace, Topic.RESUMED, container_id, _MARKER))
        await self.wait_for(lambda: self._markers >= target)
