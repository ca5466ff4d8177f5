"""Small helpers shared by the integration tests."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream

import supervisor
from supervisor import EventInfo, EventType


async def read_all(stream: ByteReceiveStream | None) -> bytes:
    if stream is None:
        return b""
    chunks = []
    while True:
        try:
            chunks.append(await stream.receive())
        except anyio.EndOfStream:
            return b"".join(chunks)


async def run(
    client: supervisor.Client,
    rootfs: str,
    cid: str,
    args: list[str],
    **spec_kw: Any,
) -> tuple[supervisor.ExitStatus, bytes, bytes]:
    """create, start, collect output, wait, delete: one whole container life."""
    spec = supervisor.default_spec(args, rootfs, **spec_kw)
    container = await client.new_container(cid, spec)
    task = await container.new_task()
    await task.start()
    out = err = b""

    async def collect_out() -> None:
        nonlocal out
        out = await read_all(task.stdout)

    async def collect_err() -> None:
        nonlocal err
        err = await read_all(task.stderr)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect_out)
            tg.start_soon(collect_err)
        status = await task.wait()
    deleted = await task.delete()
    assert deleted.exit_code == status.exit_code
    await container.delete()
    return status, out, err


class Recorder:
    """A Backend that keeps every event and lets tests wait for one."""

    def __init__(self) -> None:
        self.events: list[tuple[str, EventType, EventInfo]] = []
        self._changed = anyio.Event()

    async def process_event(self, container_id: str, event: EventType, info: EventInfo) -> None:
        self.events.append((container_id, event, info))
        self._changed.set()
        self._changed = anyio.Event()

    def of(self, container_id: str) -> list[tuple[EventType, EventInfo]]:
        return [(e, i) for c, e, i in self.events if c == container_id]

    def exits(self) -> Counter[tuple[str, str]]:
        return Counter((c, i.process_id) for c, e, i in self.events if e is EventType.EXIT)

    async def wait_for(self, pred: object, timeout: float = 20) -> None:
        assert callable(pred)
        with anyio.fail_after(timeout):
            while not pred():
                await self._changed.wait()


async def started_with_stdin(
    client: supervisor.Client, rootfs: str, cid: str, script: str, *, terminal: bool
) -> tuple[supervisor.Container, supervisor.Task]:
    """A container running ``sh -c script`` with its stdin open (on a
    terminal if ``terminal``), started."""
    spec = supervisor.default_spec(["sh", "-c", script], rootfs, terminal=terminal)
    container = await client.new_container(cid, spec)
    task = await container.new_task(stdin=True, terminal=terminal)
    await task.start()
    return container, task
