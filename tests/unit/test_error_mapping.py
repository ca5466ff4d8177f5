"""What the grpclib transport makes of each failure: a broken or refused
connection is Unavailable (the monitor rides it out), anything it does not
know, a reply that does not decode above all, is Unknown with the cause
chained. Servers here are in-process grpclib or h2 peers on unix sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import grpclib.const
import grpclib.exceptions
import grpclib.server
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from grpclib.const import Cardinality, Status
from grpclib.protocol import Connection

from supervisor import errors
from supervisor.backends.containerd import ContainerdTransport, map_grpc_errors

GUARD = 10.0


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (grpclib.exceptions.GRPCError(Status.UNAVAILABLE, "down"), errors.Unavailable),
        (grpclib.exceptions.GRPCError(Status.NOT_FOUND, "gone"), errors.NotFound),
        (grpclib.exceptions.GRPCError(Status.UNKNOWN, "odd"), errors.Unknown),
        (grpclib.exceptions.StreamTerminatedError("Connection lost"), errors.Unavailable),
        (ConnectionRefusedError(111, "refused"), errors.Unavailable),
        (FileNotFoundError(2, "no socket"), errors.Unavailable),
        (BrokenPipeError(32, "broken pipe"), errors.Unavailable),
        (TimeoutError(), errors.DeadlineExceeded),
    ],
)
def test_statuses_and_broken_connections(
    raised: Exception, expected: type[errors.SupervisorError]
) -> None:
    with pytest.raises(expected) as caught, map_grpc_errors("c"):
        raise raised
    assert caught.value.__cause__ is raised
    assert caught.value.container_id == "c"


@pytest.mark.parametrize(
    "raised",
    [
        ValueError("bad enum value"),
        TypeError("unexpected type"),
        KeyError("field"),
        AttributeError("'NoneType' object has no attribute 'pid'"),
        IndexError("list index out of range"),
        RuntimeError("more than one field set in oneof"),
        EOFError("Stream ended unexpectedly while attempting to load varint."),
        NotImplementedError("Compression not implemented"),
        AssertionError("3 != 5"),
        grpclib.exceptions.ProtocolError("Request is already sent"),
        h2.exceptions.ProtocolError("a live connection refused this"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_anything_unexpected_is_unknown_with_its_cause(raised: Exception) -> None:
    # Unavailable would be retried as if containerd were down: a decoding
    # bug would loop forever as "stream broken".
    with pytest.raises(errors.Unknown) as caught, map_grpc_errors("c", "e"):
        raise raised
    assert caught.value.__cause__ is raised
    assert (caught.value.container_id, caught.value.process_id) == ("c", "e")


def test_grpclib_tripping_over_a_connection_it_closed_is_unavailable() -> None:
    # grpclib's Connection.close() deletes its transport; a late flush then
    # raises AttributeError (grpclib issue 110): a dead connection, not a bug.
    class _Transport(asyncio.Transport):
        def write(self, data: Any) -> None:
            pass

        def close(self) -> None:
            pass

        def is_closing(self) -> bool:
            return False

    h2_conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    h2_conn.initiate_connection()
    conn = Connection(h2_conn, _Transport(), config=grpclib.config.Configuration())
    conn.close()
    with pytest.raises(errors.Unavailable) as caught, map_grpc_errors():
        conn.flush()
    assert isinstance(caught.value.__cause__, AttributeError)
    # The same exception type from anything else stays a bug.
    live = Connection(h2_conn, _Transport(), config=grpclib.config.Configuration())
    with pytest.raises(errors.Unknown), map_grpc_errors():
        live.no_such_attribute  # type: ignore[attr-defined]  # noqa: B018


class _Raw:
    """A reply type whose encoding is whatever bytes the test gives."""

    def __init__(self, data: bytes = b"") -> None:
        self.data = data

    def SerializeToString(self) -> bytes:  # noqa: N802 - grpclib's codec calls it so
        return self.data

    @classmethod
    def FromString(cls, data: bytes) -> _Raw:  # noqa: N802
        return cls(data)


class _Service:
    def __init__(self, methods: Mapping[str, tuple[Cardinality, Callable[[Any], Awaitable[None]]]]):
        self._methods = methods

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            name: grpclib.const.Handler(func, cardinality, _Raw, _Raw)
            for name, (cardinality, func) in self._methods.items()
        }


@asynccontextmanager
async def _serving(
    path: Path, methods: Mapping[str, tuple[Cardinality, Callable[[Any], Awaitable[None]]]]
) -> AsyncIterator[ContainerdTransport]:
    server = grpclib.server.Server([_Service(methods)])
    await server.start(path=str(path))
    transport = ContainerdTransport.open(str(path), "ns", rpc_timeout=GUARD)
    try:
        yield transport
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()


# A field-1 varint cut short: betterproto raises EOFError decoding it.
_UNDECODABLE = b"\x08"


@pytest.mark.asyncio
async def test_a_reply_that_does_not_decode_is_unknown(tmp_path: Path) -> None:
    async def version(stream: Any) -> None:
        await stream.recv_message()
        await stream.send_message(_Raw(_UNDECODABLE))

    methods = {
        "/containerd.services.version.v1.Version/Version": (Cardinality.UNARY_UNARY, version)
    }
    async with _serving(tmp_path / "s.sock", methods) as transport:
        with anyio.fail_after(GUARD), pytest.raises(errors.Unknown) as caught:
            await transport.version()
    assert isinstance(caught.value.__cause__, EOFError)


@pytest.mark.asyncio
async def test_an_event_that_does_not_decode_is_unknown(tmp_path: Path) -> None:
    async def subscribe(stream: Any) -> None:
        await stream.recv_message()
        await stream.send_message(_Raw(_UNDECODABLE))
        await anyio.sleep_forever()

    methods = {
        "/containerd.services.events.v1.Events/Subscribe": (Cardinality.UNARY_STREAM, subscribe)
    }
    async with _serving(tmp_path / "s.sock", methods) as transport:
        with anyio.fail_after(GUARD), pytest.raises(errors.Unknown) as caught:
            async with transport.subscribe() as events:
                async for _ in events:
                    pass
    assert isinstance(caught.value.__cause__, EOFError)


@pytest.mark.asyncio
async def test_a_call_sent_after_containerd_said_goaway_is_unavailable(tmp_path: Path) -> None:
    # A call waiting for the socket to drain (another call's large request
    # filled it) while containerd sends GOAWAY: grpclib closes the connection
    # but still flushes what it buffered, then lets the waiting call send its
    # headers, which h2 refuses on a closed connection. Before, that
    # h2.exceptions.ProtocolError left the transport as it was.
    path = tmp_path / "s.sock"
    loop = asyncio.get_running_loop()
    # A bare socket, not asyncio streams: nothing may read until the test says.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    listener.setblocking(False)
    transport = ContainerdTransport.open(str(path), "ns", rpc_timeout=GUARD)
    peer = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    accepted: socket.socket | None = None
    try:
        async with anyio.create_task_group() as tg:
            outcomes: dict[str, BaseException] = {}

            async def call(name: str, fn: Callable[[], Awaitable[Any]]) -> None:
                try:
                    await fn()
                except BaseException as exc:  # noqa: BLE001 - recorded for the asserts
                    outcomes[name] = exc

            with anyio.fail_after(GUARD):
                tg.start_soon(
                    call,
                    "large",
                    lambda: transport.create_container(
                        "large",
                        {"padding": "x" * (8 << 20)},
                        runtime="io.containerd.runc.v2",
                        runtime_options=None,
                        labels={},
                    ),
                )
                accepted, _ = await loop.sock_accept(listener)
                # Windows wide open, and nothing read: the large request
                # fills the socket and grpclib stops writing for good.
                peer.initiate_connection()
                peer.increment_flow_control_window(2**31 - 1 - 65535)
                peer.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
                await loop.sock_sendall(accepted, peer.data_to_send())
                connection = await _grpclib_connection(transport)
                while connection.write_ready.is_set():
                    await anyio.sleep(0.001)
                tg.start_soon(call, "small", transport.version)
                while len(connection.write_ready._waiters or ()) < 2:
                    await anyio.sleep(0.001)
                assert "small" not in outcomes
                peer.close_connection()
                await loop.sock_sendall(accepted, peer.data_to_send())
                while not connection.is_closing():
                    await anyio.sleep(0.001)
                # Now read it all: grpclib drains and the small call resumes.
                while await loop.sock_recv(accepted, 1 << 20):
                    pass
        assert isinstance(outcomes["large"], errors.Unavailable)
        small = outcomes["small"]
        assert isinstance(small, errors.Unavailable), repr(small)
        assert isinstance(small.__cause__, h2.exceptions.ProtocolError)
    finally:
        await transport.aclose()
        if accepted is not None:
            accepted.close()
        listener.close()


async def _grpclib_connection(transport: ContainerdTransport) -> Connection:
    # The test reaches into grpclib to see when its writes are paused.
    channel: Any = transport._channel
    while channel._protocol is None:
        await anyio.sleep(0.001)
    conn: Connection = channel._protocol.connection
    return conn


@pytest.mark.parametrize(
    "reply",
    [
        # A stream that ends inside a message: 100 bytes announced, 3 sent.
        b"\x00" + (100).to_bytes(4, "big") + b"abc",
        # A compressed message, though no compression was negotiated.
        b"\x01" + (3).to_bytes(4, "big") + b"abc",
    ],
    ids=["truncated", "compressed"],
)
@pytest.mark.asyncio
async def test_broken_grpc_framing_is_unavailable_as_in_the_blocking_reader(
    tmp_path: Path, reply: bytes
) -> None:
    # What the blocking reader calls "a broken reply" (Unavailable) is the
    # same here; only a whole message that does not decode is Unknown.
    path = tmp_path / "s.sock"
    loop = asyncio.get_running_loop()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    listener.setblocking(False)
    transport = ContainerdTransport.open(str(path), "ns", rpc_timeout=GUARD)
    peer = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    accepted: socket.socket | None = None

    async def answer() -> None:
        nonlocal accepted
        accepted, _ = await loop.sock_accept(listener)
        peer.initiate_connection()
        while True:
            data = await loop.sock_recv(accepted, 65536)
            assert data, "the client went away before asking"
            for event in peer.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    sid = event.stream_id
                    peer.send_headers(
                        sid, [(":status", "200"), ("content-type", "application/grpc")]
                    )
                    peer.send_data(sid, reply, end_stream=True)
                    await loop.sock_sendall(accepted, peer.data_to_send())
                    return
            await loop.sock_sendall(accepted, peer.data_to_send())

    try:
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(answer)
                with pytest.raises(errors.Unavailable) as caught:
                    await transport.version()
        assert isinstance(caught.value.__cause__, (AssertionError, NotImplementedError))
    finally:
        await transport.aclose()
        if accepted is not None:
            accepted.close()
        listener.close()
