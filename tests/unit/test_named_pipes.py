"""The Windows stdio set, run on Linux: its listening seam (asyncio's proactor
``start_serving_pipe``) is given unix sockets named after the pipes, and a
"shim" connects to them as containerd's Windows shims do."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from supervisor import errors
from supervisor.fifo import NamedPipeSet

pytestmark = pytest.mark.asyncio


class Pipes:
    """Pipe names -> unix sockets in a directory of the test's own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.served: list[str] = []

    def path(self, name: str) -> str:
        return str(self.root / hashlib.sha1(name.encode()).hexdigest()[:16])

    async def serve(self, factory: Callable[[], asyncio.BaseProtocol], name: str) -> asyncio.Server:
        assert name.startswith("\\\\.\\pipe\\containerd-supervisor-")
        self.served.append(name)
        return await asyncio.get_running_loop().create_unix_server(factory, self.path(name))

    async def shim(self, name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_unix_connection(self.path(name))


@pytest.fixture
def pipes(tmp_path: Path) -> Pipes:
    return Pipes(tmp_path)


async def test_stdout_and_stderr_wait_for_the_shim_then_end_at_its_eof(
    pipes: Pipes, tmp_path: Path
) -> None:
    fds = set(os.listdir("/proc/self/fd"))
    stdio = await NamedPipeSet.create(
        tmp_path, "init", stdin=False, terminal=False, serve=pipes.serve
    )
    assert stdio.stdin is None and stdio.stderr is not None
    assert len(set(pipes.served)) == 2 and stdio.stdout_path != stdio.stderr_path
    got: list[bytes] = []

    async def read_all() -> None:
        while True:
            try:
                got.append(await stdio.stdout.receive(4))
            except anyio.EndOfStream:
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_all)
        await anyio.sleep(0.05)  # no shim yet: the reader waits, it does not see EOF
        assert got == []
        _, writer = await pipes.shim(stdio.stdout_path)
        writer.write(b"hello world")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    assert b"".join(got) == b"hello world" and max(map(len, got)) <= 4
    stdio.remove()
    await anyio.lowlevel.checkpoint()  # let the transports finish closing
    assert set(os.listdir("/proc/self/fd")) == fds


async def test_stdin_reaches_the_shim_and_close_is_its_eof(pipes: Pipes, tmp_path: Path) -> None:
    stdio = await NamedPipeSet.create(tmp_path, "e1", stdin=True, terminal=True, serve=pipes.serve)
    assert stdio.stdin is not None and stdio.stdin_path is not None
    assert stdio.stderr is None and stdio.stderr_path is None  # a terminal has one output
    reader, writer = await pipes.shim(stdio.stdin_path)
    await stdio.stdin.send(b"line 1\n")
    await stdio.stdin.send(b"line 2\n")
    await stdio.stdin.send_eof()
    with anyio.fail_after(5):
        assert await reader.read() == b"line 1\nline 2\n"
    with pytest.raises(anyio.ClosedResourceError):
        await stdio.stdin.send(b"late")
    writer.close()
    stdio.remove()


async def test_only_the_first_client_is_accepted(pipes: Pipes, tmp_path: Path) -> None:
    stdio = await NamedPipeSet.create(
        tmp_path, "init", stdin=False, terminal=True, serve=pipes.serve
    )
    _, first = await pipes.shim(stdio.stdout_path)
    await anyio.sleep(0.01)
    # The listener is gone once the shim attached: nobody else can connect.
    with pytest.raises(OSError):
        await pipes.shim(stdio.stdout_path)
    first.write(b"from the shim")
    await first.drain()
    with anyio.fail_after(5):
        assert await stdio.stdout.receive() == b"from the shim"
    first.close()
    stdio.remove()


async def test_remove_wakes_a_waiting_reader_and_stops_listening(
    pipes: Pipes, tmp_path: Path
) -> None:
    stdio = await NamedPipeSet.create(tmp_path, "x", stdin=True, terminal=False, serve=pipes.serve)
    assert stdio.stderr is not None

    async def reader() -> None:
        with pytest.raises(anyio.ClosedResourceError):
            await stdio.stderr.receive()  # type: ignore[union-attr]

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await anyio.sleep(0.01)
        stdio.remove()
    with pytest.raises(OSError):
        await pipes.shim(stdio.stdout_path)
    stdio.remove()  # idempotent


async def test_a_failing_serve_leaves_nothing_listening(pipes: Pipes, tmp_path: Path) -> None:
    calls = 0

    async def flaky(factory: Callable[[], asyncio.BaseProtocol], name: str) -> asyncio.Server:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(231, "All pipe instances are busy")
        return await pipes.serve(factory, name)

    with pytest.raises(errors.Unknown, match="cannot serve stdio pipes"):
        await NamedPipeSet.create(tmp_path, "init", stdin=True, terminal=False, serve=flaky)
    # the stdin pipe served before the failure is closed again
    with pytest.raises(OSError):
        await pipes.shim(pipes.served[0])


async def test_without_a_proactor_loop_the_error_says_so(tmp_path: Path) -> None:
    with pytest.raises(errors.FailedPrecondition, match="proactor"):
        await NamedPipeSet.create(tmp_path, "init", stdin=False, terminal=False)
