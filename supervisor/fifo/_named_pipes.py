r"""Windows stdio: named pipes that the shim connects to, our ends as anyio
byte streams.

On Windows containerd's shims take stdio as pipe *names*
(``\\.\pipe\…``) and connect to them as clients, so the supervisor is the
pipe server: it serves each name before the task exists and accepts exactly
one connection per name (then stops listening, so nobody else can attach).

Until that connection arrives, a reader waits rather than seeing end of
stream: an exec's shim connects only at its Start. After it, EOF means the
process's side is done, which is what the Linux FIFO set's keep-alive end
achieves there.

Names (:func:`pipe_name`)::

    \\.\pipe\containerd-<container id>-<attempt>-<scope>-<stdin|stdout|stderr>

moby names them ``containerd-<container id>-<process id>-<stream>``. Pipe
names are one namespace for the whole machine, so that is not enough here:

* ``<scope>`` (12 hex digits of the SHA-256 of the state directory and
  namespace level) keeps two supervisors, or two namespaces of one, that use
  the same container id from serving the same name;
* ``<attempt>`` is the per-attempt name the core gives the FIFOs too
  (``init.<token>`` or ``exec.<exec id>.<token>``, a fresh random token each
  time): a refused or losing create never tries to serve the name of the
  process that holds the id, nor one that is still being torn down (a pipe
  name lives until its last handle, the shim's included, is closed).

The container and exec ids stay readable, as moby's do, for whoever lists
``\\.\pipe\``.

The listening itself is asyncio's proactor ``start_serving_pipe``; it is
passed in as ``serve`` so that everything above it runs, and is tested, on
Linux against unix sockets. Status: not yet run on Windows (no Windows
machine in this project's CI). Known gap: asyncio serves pipes with the
default security descriptor, which lets any local user open them for
reading; one who connects first to a stdout pipe would be taken for the
shim (see ``docs/windows.md``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream

from .. import errors

__all__ = [
    "PIPE_PREFIX",
    "NamedPipeSet",
    "PipeReceiveStream",
    "PipeSendStream",
    "Serve",
    "pipe_name",
]

PIPE_PREFIX = "\\\\.\\pipe\\"
_STREAMS = frozenset({"stdin", "stdout", "stderr"})
# Windows' limit for the whole name, "\\.\pipe\" included.
_MAX_PIPE_NAME = 256


class _Listener(Protocol):
    def close(self) -> None: ...


Serve = Callable[[Callable[[], asyncio.BaseProtocol], str], Awaitable[_Listener]]
"""``serve(protocol_factory, pipe_name)``: start listening on ``pipe_name``."""


async def _proactor_serve(factory: Callable[[], asyncio.BaseProtocol], name: str) -> _Listener:
    loop = asyncio.get_running_loop()
    start = getattr(loop, "start_serving_pipe", None)
    if start is None:
        raise errors.FailedPrecondition(
            "named-pipe stdio needs asyncio's proactor event loop (Windows)"
        )
    servers = await start(factory, name)
    # The proactor returns one PipeServer per call, in a list.
    server: _Listener = servers[0]
    return server


def pipe_name(directory: Path, name: str, stream: str) -> str:
    """The pipe name of one ``stream`` of the process whose stdio attempt is
    ``name``, in the bundle ``directory`` (``<state>/<namespace>/<container id>``).

    See the module docstring for the scheme and why it differs from moby's.

    Raises:
        supervisor.errors.InvalidArgument: the name would be longer than
            Windows allows (256 characters), or a part could not be part of one.
    """
    if stream not in _STREAMS:
        raise errors.InvalidArgument(f"no stdio stream {stream!r}")
    container_id = directory.name
    for part in (container_id, name):
        if not part or "\\" in part or "/" in part:
            raise errors.InvalidArgument(f"{part!r} cannot be part of a pipe name")
    scope = hashlib.sha256(str(directory.parent).encode()).hexdigest()[:12]
    pipe = f"{PIPE_PREFIX}containerd-{container_id}-{name}-{scope}-{stream}"
    if len(pipe) > _MAX_PIPE_NAME:
        raise errors.InvalidArgument(f"pipe name {pipe[:40]!r}... is too long for Windows")
    return pipe


class _OneConnection(asyncio.Protocol):
    """The protocol of the first (and only) client of one pipe."""

    def __init__(self, on_first: Callable[[_OneConnection], bool]) -> None:
        self._on_first = on_first
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.eof = False
        self.changed = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if not self._on_first(self):
            transport.abort()  # a second client: only the shim may attach
            return
        self.transport = transport
        self.changed.set()

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.changed.set()

    def eof_received(self) -> bool:
        self.eof = True
        self.changed.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.writable.set()
        self.changed.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


class _ServedPipe:
    """One pipe name we listen on until its client connects."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.listener: _Listener | None = None
        self.connection: _OneConnection | None = None
        self.connected = asyncio.Event()
        self.closed = False

    def factory(self) -> _OneConnection:
        return _OneConnection(self._accept)

    def _accept(self, connection: _OneConnection) -> bool:
        if self.connection is not None or self.closed:
            return False
        self.connection = connection
        self.connected.set()
        self.stop_listening()
        return True

    def stop_listening(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()

    def close(self) -> None:
        self.closed = True
        self.stop_listening()
        connection = self.connection
        if connection is not None and connection.transport is not None:
            connection.transport.close()
        self.connected.set()  # wake anyone still waiting for a client


class PipeReceiveStream(ByteReceiveStream):
    """Our reading end of a served pipe; ``EndOfStream`` once the shim's side closed."""

    def __init__(self, pipe: _ServedPipe) -> None:
        self._pipe = pipe

    async def receive(self, max_bytes: int = 65536) -> bytes:
        pipe = self._pipe
        await pipe.connected.wait()
        connection = pipe.connection
        if connection is None:
            raise anyio.ClosedResourceError
        while True:
            if pipe.closed:
                raise anyio.ClosedResourceError
            if connection.chunks:
                data = connection.chunks.popleft()
                if len(data) > max_bytes:
                    connection.chunks.appendleft(data[max_bytes:])
                    data = data[:max_bytes]
                return data
            if connection.eof:
                raise anyio.EndOfStream
            connection.changed.clear()
            await connection.changed.wait()

    async def aclose(self) -> None:
        self._pipe.close()


class PipeSendStream(ByteSendStream):
    """Our writing end of a served pipe (the process's stdin)."""

    def __init__(self, pipe: _ServedPipe) -> None:
        self._pipe = pipe

    async def send(self, item: bytes) -> None:
        pipe = self._pipe
        await pipe.connected.wait()
        connection = pipe.connection
        if pipe.closed or connection is None or connection.transport is None:
            raise anyio.ClosedResourceError
        if connection.eof or connection.transport.is_closing():
            raise anyio.BrokenResourceError
        connection.transport.write(item)
        await connection.writable.wait()  # flow control: the shim reads slower

    async def send_eof(self) -> None:
        """Close the process's stdin (what ``close_stdin`` means on Windows)."""
        await self.aclose()

    async def aclose(self) -> None:
        self._pipe.close()


class NamedPipeSet:
    """One process's stdio as served named pipes (the Windows ``FifoSet``).

    Attributes mirror :class:`~supervisor.fifo.FifoSet`: ``stdin_path``,
    ``stdout_path``, ``stderr_path`` (pipe names for containerd), and our ends
    ``stdin``, ``stdout``, ``stderr`` as anyio byte streams.
    """

    def __init__(self, terminal: bool) -> None:
        self.terminal = terminal
        self.stdin_path: str | None = None
        self.stdout_path = ""
        self.stderr_path: str | None = None
        self.stdin: PipeSendStream | None = None
        self.stdout: PipeReceiveStream
        self.stderr: PipeReceiveStream | None = None
        self._pipes: list[_ServedPipe] = []

    @classmethod
    async def create(
        cls,
        directory: Path,
        name: str,
        *,
        stdin: bool,
        terminal: bool,
        serve: Serve | None = None,
    ) -> NamedPipeSet:
        """Serve the pipes of one process; nothing is left listening on failure.

        Raises:
            supervisor.errors.SupervisorError: a pipe could not be served (the
                class by :func:`~supervisor.errors.from_os_error`).
        """
        serve = serve or _proactor_serve
        pipes = cls(terminal)
        try:
            if stdin:
                pipe = await pipes._serve(serve, pipe_name(directory, name, "stdin"))
                pipes.stdin_path, pipes.stdin = pipe.name, PipeSendStream(pipe)
            pipe = await pipes._serve(serve, pipe_name(directory, name, "stdout"))
            pipes.stdout_path, pipes.stdout = pipe.name, PipeReceiveStream(pipe)
            if not terminal:
                pipe = await pipes._serve(serve, pipe_name(directory, name, "stderr"))
                pipes.stderr_path, pipes.stderr = pipe.name, PipeReceiveStream(pipe)
        except BaseException as exc:
            pipes.remove()
            if isinstance(exc, OSError):
                raise errors.from_os_error(exc, f"cannot serve stdio pipes for {name}") from exc
            raise
        return pipes

    async def _serve(self, serve: Serve, name: str) -> _ServedPipe:
        pipe = _ServedPipe(name)
        self._pipes.append(pipe)
        pipe.listener = await serve(pipe.factory, name)
        if pipe.closed:  # removed while we awaited: do not keep listening
            pipe.stop_listening()
        return pipe

    def started(self) -> None:
        """Nothing to do: EOF already waits for the shim's own connection."""

    def close(self) -> None:
        """Stop listening and close every connection (idempotent)."""
        for pipe in self._pipes:
            pipe.close()

    def remove(self) -> None:
        """Same as :meth:`close`: a pipe name vanishes with its last handle."""
        self.close()

    def __repr__(self) -> str:
        return f"NamedPipeSet({self.stdout_path!r})"
