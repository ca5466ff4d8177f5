"""The blocking gRPC channel against peers living in the test: a well-behaved
HTTP/2 server built on ``h2`` (an independent implementation, answering the
way containerd does) and scripted servers that send raw frames, broken ones
included. Every call ends, within the Channel's deadline, as the reply bytes
or a :mod:`supervisor.errors` type; the socket is closed after any failure
but a gRPC status, which leaves the connection usable.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import random
import re
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest

from supervisor import errors
from supervisor.backends.blocking import Channel

T = TypeVar("T")

# A call that has not ended this long after its own deadline hangs: the test
# fails instead of blocking the suite.
HARD = 10.0
# Deadline for calls expected to succeed: generous, the machine is shared.
SLOW = 5.0
NS = "unit-ns"
METHOD = "/containerd.services.containers.v1.Containers/List"
REQUEST = b"\x0a\x03abc"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0x0, 0x1, 0x2, 0x3, 0x4, 0x5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x6, 0x7, 0x8, 0x9
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20

Frame = tuple[int, int, int, bytes]


# --- frames, as a server writes them ------------------------------------------


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + struct.pack(">BBI", kind, flags, stream) + payload


def frames_of(data: bytes) -> list[Frame]:
    out: list[Frame] = []
    pos = 0
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos : pos + 3], "big")
        kind, flags, stream = data[pos + 3], data[pos + 4], int.from_bytes(data[pos + 5 : pos + 9])
        out.append((kind, flags, stream & 0x7FFFFFFF, data[pos + 9 : pos + 9 + length]))
        pos += 9 + length
    return out


def grpc(body: bytes, *, compressed: int = 0, size: int | None = None) -> bytes:
    """One length-prefixed gRPC message."""
    return bytes((compressed,)) + (len(body) if size is None else size).to_bytes(4, "big") + body


def block(enc: hpack.Encoder, headers: list[tuple[str, str]]) -> bytes:
    return enc.encode(headers)  # Huffman and indexing, as Go's encoder does


def head(enc: hpack.Encoder, stream: int = 1) -> bytes:
    headers = [(":status", "200"), ("content-type", "application/grpc")]
    return frame(HEADERS, END_HEADERS, stream, block(enc, headers))


def tail(enc: hpack.Encoder, status: str = "0", stream: int = 1, message: str = "") -> bytes:
    headers = [("grpc-status", status)] + ([("grpc-message", message)] if message else [])
    return frame(HEADERS, END_HEADERS | END_STREAM, stream, block(enc, headers))


def ok_reply(body: bytes, enc: hpack.Encoder | None = None, stream: int = 1) -> bytes:
    enc = enc or hpack.Encoder()
    return (
        frame(SETTINGS, 0, 0)
        + head(enc, stream)
        + frame(DATA, 0, stream, grpc(body))
        + tail(enc, "0", stream)
    )


# --- the server side of one connection ----------------------------------------


class Conn:
    """The accepted end of one connection, used by one server thread."""

    def __init__(self, sock: socket.socket, eof: threading.Event) -> None:
        self.sock = sock
        self.sock.settimeout(HARD)
        self.buffer = bytearray()
        self.sent = bytearray()
        self.eof = eof
        self.closed = False

    def recv_some(self) -> bytes:
        """Bytes from the client; b"" once it has closed its end."""
        if self.buffer:
            data = bytes(self.buffer)
            self.buffer.clear()
            return data
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof.set()
        return data

    def recv_exact(self, size: int) -> bytes | None:
        while len(self.buffer) < size:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof.set()
                return None
            self.buffer += chunk
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def read_frame(self) -> Frame | None:
        header = self.recv_exact(9)
        if header is None:
            return None
        length = int.from_bytes(header[:3], "big")
        payload = self.recv_exact(length)
        if payload is None:
            return None
        stream = int.from_bytes(header[5:], "big") & 0x7FFFFFFF
        return header[3], header[4], stream, payload

    def read_request(self, first: bool = True) -> list[Frame]:
        """The client's frames up to the end of its request stream."""
        if first:
            assert self.recv_exact(len(PREFACE)) == PREFACE
        frames: list[Frame] = []
        while True:
            got = self.read_frame()
            assert got is not None, "the client closed before ending its request"
            frames.append(got)
            if got[0] == DATA and got[1] & END_STREAM:
                return frames

    def send(self, data: bytes) -> bool:
        """Send, as far as the client still listens."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        self.sent += data
        return True

    def shut(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def drain(self) -> None:
        """Read until the client closes its end."""
        while not self.eof.is_set():
            self.recv_some()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()


Handler = Callable[[Conn], object]


class Peer:
    """A unix-socket server in a thread: accepts ``connections`` connections in
    turn and runs ``handler`` on each, then reads it until the client closes
    (``eof`` is set then). Handler failures are raised when the block ends."""

    def __init__(self, path: str, handler: Handler, connections: int = 1) -> None:
        self.path = path
        self.handler = handler
        self.connections = connections
        self.eof = threading.Event()
        self.conns: list[Conn] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Peer:
        self._listener.bind(self.path)
        self._listener.listen(16)
        self._listener.settimeout(0.05)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(HARD)
        if self._thread.is_alive():  # wake a server stuck on a silent client
            for conn in list(self.conns):
                try:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._thread.join(HARD)
        self._listener.close()
        for conn in self.conns:
            conn.close()
        if exc_info[0] is None:
            assert not self._thread.is_alive(), "the server thread did not finish"
            if self.error is not None:
                raise self.error

    def _run(self) -> None:
        try:
            for _ in range(self.connections):
                sock = self._accept()
                if sock is None:
                    return
                conn = Conn(sock, self.eof)
                self.conns.append(conn)
                self.eof.clear()
                try:
                    self.handler(conn)
                    if not conn.closed:
                        conn.drain()
                finally:
                    conn.close()
        except BaseException as exc:  # reported by __exit__, in the test's thread
            self.error = exc

    def _accept(self) -> socket.socket | None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            sock.settimeout(HARD)
            return sock
        return None


def scripted(script: bytes | Callable[[], bytes], shut: bool = False) -> Handler:
    """A server that reads the request, then sends ``script`` (and with
    ``shut``, ends its side of the connection)."""

    def handle(conn: Conn) -> None:
        conn.read_request()
        conn.send(script if isinstance(script, bytes) else script())
        if shut:
            conn.shut()

    return handle


# --- an h2 server answering as containerd does --------------------------------


@dataclass
class Reply:
    body: bytes = b""
    status: int = 0
    grpc_message: str = ""
    trailers_only: bool = False
    chunk: int = 1 << 30  # largest DATA payload (before padding)
    pad: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Request:
    stream: int
    headers: dict[str, str]
    body: bytes


class H2Server:
    """One connection served by ``h2``; records what the client did."""

    def __init__(self, replies: list[Reply], ping: bytes | None = None) -> None:
        self.replies = list(replies)
        self.ping = ping
        self.requests: list[Request] = []
        self.settings_acked = False
        self.ping_acks: list[bytes] = []
        self.client_settings: dict[int, int] = {}
        self.connection_window_updates: list[int] = []
        self.window_before_reply: list[int] = []
        self.sent = b""
        self._headers: dict[int, dict[str, str]] = {}
        self._bodies: dict[int, bytearray] = {}

    def handle(self, conn: Conn) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        h2c = h2.connection.H2Connection(config=config)
        h2c.initiate_connection()
        if self.ping is not None:
            h2c.ping(self.ping)
        self._flush(conn, h2c)
        while self._pump(conn, h2c, respond=True):
            pass
        self.sent = bytes(conn.sent)

    def _flush(self, conn: Conn, h2c: h2.connection.H2Connection) -> bool:
        return conn.send(h2c.data_to_send())

    def _pump(self, conn: Conn, h2c: h2.connection.H2Connection, respond: bool) -> bool:
        data = conn.recv_some()
        if not data:
            return False
        for event in h2c.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                assert event.stream_id is not None and event.headers is not None
                self._headers[event.stream_id] = {str(k): str(v) for k, v in event.headers}
                self._bodies[event.stream_id] = bytearray()
            elif isinstance(event, h2.events.DataReceived):
                assert event.stream_id is not None and event.data is not None
                self._bodies[event.stream_id] += event.data
                assert event.flow_controlled_length is not None
                h2c.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                assert respond, "a second request while a reply was being sent"
                assert event.stream_id is not None
                sid = event.stream_id
                self.requests.append(Request(sid, self._headers[sid], bytes(self._bodies[sid])))
                self._flush(conn, h2c)
                if not self._respond(conn, h2c, sid, self.replies.pop(0)):
                    return False
            elif isinstance(event, h2.events.SettingsAcknowledged):
                self.settings_acked = True
            elif isinstance(event, h2.events.PingAckReceived):
                assert event.ping_data is not None
                self.ping_acks.append(event.ping_data)
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                for code, change in event.changed_settings.items():
                    self.client_settings[int(code)] = change.new_value
            elif isinstance(event, h2.events.WindowUpdated):
                if event.stream_id == 0 and event.delta is not None:
                    self.connection_window_updates.append(event.delta)
        return self._flush(conn, h2c)

    def _respond(self, conn: Conn, h2c: h2.connection.H2Connection, sid: int, reply: Reply) -> bool:
        headers = [(":status", "200"), ("content-type", "application/grpc"), *reply.headers]
        trailers = [("grpc-status", str(reply.status))]
        if reply.grpc_message:
            trailers.append(("grpc-message", reply.grpc_message))
        if reply.trailers_only:
            h2c.send_headers(sid, headers + trailers, end_stream=True)
            return self._flush(conn, h2c)
        h2c.send_headers(sid, headers)
        self.window_before_reply.append(h2c.local_flow_control_window(sid))
        message = grpc(reply.body)
        pos = 0
        while pos < len(message):
            overhead = 0 if reply.pad is None else reply.pad + 1
            room = min(h2c.local_flow_control_window(sid), h2c.max_outbound_frame_size)
            room -= overhead
            if room <= 0:
                # The client's windows are shut: wait for its WINDOW_UPDATE,
                # as a real server would (the client's deadline ends this).
                if not self._flush(conn, h2c) or not self._pump(conn, h2c, respond=False):
                    return False
                continue
            size = min(room, reply.chunk, len(message) - pos)
            h2c.send_data(sid, message[pos : pos + size], pad_length=reply.pad)
            pos += size
            if not self._flush(conn, h2c):
                return False
        h2c.send_headers(sid, trailers, end_stream=True)
        return self._flush(conn, h2c)


# --- helpers ------------------------------------------------------------------


def bounded(fn: Callable[[], T], seconds: float = HARD) -> T:
    """Run ``fn`` in a thread; fail the test if it has not ended in ``seconds``."""
    results: list[T] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            results.append(fn())
        except BaseException as exc:  # handed to the test's thread below
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"the call did not end within {seconds}s: it hangs")
    if failures:
        raise failures[0]
    return results[0]


def call(
    path: str,
    *,
    timeout: float = SLOW,
    max_reply: int | None = None,
    method: str = METHOD,
    request: bytes = REQUEST,
) -> bytes:
    """One call on a fresh Channel, under a hard bound."""

    def run() -> bytes:
        kw = {} if max_reply is None else {"max_reply": max_reply}
        with Channel(path, NS, timeout=timeout, **kw) as ch:
            return ch.call(method, request)

    return bounded(run, timeout + HARD)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def no_fd_leak() -> Iterator[None]:
    before = open_fds()
    yield
    assert open_fds() - before == set(), "file descriptors left open"


@pytest.fixture
def path(tmp_path: Path) -> Iterator[str]:
    sock = str(tmp_path / "c.sock")
    if len(sock.encode()) < 100:
        yield sock
        return
    # pytest's temporary directory is too deep for a unix socket's name
    with tempfile.TemporaryDirectory(prefix="sv-bc-") as short:
        yield os.path.join(short, "c.sock")


# --- success through h2 -------------------------------------------------------


def test_one_call_through_h2(path: str) -> None:
    server = H2Server([Reply(body=b"\x0a\x05hello")])
    with Peer(path, server.handle):
        assert call(path) == b"\x0a\x05hello"
    assert [r.stream for r in server.requests] == [1]


def test_an_empty_reply_message(path: str) -> None:
    server = H2Server([Reply(body=b"")])
    with Peer(path, server.handle):
        assert call(path) == b""


def test_two_calls_on_one_channel_use_streams_1_and_3(path: str) -> None:
    # The second reply's headers lean on h2's dynamic table from the first.
    extra = [("x-served-by", "h2-test-server")]
    server = H2Server([Reply(body=b"one", headers=extra), Reply(body=b"two", headers=extra)])
    with Peer(path, server.handle):

        def both() -> tuple[bytes, bytes]:
            with Channel(path, NS, timeout=SLOW) as ch:
                return ch.call(METHOD, b"1"), ch.call("/x.Y/Z", b"2")

        assert bounded(both) == (b"one", b"two")
    assert [(r.stream, r.headers[":path"], r.body) for r in server.requests] == [
        (1, METHOD, grpc(b"1")),
        (3, "/x.Y/Z", grpc(b"2")),
    ]


def test_a_reply_in_many_padded_data_frames(path: str) -> None:
    body = bytes(range(256)) * 20
    server = H2Server([Reply(body=body, chunk=97, pad=13)])
    with Peer(path, server.handle):
        assert call(path) == body
    data = [f for f in frames_of(server.sent) if f[0] == DATA]
    assert len(data) > 50 and all(f[1] & PADDED for f in data)


def test_header_blocks_split_over_continuation_frames(path: str) -> None:
    rng = random.Random(7)
    filler = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(40_000))
    server = H2Server([Reply(body=b"ok", headers=[("x-filler", filler)])])
    with Peer(path, server.handle):
        assert call(path) == b"ok"
    assert any(f[0] == CONTINUATION for f in frames_of(server.sent))


def test_an_error_message_split_over_continuation_frames(path: str) -> None:
    text = "no such container " + "x" * 30_000
    server = H2Server([Reply(status=5, grpc_message=text, trailers_only=True)])
    with Peer(path, server.handle), pytest.raises(errors.NotFound) as caught:
        call(path)
    assert caught.type is errors.NotFound and str(caught.value) == text
    assert any(f[0] == CONTINUATION for f in frames_of(server.sent))


def test_a_reply_larger_than_the_default_windows(path: str) -> None:
    # Had the client not opened its windows, the h2 server would wait for a
    # WINDOW_UPDATE that never comes: the call then fails on its deadline.
    body = random.Random(3).randbytes(300_000)
    server = H2Server([Reply(body=body)])
    with Peer(path, server.handle):
        assert call(path, timeout=SLOW) == body
    assert server.window_before_reply == [2**31 - 1]


@pytest.mark.parametrize(
    ("status", "sent", "expected", "text"),
    [
        (
            5,
            "container%20%22web%22%20not%20found%3A%20%E2%9C%93%",
            errors.NotFound,
            'container "web" not found: \u2713%',
        ),
        (2, "exec: executable file not found in $PATH", errors.CommandNotFound, None),
        (2, "exec format error", errors.CommandNotExecutable, None),
        (2, "something odd", errors.Unknown, None),
        (6, "exists", errors.AlreadyExists, None),
        (9, "wrong state", errors.FailedPrecondition, None),
        (14, "shutting down", errors.Unavailable, None),
        (1, "cancelled", errors.Cancelled, None),
        (4, "too slow", errors.DeadlineExceeded, None),
        (3, "", errors.InvalidArgument, "gRPC status 3"),
        (99, "from the future", errors.Unknown, None),
    ],
)
def test_a_trailers_only_error_reply(
    path: str, status: int, sent: str, expected: type[errors.SupervisorError], text: str | None
) -> None:
    server = H2Server([Reply(status=status, grpc_message=sent, trailers_only=True)])
    with Peer(path, server.handle), pytest.raises(errors.SupervisorError) as caught:
        call(path)
    assert caught.type is expected
    assert str(caught.value) == (sent if text is None else text)


def test_an_error_status_after_data(path: str) -> None:
    server = H2Server([Reply(body=b"partial", status=9, grpc_message="task%20is%20running")])
    with Peer(path, server.handle), pytest.raises(errors.SupervisorError) as caught:
        call(path)
    assert caught.type is errors.FailedPrecondition
    assert str(caught.value) == "task is running"


# --- the request the client sends ---------------------------------------------


@pytest.mark.parametrize("timeout", [SLOW, 500_000.0])
def test_the_request_and_the_connection_upkeep(path: str, timeout: float) -> None:
    server = H2Server([Reply(body=b"r")], ping=b"\x01\x02\x03\x04\xfe\xfd\xfc\xfb")
    with Peer(path, server.handle):
        assert call(path, timeout=timeout) == b"r"
    (request,) = server.requests
    h = request.headers
    assert (h[":method"], h[":scheme"], h[":path"]) == ("POST", "http", METHOD)
    assert h[":authority"]
    assert (h["content-type"], h["te"], h["containerd-namespace"]) == (
        "application/grpc",
        "trailers",
        NS,
    )
    match = re.fullmatch(r"(\d{1,8})([HMSmun])", h["grpc-timeout"])
    assert match is not None, h["grpc-timeout"]
    scale = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
    assert 0 < int(match[1]) * scale[match[2]] <= timeout
    assert request.body == grpc(REQUEST)
    assert server.settings_acked
    assert server.ping_acks == [b"\x01\x02\x03\x04\xfe\xfd\xfc\xfb"]
    assert server.client_settings[h2.settings.SettingCodes.ENABLE_PUSH] == 0
    assert server.client_settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] == 2**31 - 1
    assert sum(server.connection_window_updates) == 2**31 - 1 - 65535


def test_raw_frames_a_client_must_accept(path: str) -> None:
    enc = hpack.Encoder()
    headers = block(enc, [(":status", "200"), ("content-type", "application/grpc")])
    padded_priority = b"\x04" + b"\x00\x00\x00\x00\x10" + headers + b"\x00" * 4
    message = grpc(b"payload")
    script = (
        frame(SETTINGS, 0, 0, struct.pack(">HI", 0x3, 100) + struct.pack(">HI", 0x1, 4096))
        + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1000))
        + frame(PING, 0, 0, b"pingpong")
        + frame(PRIORITY, 0, 1, b"\x00\x00\x00\x00\x10")
        + frame(0xFA, 0x0F, 0, b"an extension frame")
        + frame(HEADERS, END_HEADERS | PADDED | PRIORITY_FLAG, 1, padded_priority)
        + frame(0xFB, 0, 1, b"another on the call's stream")
        + frame(RST_STREAM, 0, 7, struct.pack(">I", 8))  # somebody else's stream
        + frame(DATA, PADDED, 1, b"\x00" + message[:3])  # pad length 0
        + frame(DATA, 0, 1, b"")
        + frame(DATA, PADDED, 1, b"\x02" + message[3:] + b"\x00\x00")
        + frame(SETTINGS, ACK, 0)
        + frame(GOAWAY, 0, 0, struct.pack(">II", 1, 0) + b"draining")  # after our call
        + tail(enc)
    )
    got: list[Frame] = []

    def handle(conn: Conn) -> None:
        conn.read_request()
        conn.send(script)
        while (f := conn.read_frame()) is not None:
            got.append(f)

    with Peer(path, handle):
        assert call(path) == b"payload"
    acks = [(k, fl, s, p) for k, fl, s, p in got if k in (SETTINGS, PING)]
    assert acks == [(SETTINGS, ACK, 0, b""), (PING, ACK, 0, b"pingpong")]


def test_header_blocks_of_other_streams_keep_the_table_right(path: str) -> None:
    # Between the two calls the server sends headers on the finished stream 1
    # that add a table entry; call 3's trailers refer to that entry. Had the
    # client skipped that block, the entry would be another one.
    enc = hpack.Encoder()
    stale = ("grpc-message", "from%20the%20stale%20block")

    def handle(conn: Conn) -> None:
        conn.read_request()
        conn.send(ok_reply(b"first", enc, 1))
        conn.read_request(first=False)
        answer = [(":status", "200"), ("grpc-status", "5"), stale]
        conn.send(
            frame(HEADERS, END_HEADERS | END_STREAM, 1, block(enc, [stale]))
            + frame(DATA, END_STREAM, 1, b"late data")
            + frame(HEADERS, END_HEADERS | END_STREAM, 3, block(enc, answer))
        )

    with Peer(path, handle):

        def both() -> tuple[bytes, errors.SupervisorError]:
            with Channel(path, NS, timeout=SLOW) as ch:
                first = ch.call(METHOD, b"")
                try:
                    ch.call(METHOD, b"")
                except errors.SupervisorError as exc:
                    return first, exc
                raise AssertionError("the second call succeeded")

        first, second = bounded(both)
    assert first == b"first"
    assert type(second) is errors.NotFound and str(second) == "from the stale block"


def test_a_graceful_goaway_ends_the_channel_after_the_call(path: str) -> None:
    def handle(conn: Conn) -> None:
        conn.read_request()
        conn.send(frame(GOAWAY, 0, 0, struct.pack(">II", 1, 0)) + ok_reply(b"last"))

    with Peer(path, handle) as peer:
        with Channel(path, NS, timeout=SLOW) as ch:
            assert bounded(lambda: ch.call(METHOD, b"")) == b"last"
            with pytest.raises(errors.Unavailable) as caught:
                bounded(lambda: ch.call(METHOD, b""))
            assert caught.type is errors.Unavailable and path in str(caught.value)
        assert peer.eof.wait(HARD)


@pytest.mark.parametrize("trailers_only", [True, False], ids=["trailers-only", "after-data"])
def test_a_status_leaves_the_channel_usable(path: str, trailers_only: bool) -> None:
    server = H2Server(
        [Reply(status=5, grpc_message="gone", trailers_only=trailers_only), Reply(body=b"next")]
    )
    with Peer(path, server.handle) as peer:
        with Channel(path, NS, timeout=SLOW) as ch:
            with pytest.raises(errors.SupervisorError) as caught:
                bounded(lambda: ch.call(METHOD, b""))
            assert caught.type is errors.NotFound and str(caught.value) == "gone"
            assert bounded(lambda: ch.call(METHOD, b"")) == b"next"
        assert len(peer.conns) == 1
    assert [r.stream for r in server.requests] == [1, 3]


def test_a_refused_request_changes_nothing(path: str) -> None:
    # The largest request that fits one frame: 16384 bytes with its prefix.
    server = H2Server([Reply(body=b"fits")])
    with Peer(path, server.handle) as peer:
        with Channel(path, NS, timeout=SLOW) as ch:
            with pytest.raises(errors.SupervisorError) as caught:
                bounded(lambda: ch.call(METHOD, b"x" * 16_380))
            assert caught.type is errors.InvalidArgument
            assert peer.conns == []  # nothing was even connected
            assert bounded(lambda: ch.call(METHOD, b"y" * 16_379)) == b"fits"
    assert [(r.stream, r.body) for r in server.requests] == [(1, grpc(b"y" * 16_379))]


@pytest.mark.parametrize(
    "namespace",
    ["ns-\udcff", "ns\r\nx-injected: 1", "ns\x00"],
    ids=["lone-surrogate", "crlf", "nul"],
)
def test_a_namespace_that_cannot_be_sent(path: str, namespace: str) -> None:
    # A lone surrogate is what Python makes of undecodable bytes in argv or
    # the environment; CR, LF and NUL are not allowed in an HTTP/2 field.
    with Peer(path, H2Server([]).handle) as peer:
        with Channel(path, namespace, timeout=SLOW) as ch:
            with pytest.raises(errors.SupervisorError) as caught:
                bounded(lambda: ch.call(METHOD, b""))
        assert peer.conns == []
    assert caught.type is errors.InvalidArgument


# --- hostile and broken peers -------------------------------------------------


def _enc_head() -> tuple[hpack.Encoder, bytes]:
    enc = hpack.Encoder()
    return enc, frame(SETTINGS, 0, 0) + head(enc)


def _after_head(*more: Callable[[hpack.Encoder], bytes]) -> Callable[[], bytes]:
    def build() -> bytes:
        enc, start = _enc_head()
        return start + b"".join(m(enc) for m in more)

    return build


def _trailers_only(headers: list[tuple[str, str]]) -> Callable[[], bytes]:
    return lambda: frame(HEADERS, END_HEADERS | END_STREAM, 1, block(hpack.Encoder(), headers))


def _data(payload: bytes, flags: int = 0, stream: int = 1) -> Callable[[hpack.Encoder], bytes]:
    return lambda enc: frame(DATA, flags, stream, payload)


def _tail(status: str = "0") -> Callable[[hpack.Encoder], bytes]:
    return lambda enc: tail(enc, status)


def _raw(data: bytes) -> Callable[[hpack.Encoder], bytes]:
    return lambda enc: data


def _continued_then(other: bytes) -> Callable[[], bytes]:
    def build() -> bytes:
        headers = block(hpack.Encoder(), [(":status", "200"), ("content-type", "application/grpc")])
        return (
            frame(HEADERS, 0, 1, headers[:3])
            + other
            + frame(CONTINUATION, END_HEADERS, 1, headers[3:])
        )

    return build


def _huge_header_block() -> bytes:
    enc = hpack.Encoder()
    out = frame(HEADERS, 0, 1, block(enc, [(":status", "200")]))
    for _ in range(5):
        out += frame(CONTINUATION, 0, 1, b"\x00\x01a\x7f\xff\x7f" + b"b" * 16_000)
    return out + frame(CONTINUATION, END_HEADERS, 1, b"")


def _big_frame_header() -> bytes:
    return (1 << 20).to_bytes(3, "big") + struct.pack(">BBI", DATA, 0, 1)


@dataclass
class Broken:
    name: str
    script: Callable[[], bytes]
    words: str
    expected: type[errors.SupervisorError] = errors.Unavailable
    names_path: bool = True
    max_reply: int | None = None
    shut: bool = False  # the server ends its side after the script


BROKEN = [
    Broken("not-http2", lambda: b"HTTP/1.1 400 Bad Request\r\n\r\n", "frame"),
    Broken("garbage", lambda: bytes(range(256)) * 4, "broken reply"),
    Broken("1mib-frame", lambda: _big_frame_header() + b"x" * 1000, "1048576-byte frame"),
    Broken(
        "hpack-garbage",
        lambda: frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff\xff\xff"),
        "do not decode",
    ),
    Broken("hpack-index-0", lambda: frame(HEADERS, END_HEADERS, 1, b"\x80"), "do not decode"),
    Broken("hpack-bad-index", lambda: frame(HEADERS, END_HEADERS, 1, b"\xfe"), "do not decode"),
    Broken(
        "hpack-not-utf8",
        lambda: frame(HEADERS, END_HEADERS, 1, b"\x00\x01a\x02\xff\xfe"),
        "do not decode",
    ),
    Broken(
        "hpack-table-too-big",
        lambda: frame(HEADERS, END_HEADERS, 1, b"\x3f\xe1\xff\x03"),
        "do not decode",
    ),
    Broken(
        "status-500", _trailers_only([(":status", "500"), ("grpc-status", "0")]), "HTTP status 500"
    ),
    Broken("no-status", _trailers_only([("content-type", "application/grpc")]), "HTTP status None"),
    Broken("data-before-headers", lambda: frame(DATA, 0, 1, grpc(b"x")), "DATA before HEADERS"),
    Broken(
        "data-end-stream-no-trailers",
        _after_head(_data(grpc(b"x"), END_STREAM)),
        "without a gRPC status",
    ),
    Broken(
        "rst-stream",
        lambda: frame(RST_STREAM, 0, 1, struct.pack(">I", 2)),
        "reset the call (HTTP/2 error 2)",
    ),
    Broken(
        "rst-after-headers",
        _after_head(_raw(frame(RST_STREAM, 0, 1, b"\x00\x00\x00\x08"))),
        "HTTP/2 error 8",
    ),
    Broken(
        "goaway-error",
        lambda: frame(GOAWAY, 0, 0, struct.pack(">II", 1, 2) + b"overloaded"),
        "HTTP/2 error 2: overloaded",
    ),
    Broken(
        "goaway-last-0", lambda: frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)), "HTTP/2 error 0"
    ),
    Broken("goaway-short", lambda: frame(GOAWAY, 0, 0, b"\x00\x00\x00\x01"), "malformed GOAWAY"),
    Broken("compressed", _after_head(_data(grpc(b"x", compressed=1)), _tail()), "compressed"),
    Broken(
        "two-messages",
        _after_head(_data(grpc(b"a") + grpc(b"b")), _tail()),
        "not exactly one message",
    ),
    Broken(
        "prefix-too-long",
        _after_head(_data(grpc(b"abc", size=10)), _tail()),
        "not exactly one message",
    ),
    Broken(
        "prefix-too-short",
        _after_head(_data(grpc(b"abc", size=1)), _tail()),
        "not exactly one message",
    ),
    Broken("no-message", _after_head(_data(b"\x00\x00"), _tail()), "without a message"),
    Broken(
        "ok-trailers-only",
        _trailers_only([(":status", "200"), ("grpc-status", "0")]),
        "without a message",
    ),
    Broken(
        "past-max-reply",
        _after_head(_data(grpc(b"y" * 101)), _tail()),
        "larger than 100 bytes",
        max_reply=100,
    ),
    Broken(
        "past-max-reply-in-pieces",
        _after_head(
            *[_data(b"\x00\x00\x00\x00\x78" if i == 0 else b"z" * 30) for i in range(6)], _tail()
        ),
        "larger than 100 bytes",
        max_reply=100,
    ),
    Broken(
        "data-padding-too-long",
        _after_head(_data(b"\x20abc", PADDED)),
        "padding longer than the frame",
    ),
    Broken("data-padded-empty", _after_head(_data(b"", PADDED)), "without a pad length"),
    Broken(
        "headers-padding-too-long",
        lambda: frame(HEADERS, END_HEADERS | PADDED, 1, b"\x09\x88"),
        "padding longer",
    ),
    Broken(
        "headers-priority-short",
        lambda: frame(HEADERS, END_HEADERS | PRIORITY_FLAG, 1, b"\x00\x00"),
        "padding longer",
    ),
    Broken(
        "continuation-interrupted",
        _continued_then(frame(PING, 0, 0, b"12345678")),
        "header block interrupted",
    ),
    Broken(
        "continuation-other-stream",
        _continued_then(frame(CONTINUATION, END_HEADERS, 3, b"\x88")),
        "header block interrupted",
    ),
    Broken(
        "continuation-alone",
        lambda: frame(CONTINUATION, END_HEADERS, 1, b"\x88"),
        "unexpected frame of type 9",
    ),
    Broken("header-block-over-64k", _huge_header_block, "larger than 64 KiB"),
    Broken(
        "grpc-status-missing",
        _after_head(
            _data(grpc(b"x")), _raw(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x00\x01a\x01b"))
        ),
        "gRPC status",
    ),
    Broken("grpc-status-text", _after_head(_data(grpc(b"x")), _tail("ok")), "gRPC status 'ok'"),
    Broken("grpc-status-negative", _after_head(_data(grpc(b"x")), _tail("-1")), "gRPC status '-1'"),
    Broken("grpc-status-empty", _after_head(_data(grpc(b"x")), _tail("")), "gRPC status ''"),
    Broken(
        "second-header-block-not-final",
        _after_head(_raw(frame(HEADERS, END_HEADERS, 1, b"\x88"))),
        "second header block",
    ),
    Broken(
        "push-promise",
        lambda: frame(PUSH_PROMISE, END_HEADERS, 1, b"\x00\x00\x00\x02\x88"),
        "unexpected frame of type 5",
    ),
    Broken(
        "headers-on-stream-0",
        lambda: frame(HEADERS, END_HEADERS, 0, b"\x88"),
        "HEADERS on stream 0",
    ),
    Broken(
        "headers-on-stream-3",
        lambda: frame(HEADERS, END_HEADERS, 3, b"\x88"),
        "HEADERS on stream 3",
    ),
    Broken("data-on-stream-0", _after_head(_data(grpc(b"x"), stream=0)), "DATA on stream 0"),
    Broken("data-on-stream-5", _after_head(_data(grpc(b"x"), stream=5)), "DATA on stream 5"),
    Broken(
        "settings-malformed", lambda: frame(SETTINGS, 0, 0, b"\x00\x01\x00"), "malformed SETTINGS"
    ),
    Broken("settings-on-a-stream", lambda: frame(SETTINGS, 0, 1), "malformed SETTINGS"),
    Broken("ping-malformed", lambda: frame(PING, 0, 0, b"1234"), "malformed PING"),
    Broken(
        "truncated-reply", lambda: ok_reply(b"complete")[:-3], "closed the connection", shut=True
    ),
    Broken("closes-after-headers", lambda: _enc_head()[1], "closed the connection", shut=True),
]


@pytest.mark.parametrize("case", BROKEN, ids=[b.name for b in BROKEN])
def test_a_broken_peer(path: str, case: Broken) -> None:
    with Peer(path, scripted(case.script, case.shut)) as peer:
        ch = Channel(
            path,
            NS,
            timeout=SLOW,
            **({} if case.max_reply is None else {"max_reply": case.max_reply}),
        )
        try:
            with pytest.raises(errors.SupervisorError) as caught:
                bounded(lambda: ch.call(METHOD, REQUEST))
            # closed by the failure itself, not by the close below
            assert peer.eof.wait(HARD), "the channel kept its socket after the failure"
        finally:
            ch.close()
    assert caught.type is case.expected, caught.value
    assert case.words in str(caught.value)
    if case.names_path:
        assert path in str(caught.value)


@pytest.mark.parametrize(
    "status",
    ["\u00b2", "\u0663", "9" * 5000],
    ids=["superscript-two", "arabic-indic-three", "5000-digits"],
)
def test_a_grpc_status_that_is_not_a_plain_number(path: str, status: str) -> None:
    # str.isdigit() accepts all of these; int() refuses the first and third
    # with a ValueError, which must not leave the call.
    script = _after_head(_data(grpc(b"x")), _tail(status))
    with Peer(path, scripted(script)), pytest.raises(errors.SupervisorError) as caught:
        call(path)
    assert caught.type is errors.Unavailable
    assert "gRPC status" in str(caught.value) and path in str(caught.value)


@pytest.mark.parametrize("name", ["silent", "listening-only"])
def test_a_peer_that_never_answers_hits_the_deadline(path: str, name: str) -> None:
    with contextlib.ExitStack() as stack:
        if name == "silent":
            stack.enter_context(Peer(path, Conn.read_request))
        else:  # connections wait in the backlog, never accepted
            listener = stack.enter_context(socket.socket(socket.AF_UNIX))
            listener.bind(path)
            listener.listen(4)
        with pytest.raises(errors.SupervisorError) as caught:
            call(path, timeout=0.3)
    assert caught.type is errors.DeadlineExceeded
    assert path in str(caught.value) and "0.3s" in str(caught.value)


def test_a_trickling_peer_hits_the_deadline(path: str) -> None:
    def handle(conn: Conn) -> None:
        conn.read_request()
        for byte in ok_reply(b"slowly " * 50):
            if conn.eof.is_set() or not conn.send(bytes((byte,))):
                return
            time.sleep(0.02)

    with Peer(path, handle), pytest.raises(errors.SupervisorError) as caught:
        call(path, timeout=0.4)
    assert caught.type is errors.DeadlineExceeded


def test_an_endless_stream_of_other_frames_hits_the_deadline(path: str) -> None:
    # PINGs the server never reads the answers to: the client's answers fill
    # the socket, and its reading never reaches a reply either way.
    def handle(conn: Conn) -> None:
        conn.read_request()
        flood = frame(PING, 0, 0, b"87654321") * 1000 + frame(WINDOW_UPDATE, 0, 0, b"\0\0\0\1")
        while conn.send(flood):
            pass

    with Peer(path, handle), pytest.raises(errors.SupervisorError) as caught:
        call(path, timeout=0.4)
    assert caught.type is errors.DeadlineExceeded


def test_an_already_spent_deadline(path: str) -> None:
    with Peer(path, scripted(ok_reply(b"late"))), pytest.raises(errors.SupervisorError) as caught:
        call(path, timeout=0)
    assert caught.type is errors.DeadlineExceeded


def test_a_peer_closing_right_after_accept(path: str) -> None:
    with Peer(path, lambda conn: conn.close()), pytest.raises(errors.SupervisorError) as caught:
        call(path)
    assert caught.type is errors.Unavailable and path in str(caught.value)


def test_a_peer_closing_after_reading_the_request(path: str) -> None:
    def handle(conn: Conn) -> None:
        conn.read_request()
        conn.close()

    with Peer(path, handle), pytest.raises(errors.SupervisorError) as caught:
        call(path)
    assert caught.type is errors.Unavailable and path in str(caught.value)


# --- nothing to connect to ----------------------------------------------------


def _stale_socket(p: str) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(p)
    s.close()


@pytest.mark.parametrize(
    ("name", "make", "words"),
    [
        ("missing", lambda p: None, "No such file or directory"),
        ("regular-file", lambda p: Path(p).write_bytes(b"not a socket"), "Connection refused"),
        ("directory", lambda p: os.mkdir(p), "Connection refused"),
        ("stale-socket", _stale_socket, "Connection refused"),
    ],
)
def test_nothing_listening(path: str, name: str, make: Callable[[str], object], words: str) -> None:
    make(path)
    with pytest.raises(errors.SupervisorError) as caught:
        call(path)
    assert caught.type is errors.Unavailable
    assert path in str(caught.value) and words in str(caught.value)


def test_a_path_too_long_for_a_unix_socket(tmp_path: Path) -> None:
    long = str(tmp_path / ("d" * 200) / "containerd.sock")
    with pytest.raises(errors.SupervisorError) as caught:
        call(long)
    assert caught.type is errors.Unavailable and long in str(caught.value)


# --- the socket's lifetime ----------------------------------------------------


def test_exit_closes_the_socket(path: str) -> None:
    server = H2Server([Reply(body=b"x")])
    with Peer(path, server.handle) as peer:
        before = open_fds()
        with Channel(path, NS, timeout=SLOW) as ch:
            assert bounded(lambda: ch.call(METHOD, b"")) == b"x"
            assert not peer.eof.is_set()
            assert len(open_fds() - before) >= 1  # the client's socket (and the server's)
        assert peer.eof.wait(HARD)
    assert open_fds() - before == set()


def test_a_failure_closes_the_socket_and_the_channel(path: str) -> None:
    with Peer(path, scripted(frame(RST_STREAM, 0, 1, b"\0\0\0\2"))) as peer:
        ch = Channel(path, NS, timeout=SLOW)
        with pytest.raises(errors.Unavailable):
            bounded(lambda: ch.call(METHOD, b""))
        assert peer.eof.wait(HARD)
        # the channel does not reconnect behind the caller's back
        with pytest.raises(errors.SupervisorError) as caught:
            bounded(lambda: ch.call(METHOD, b""))
        assert caught.type is errors.Unavailable and path in str(caught.value)
        ch.close()
        ch.close()


# --- seeded fuzz --------------------------------------------------------------

FUZZ_SEED = 20_260_611
FUZZ_RUNS = 1000
# Every so often the server keeps its side open after the bytes, so that a
# truncated reply meets the client's deadline instead of the end of the stream.
FUZZ_HOLD_EVERY = 50


def _record_a_reply(path: str) -> tuple[bytes, bytes]:
    body = bytes(range(200)) * 3
    server = H2Server(
        [Reply(body=body, chunk=150, pad=3, headers=[("x-note", "recorded")])],
        ping=b"fuzzfuzz",
    )
    with Peer(path, server.handle):
        assert call(path) == body
    return body, server.sent


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        how = rng.randrange(8)
        at = rng.randrange(len(out) + 1)
        if how == 0:
            del out[at:]
        elif how == 1 and at < len(out):
            out[at] ^= 1 << rng.randrange(8)
        elif how == 2 and at < len(out):
            out[at] = rng.randrange(256)
        elif how == 3:
            out[at:at] = rng.randbytes(rng.randint(1, 12))
        elif how == 4:
            del out[at : at + rng.randint(1, 40)]
        elif how == 5:
            out[at:at] = out[at : at + rng.randint(1, 60)]
        else:  # a field of a frame header: length, type, flags or stream
            frames = frames_of(bytes(out))
            if not frames:
                continue
            starts, pos = [], 0
            for f in frames:
                starts.append(pos)
                pos += 9 + len(f[3])
            start = rng.choice(starts)
            offset = rng.choice((0, 1, 2, 3, 4, 4, 8))
            out[start + offset] = rng.choice((0, 1, 5, 8, 9, 0x20, 0x25, 0x40, 0xFF))
    return bytes(out)


def test_a_seeded_fuzz_of_a_recorded_reply(path: str) -> None:
    body, recorded = _record_a_reply(path)
    kinds = {f[0] for f in frames_of(recorded)}
    assert {SETTINGS, PING, HEADERS, DATA} <= kinds
    os.unlink(path)

    rng = random.Random(FUZZ_SEED)
    scripts: queue.Queue[tuple[bytes, bool]] = queue.Queue()

    def handle(conn: Conn) -> None:
        script, hold = scripts.get(timeout=HARD)
        conn.read_request()
        conn.send(script)
        if not hold:
            conn.shut()  # the client meets the end of the bytes, not a wait

    outcomes: dict[str, int] = {}
    fds = open_fds()
    with Peer(path, handle, connections=FUZZ_RUNS):
        for run in range(FUZZ_RUNS):
            script = recorded if run == 0 else _mutate(rng, recorded)
            hold = run % FUZZ_HOLD_EVERY == 1
            scripts.put((script, hold))
            try:
                got = call(path, timeout=0.2 if hold else 2.0)
            except errors.SupervisorError as exc:
                outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
            except BaseException as exc:  # a hang (pytest's Failed) included
                pytest.fail(f"run {run}: {exc!r} from the server bytes {script!r}")
            else:
                if run == 0:
                    assert got == body
                outcomes["bytes"] = outcomes.get("bytes", 0) + 1
    assert open_fds() - fds == set()
    assert outcomes.get("bytes", 0) > 1 and outcomes.get("Unavailable", 0) > FUZZ_RUNS // 4


@pytest.mark.parametrize("timeout", [math.inf, math.nan, -1.0, 1e9])
def test_a_timeout_no_socket_can_take_is_refused(timeout: float) -> None:
    with pytest.raises(errors.InvalidArgument, match="timeout"):
        Channel("/nonexistent.sock", "default", timeout=timeout)
