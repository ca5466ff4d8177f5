"""A closed client lets go of every fd it opened: an application that
reconnects (and restores) many times must not pile up its ends of the
stdio FIFOs of processes that outlive each client; what the processes
write, and what is sent to them, still works from the next client."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import Process
from tests.integration.conftest import fifo_files, open_fds

pytestmark = pytest.mark.asyncio


async def _echoed(proc: Process, word: bytes) -> None:
    # cat gives back what it reads (a terminal echoes it as well).
    assert proc.stdin is not None
    await proc.stdin.send(word + b"\n")
    got = b""
    with anyio.fail_after(30):
        while word not in got:
            got += await proc.stdout.receive()


async def _start_all(client: supervisor.Client, rootfs: str, log: Path) -> None:
    plain = await client.new_container("plain", supervisor.default_spec(["cat"], rootfs))
    task = await plain.new_task(stdin=True)
    await task.start()
    proc = await task.exec("e", supervisor.process_spec(["cat"]), stdin=True)
    await proc.start()
    tty = await client.new_container("tty", supervisor.default_spec(["cat"], rootfs, terminal=True))
    await (await tty.new_task(stdin=True, terminal=True)).start()
    logged = await client.new_container(
        "logged", supervisor.default_spec(["sh", "-c", "echo hi; exec sleep 600"], rootfs)
    )
    await (await logged.new_task(log_path=log)).start()


async def test_closing_a_client_closes_its_stdio_fds_and_the_next_one_reattaches(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, tmp_path: Path
) -> None:
    def connect() -> AbstractAsyncContextManager[supervisor.Client]:
        return supervisor.connect(containerd_address, namespace=namespace, state_dir=state_dir)

    async with connect() as client:  # what the loop and the library make once
        await client.version()
    baseline = open_fds()
    async with connect() as client:
        await _start_all(client, rootfs, tmp_path / "log")
    assert open_fds() == baseline
    for i in range(3):
        async with connect() as client:
            tasks = {c.id: t for c, t in await client.restore()}
            plain, tty = tasks["plain"], tasks["tty"]
            assert plain is not None and tty is not None
            await _echoed(plain, b"plain-%d" % i)
            await _echoed(plain.execs["e"], b"exec-%d" % i)
            await _echoed(tty, b"tty-%d" % i)
        assert open_fds() == baseline
    async with connect() as client:
        for container, task in await client.restore():
            assert task is not None
            with anyio.fail_after(30):
                await task.delete(force=True)
                await container.delete()
    assert open_fds() == baseline
    assert fifo_files(state_dir) == []
    assert (tmp_path / "log").read_bytes() == b"hi\n"
