"""Small helpers shared by the integration tests."""

from __future__ import annotations

from typing import Any

import anyio
from anyio.abc import ByteReceiveStream

import supervisor


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
