"""gRPC unary calls over containerd's unix socket: blocking, one connection,
one call at a time, no grpclib.

Just enough HTTP/2 (RFC 9113) for that: the client preface, our SETTINGS
(no push, the largest stream window) and a connection window as large, so
containerd never waits on us for a reply up to the size cap; SETTINGS and
PING acknowledged; header blocks (CONTINUATION included) decoded with
``hpack`` in order, whichever stream they belong to, so the decoder's table
stays right; GOAWAY, RST_STREAM, a frame larger than we allow, a reply past
the cap or bytes that are not HTTP/2 end the call as
:class:`~supervisor.errors.Unavailable`. One deadline bounds everything,
connecting included.
"""

from __future__ import annotations

import socket
import struct
import time
from types import TracebackType

import hpack

from ... import errors
from .._status import error_for

__all__ = ["Channel"]

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

_DATA = 0x0
_HEADERS = 0x1
_RST_STREAM = 0x3
_SETTINGS = 0x4
_PUSH_PROMISE = 0x5
_PING = 0x6
_GOAWAY = 0x7
_CONTINUATION = 0x9

_END_STREAM = 0x1
_ACK = 0x1
_END_HEADERS = 0x4
_PADDED = 0x8
_PRIORITY = 0x20

_SETTINGS_ENABLE_PUSH = 0x2
_SETTINGS_INITIAL_WINDOW_SIZE = 0x4
_MAX_WINDOW = 2**31 - 1
_DEFAULT_WINDOW = 65535
# We never raise SETTINGS_MAX_FRAME_SIZE, so no frame may be larger.
_MAX_FRAME = 16384
_MAX_HEADER_BLOCK = 64 * 1024
# Longer than any call should take, short enough for socket timeouts.
_MAX_TIMEOUT = 1e8
# containerd's own Go client accepts replies up to this size.
DEFAULT_MAX_REPLY = 16 * 1024 * 1024


class _Violation(Exception):
    """The peer broke HTTP/2 or gRPC framing."""


class _TooLarge(Exception):
    """The reply passed the cap."""


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream) + payload


def _hpack_int(value: int, prefix_bits: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((value,))
    out = bytearray((limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _header_block(headers: list[tuple[str, str]]) -> bytes:
    # Literals without indexing and without Huffman: nothing for containerd's
    # decoder to remember, and no table size for us to agree on.
    out = bytearray()
    for name, value in headers:
        try:
            n, v = name.encode(), value.encode()
        except UnicodeEncodeError:
            raise errors.InvalidArgument(f"{name} {value!r} cannot be sent") from None
        if any(c in v for c in b"\r\n\x00"):
            # HTTP/2 forbids them in a field value; containerd would reset
            # the stream instead of saying what was wrong.
            raise errors.InvalidArgument(f"{name} {value!r} cannot be sent")
        out += b"\x00" + _hpack_int(len(n), 7) + n + _hpack_int(len(v), 7) + v
    return bytes(out)


def _grpc_timeout(seconds: float) -> str:
    millis = max(1, int(seconds * 1000))
    return f"{millis}m" if millis < 10**8 else f"{min(int(seconds), 10**8 - 1)}S"


def _unpercent(text: str) -> str:
    # grpc-message is percent-encoded UTF-8.
    if "%" not in text:
        return text
    raw, out, i = text.encode(), bytearray(), 0
    while i < len(raw):
        if raw[i] == 0x25 and i + 2 < len(raw) and _is_hex(raw[i + 1 : i + 3]):
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode(errors="replace")


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


def _strip_padding(flags: int, payload: bytes, priority: bool) -> bytes:
    start, end = 0, len(payload)
    if flags & _PADDED:
        if not payload:
            raise _Violation("padded frame without a pad length")
        start, end = 1, end - payload[0]
    if priority and flags & _PRIORITY:
        start += 5
    if end < start:
        raise _Violation("padding longer than the frame")
    return payload[start:end]


class _Reply:
    """One call's stream: headers, message bytes, trailers."""

    def __init__(self, stream: int, max_reply: int) -> None:
        self.stream = stream
        self.max_reply = max_reply
        self.headers: dict[str, str] | None = None
        self.trailers: dict[str, str] | None = None
        self.body = bytearray()

    def on_headers(self, block: list[tuple[str, str]], end_stream: bool) -> None:
        fields = dict(block)
        if self.headers is None:
            self.headers = fields
            status = fields.get(":status")
            if status != "200":
                raise _Violation(f"HTTP status {status}")
            if end_stream:  # a trailers-only reply: the status is in these
                self.trailers = fields
        elif not end_stream:
            raise _Violation("a second header block that does not end the stream")
        else:
            self.trailers = fields

    def on_data(self, data: bytes, end_stream: bool) -> None:
        if self.headers is None:
            raise _Violation("DATA before HEADERS")
        if len(self.body) + len(data) > self.max_reply + 5:
            raise _TooLarge(f"a reply larger than {self.max_reply} bytes")
        self.body += data
        if end_stream:
            raise _Violation("the stream ended without a gRPC status")

    def outcome(self) -> bytes | errors.SupervisorError:
        """The reply's message, or the error its gRPC status stands for."""
        assert self.trailers is not None
        code_text = self.trailers.get("grpc-status", "")
        if not (code_text.isascii() and code_text.isdigit() and len(code_text) <= 10):
            raise _Violation(f"gRPC status {code_text[:20]!r}")
        code = int(code_text)
        if code != 0:
            message = _unpercent(self.trailers.get("grpc-message", ""))
            return error_for(code, message)(message or f"gRPC status {code}")
        body = self.body
        if len(body) < 5:
            raise _Violation("a reply without a message")
        compressed, size = body[0], int.from_bytes(body[1:5], "big")
        if compressed:
            raise _Violation("a compressed message (none was offered)")
        if size != len(body) - 5:
            raise _Violation("a reply that is not exactly one message")
        return bytes(body[5:])


class Channel:
    """A blocking gRPC connection to containerd, for short-lived commands.

    ``with Channel(address, namespace, timeout=5.0) as ch: ch.call(path, b"")``.
    ``timeout`` bounds everything from connecting to the last reply; failures
    are :mod:`supervisor.errors` types, as the grpclib transport raises them.
    """

    def __init__(
        self,
        address: str,
        namespace: str,
        *,
        timeout: float,
        max_reply: int = DEFAULT_MAX_REPLY,
    ) -> None:
        if not 0 <= timeout < _MAX_TIMEOUT:  # NaN fails both
            raise errors.InvalidArgument(f"timeout {timeout!r}: want 0 to {_MAX_TIMEOUT:.0f}s")
        self.address = address
        self.namespace = namespace
        self.timeout = timeout
        self.max_reply = max_reply
        self._deadline = time.monotonic() + timeout
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._decoder = hpack.Decoder()
        self._next_stream = 1
        self._goaway = False

    def __enter__(self) -> Channel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def call(self, method: str, request: bytes) -> bytes:
        """One unary call: ``method`` as ``/package.Service/Method``, the
        serialized request; the serialized reply.

        A status containerd answers with (NotFound, ...) leaves the
        connection usable; any other failure closes it.
        """
        headers, message = self._encode(method, request)
        try:
            outcome = self._exchange(headers, message).outcome()
        except errors.SupervisorError:
            self.close()
            raise
        except _Violation as exc:
            self.close()
            raise errors.Unavailable(
                f"containerd at {self.address} answered with a broken reply: {exc}"
            ) from None
        except _TooLarge as exc:
            self.close()
            raise errors.Unavailable(f"containerd at {self.address} sent {exc}") from None
        except hpack.HPACKError as exc:
            self.close()
            raise errors.Unavailable(
                f"containerd at {self.address} sent headers that do not decode: {exc}"
            ) from None
        except TimeoutError:
            self.close()
            raise errors.DeadlineExceeded(
                f"containerd at {self.address} did not answer within {self.timeout}s"
            ) from None
        except OSError as exc:
            self.close()
            raise errors.Unavailable(
                f"cannot reach containerd at {self.address}: {exc.strerror or exc}"
            ) from None
        if isinstance(outcome, errors.SupervisorError):
            raise outcome
        return outcome

    def _remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        if self._next_stream > 1:
            raise errors.Unavailable(f"the connection to containerd at {self.address} is closed")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self._remaining())
            sock.connect(self.address)
            settings = struct.pack(">HI", _SETTINGS_ENABLE_PUSH, 0) + struct.pack(
                ">HI", _SETTINGS_INITIAL_WINDOW_SIZE, _MAX_WINDOW
            )
            sock.sendall(
                _PREFACE
                + _frame(_SETTINGS, 0, 0, settings)
                + _frame(0x8, 0, 0, struct.pack(">I", _MAX_WINDOW - _DEFAULT_WINDOW))
            )
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        return sock

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        self._sock.settimeout(self._remaining())
        self._sock.sendall(data)

    def _read(self, size: int) -> bytes:
        assert self._sock is not None
        while len(self._buffer) < size:
            self._sock.settimeout(self._remaining())
            chunk = self._sock.recv(max(65536, size - len(self._buffer)))
            if not chunk:
                raise errors.Unavailable(
                    f"containerd at {self.address} closed the connection before answering"
                )
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _frame(self) -> tuple[int, int, int, bytes]:
        head = self._read(9)
        length = int.from_bytes(head[:3], "big")
        kind, flags, stream = head[3], head[4], int.from_bytes(head[5:], "big") & 0x7FFFFFFF
        if length > _MAX_FRAME:
            raise _Violation(f"a {length}-byte frame (at most {_MAX_FRAME} allowed)")
        return kind, flags, stream, self._read(length)

    def _header_block(self, stream: int, flags: int, payload: bytes) -> list[tuple[str, str]]:
        block = bytearray(_strip_padding(flags, payload, priority=True))
        while not flags & _END_HEADERS:
            kind, flags, more_stream, more = self._frame()
            if kind != _CONTINUATION or more_stream != stream:
                raise _Violation("a header block interrupted")
            block += more
            if len(block) > _MAX_HEADER_BLOCK:
                raise _Violation("a header block larger than 64 KiB")
        return [(str(k), str(v)) for k, v in self._decoder.decode(bytes(block))]

    def _encode(self, method: str, request: bytes) -> tuple[bytes, bytes]:
        # Checked before anything is sent: a refused request changes nothing.
        left = max(self._deadline - time.monotonic(), 0.001)
        fields = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", method),
            (":authority", "containerd"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-timeout", _grpc_timeout(left)),
            ("containerd-namespace", self.namespace),
        ]
        headers = _header_block(fields)
        message = b"\x00" + struct.pack(">I", len(request)) + request
        if len(headers) > _MAX_FRAME or len(message) > _MAX_FRAME:
            raise errors.InvalidArgument("a request too large for one frame")
        return headers, message

    def _exchange(self, headers: bytes, message: bytes) -> _Reply:
        if self._goaway:
            # containerd said it takes no new streams on this connection.
            raise errors.Unavailable(f"containerd at {self.address} is closing the connection")
        self._connect()
        stream = self._next_stream
        self._next_stream += 2
        self._send(
            _frame(_HEADERS, _END_HEADERS, stream, headers)
            + _frame(_DATA, _END_STREAM, stream, message)
        )
        reply = _Reply(stream, self.max_reply)
        while reply.trailers is None:
            self._dispatch(reply, *self._frame())
        return reply

    def _dispatch(self, reply: _Reply, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if kind == _HEADERS:
            block = self._header_block(stream, flags, payload)
            if stream == reply.stream:
                reply.on_headers(block, bool(flags & _END_STREAM))
            elif stream == 0 or stream > reply.stream:
                raise _Violation(f"HEADERS on stream {stream}")
        elif kind == _DATA:
            if stream == reply.stream:
                data = _strip_padding(flags, payload, priority=False)
                reply.on_data(data, bool(flags & _END_STREAM))
            elif stream == 0 or stream > reply.stream:
                raise _Violation(f"DATA on stream {stream}")
        elif kind == _SETTINGS:
            if stream != 0 or len(payload) % 6:
                raise _Violation("a malformed SETTINGS frame")
            if not flags & _ACK:
                self._send(_frame(_SETTINGS, _ACK, 0))
        elif kind == _PING:
            if stream != 0 or len(payload) != 8:
                raise _Violation("a malformed PING frame")
            if not flags & _ACK:
                self._send(_frame(_PING, _ACK, 0, payload))
        elif kind == _RST_STREAM:
            if stream == reply.stream:
                code = int.from_bytes(payload[:4], "big")
                raise errors.Unavailable(
                    f"containerd at {self.address} reset the call (HTTP/2 error {code})"
                )
        elif kind == _GOAWAY:
            if len(payload) < 8:
                raise _Violation("a malformed GOAWAY frame")
            last, code = struct.unpack(">II", payload[:8])
            self._goaway = True
            if code != 0 or (last & 0x7FFFFFFF) < reply.stream:
                detail = payload[8:200].decode(errors="replace")
                raise errors.Unavailable(
                    f"containerd at {self.address} closed the connection "
                    f"(HTTP/2 error {code}{': ' + detail if detail else ''})"
                )
        elif kind == _PUSH_PROMISE or kind == _CONTINUATION:
            raise _Violation(f"an unexpected frame of type {kind}")
        # WINDOW_UPDATE, PRIORITY and unknown types need nothing from us.
