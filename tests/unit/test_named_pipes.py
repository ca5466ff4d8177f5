"""The Windows stdio set, run on Linux: its listening seam (asyncio's proactor
``start_serving_pipe``) is given unix sockets named after the pipes, and a
"shim" connects to them as containerd's Windows shims do.

Serving one name twice fails here (the socket path is taken) as it does on
Windows (asyncio serves the first instance with FILE_FLAG_FIRST_PIPE_INSTANCE),
so the tests of the naming scheme see the same collisions Windows would."""

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
from supervisor._ids import MAX_ID_LENGTH
from supervisor.fifo import NamedPipeSet
from supervisor.fifo._named_pipes import pipe_name
from supervisor.fifo._names import new_stdio_name
from supervisor.spec._bundle import bundle_path


class Pipes:
    """Pipe names -> unix sockets in a directory of the test's own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.served: list[str] = []
        self.live: dict[str, asyncio.Server] = {}

    def path(self, name: str) -> str:
        return str(self.root / hashlib.sha1(name.encode()).hexdigest()[:16])

    async def serve(self, factory: Callable[[], asyncio.BaseProtocol], name: str) -> asyncio.Server:
        assert name.startswith("\\\\.\\pipe\\containerd-")
        if name in self.live and self.live[name].is_serving():
            # Windows refuses a second first instance of a served name.
            raise PermissionError(13, "Access is denied", name)
        self.served.append(name)
        server = await asyncio.get_running_loop().create_unix_server(factory, self.path(name))
        self.live[name] = server
        return server

    async def shim(self, name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_unix_connection(self.path(name))


@pytest.fixture
def pipes(tmp_path: Path) -> Pipes:
    return Pipes(tmp_path)


@pytest.mark.asyncio
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


@pytest.mark.asyncio
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


@pytest.mark.asyncio
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


@pytest.mark.asyncio
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


@pytest.mark.asyncio
async def test_a_failing_serve_leaves_nothing_listening(pipes: Pipes, tmp_path: Path) -> None:
    calls = 0

    async def flaky(factory: Callable[[], asyncio.BaseProtocol], name: str) -> asyncio.Server:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(231, "All pipe instances are busy")
        return await pipes.serve(factory, name)

    # Windows' ERROR_PIPE_BUSY has no errno: Unknown, by the one policy.
    with pytest.raises(errors.Unknown, match="cannot serve stdio pipes"):
        await NamedPipeSet.create(tmp_path, "init", stdin=True, terminal=False, serve=flaky)
    # the stdin pipe served before the failure is closed again
    with pytest.raises(OSError):
        await pipes.shim(pipes.served[0])


@pytest.mark.asyncio
async def test_without_a_proactor_loop_the_error_says_so(tmp_path: Path) -> None:
    with pytest.raises(errors.FailedPrecondition, match="proactor"):
        await NamedPipeSet.create(tmp_path, "init", stdin=False, terminal=False)


# -- names ----------------------------------------------------------------------


def _scope(directory: Path) -> str:
    return hashlib.sha256(str(directory.parent).encode()).hexdigest()[:12]


def test_pipe_names_follow_the_documented_scheme(tmp_path: Path) -> None:
    bundle = bundle_path(tmp_path / "state", "ns", "web-1", None)
    scope = _scope(bundle)
    assert len(scope) == 12
    assert pipe_name(bundle, "init.0123abcd", "stdout") == (
        f"\\\\.\\pipe\\containerd-web-1-init.0123abcd-{scope}-stdout"
    )
    assert pipe_name(bundle, "exec.sh-2.0123abcd", "stderr") == (
        f"\\\\.\\pipe\\containerd-web-1-exec.sh-2.0123abcd-{scope}-stderr"
    )


def test_the_same_container_id_elsewhere_gets_other_names(tmp_path: Path) -> None:
    # Pipe names are machine-wide: two namespaces, or two supervisors with
    # state directories of their own, may use one container id.
    names = {
        pipe_name(bundle_path(tmp_path / state, ns, "web", None), "init.0123abcd", "stdout")
        for state in ("a", "b")
        for ns in ("ns1", "ns2")
    }
    assert len(names) == 4


def test_the_longest_ids_still_fit_a_windows_pipe_name(tmp_path: Path) -> None:
    cid, eid = "c" * MAX_ID_LENGTH, "e" * MAX_ID_LENGTH
    bundle = bundle_path(tmp_path / ("s" * 200), "n" * 60, cid, None)
    name = pipe_name(bundle, new_stdio_name(eid, init=False), "stdout")
    assert len(name) <= 256


def test_bad_parts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgument):
        pipe_name(tmp_path / "web", "init.0123abcd", "stdlog")
    with pytest.raises(errors.InvalidArgument):
        pipe_name(tmp_path / "web", "a\\b", "stdout")
    with pytest.raises(errors.InvalidArgument):
        pipe_name(tmp_path / "web", "x" * 300, "stdout")


@pytest.mark.asyncio
async def test_a_losing_attempt_neither_collides_with_nor_touches_the_live_process(
    pipes: Pipes, tmp_path: Path
) -> None:
    # The live process's pipes, then a second attempt at the same process id
    # (a create containerd refuses, or loses a race): it must serve names of
    # its own, and its cleanup must leave the live pipes alone.
    bundle = bundle_path(tmp_path / "state", "ns", "web", None)
    live = await NamedPipeSet.create(
        bundle, new_stdio_name("e1", init=False), stdin=False, terminal=False, serve=pipes.serve
    )
    loser = await NamedPipeSet.create(
        bundle, new_stdio_name("e1", init=False), stdin=False, terminal=False, serve=pipes.serve
    )
    assert {live.stdout_path, live.stderr_path}.isdisjoint({loser.stdout_path, loser.stderr_path})
    loser.remove()
    _, writer = await pipes.shim(live.stdout_path)
    writer.write(b"still here")
    await writer.drain()
    with anyio.fail_after(5):
        assert await live.stdout.receive() == b"still here"
    writer.close()
    live.remove()


@pytest.mark.asyncio
async def test_one_name_cannot_be_served_twice(pipes: Pipes, tmp_path: Path) -> None:
    # What a fixed name per process (moby's scheme) would meet on a retry:
    # the seam refuses, as Windows refuses a second first instance.
    first = await NamedPipeSet.create(
        tmp_path, "init.0123abcd", stdin=False, terminal=True, serve=pipes.serve
    )
    with pytest.raises(errors.FailedPrecondition, match="cannot serve stdio pipes"):
        await NamedPipeSet.create(
            tmp_path, "init.0123abcd", stdin=False, terminal=True, serve=pipes.serve
        )
    first.remove()
