"""The protobuf wire format, by hand: what the blocking reader reads and
writes, and what :mod:`._message_view` reads the metrics from.

Reading takes only what those messages use: varints, fixed-width numbers and
length-delimited fields. Anything else (groups, a length past the end, a
varint longer than ten bytes) is a :class:`MalformedReply`; unknown fields are
skipped as protobuf requires.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

__all__ = [
    "MalformedReply",
    "fields",
    "int64",
    "len_field",
    "number",
    "raw",
    "text",
    "text_field",
    "timestamp",
    "varints",
]

VARINT = 0
I64 = 1
LEN = 2
I32 = 5

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MalformedReply(ValueError):
    """Bytes that are not the message they should be."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    end = min(len(data), pos + 10)
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value >= 1 << 64:
                raise MalformedReply("varint wider than 64 bits")
            return value, pos
        shift += 7
    if pos < len(data):
        raise MalformedReply("varint longer than ten bytes")
    raise MalformedReply("truncated varint")


def fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Each field of a message: its number, wire type and value (an int for
    numbers, the bytes for length-delimited fields)."""
    pos, end = 0, len(data)
    while pos < end:
        # Keys, small numbers and short lengths fit one byte: read those inline.
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _varint(data, pos)
        number, kind = key >> 3, key & 7
        if number == 0:
            raise MalformedReply("field number 0")
        value: int | bytes
        if kind == VARINT or kind == LEN:
            if pos < end and data[pos] < 0x80:
                n, pos = data[pos], pos + 1
            else:
                n, pos = _varint(data, pos)
            if kind == VARINT:
                value = n
            elif n > end - pos:
                raise MalformedReply("length past the end of the message")
            else:
                value, pos = data[pos : pos + n], pos + n
        elif kind == I64 or kind == I32:
            width = 8 if kind == I64 else 4
            if width > end - pos:
                raise MalformedReply("truncated fixed-width field")
            value, pos = int.from_bytes(data[pos : pos + width], "little"), pos + width
        else:
            raise MalformedReply(f"wire type {kind}")
        yield number, kind, value


def varints(data: bytes) -> Iterator[int]:
    """The values of a packed repeated varint field."""
    pos = 0
    while pos < len(data):
        value, pos = _varint(data, pos)
        yield value


def text(value: int | bytes) -> str:
    """A string field's value (protobuf strings are UTF-8)."""
    if not isinstance(value, bytes):
        raise MalformedReply("a string field sent as a number")
    try:
        return value.decode()
    except UnicodeDecodeError as exc:
        raise MalformedReply(f"a string field that is not UTF-8: {exc}") from None


def raw(value: int | bytes) -> bytes:
    """A bytes or message field's value."""
    if not isinstance(value, bytes):
        raise MalformedReply("a message field sent as a number")
    return value


def number(value: int | bytes) -> int:
    """A varint or fixed-width field's value, unsigned."""
    if isinstance(value, bytes):
        raise MalformedReply("a number field sent as bytes")
    return value


def int64(value: int | bytes) -> int:
    """A signed 64-bit field (two's complement on the wire)."""
    n = number(value)
    return n - (1 << 64) if n >= 1 << 63 else n


def timestamp(value: int | bytes) -> datetime:
    """A ``google.protobuf.Timestamp`` (UTC, microseconds kept)."""
    seconds = nanos = 0
    for num, _, field in fields(raw(value)):
        if num == 1:
            seconds = int64(field)
        elif num == 2:
            nanos = int64(field)
    try:
        return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise MalformedReply(f"a timestamp out of range: {seconds}s {nanos}ns") from None


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def len_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (a string's UTF-8, a message's bytes)."""
    return _varint_bytes(number << 3 | LEN) + _varint_bytes(len(payload)) + payload


def text_field(number: int, value: str) -> bytes:
    """A string field; nothing for the empty string (proto3's default)."""
    return len_field(number, value.encode()) if value else b""
