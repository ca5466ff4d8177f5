"""Reading a CRI-format log file back: its lines with stream and time,
across its rotated files, filtered, the last N, and followed as it grows.

The files are opened relative to their directory's fd, never through a
link, and must be regular files (a FIFO would block, a directory or device
is not a log). Records that are not in the format are skipped: the file is
read, never trusted.
"""

from __future__ import annotations

import calendar
import collections
import datetime as _dt
import os
import re
import stat
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import anyio

from .. import errors
from ._log_writer import cri_time

__all__ = ["LogLine", "LogQuery", "check_log_query", "read_log_file"]

Stream = Literal["stdout", "stderr"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_CHUNK = 1 << 20
_POLL = 0.1
_MAX_ROTATED = 1000

MAX_LINE = 1 << 20
"""The longest line given whole: a longer one comes in parts of this size
(so that neither a process's endless line nor a hostile file's endless
partial records can take a reader's memory)."""
_TIME = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


@dataclass(frozen=True)
class LogLine:
    """One line of a process's output, with where and when it came.

    Attributes:
        stream: ``"stdout"`` or ``"stderr"``.
        time_ns: when the library read it, in nanoseconds since the epoch.
        data: the line's bytes, without the newline.
        partial: the line was cut: its stream ended without a newline, or
            it ran past :data:`MAX_LINE` bytes (the rest comes as the next
            lines of the stream).
    """

    stream: Stream
    time_ns: int
    data: bytes
    partial: bool = False
    timestamps: bool = field(default=False, compare=False, repr=False)

    @property
    def text(self) -> str:
        """The line decoded as UTF-8 (undecodable bytes replaced)."""
        return self.data.decode("utf-8", errors="replace")

    @property
    def time(self) -> _dt.datetime:
        """:attr:`time_ns` as an aware UTC datetime (to the microsecond)."""
        seconds, ns = divmod(self.time_ns, 1_000_000_000)
        return _dt.datetime.fromtimestamp(seconds, _dt.UTC).replace(microsecond=ns // 1000)

    def __str__(self) -> str:
        """The text, after its RFC 3339 time if it was read with ``timestamps=True``."""
        if self.timestamps:
            return f"{cri_time(self.time_ns).decode()} {self.text}"
        return self.text


@dataclass(frozen=True)
class LogQuery:
    """Checked arguments of a log read."""

    follow: bool = False
    since: int | None = None
    until: int | None = None
    tail: int | None = None
    timestamps: bool = False
    streams: frozenset[str] = frozenset({"stdout", "stderr"})


TimeArg = _dt.datetime | _dt.timedelta | int | None


def _when(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return int(value.timestamp()) * 1_000_000_000 + value.microsecond * 1000
    if isinstance(value, _dt.timedelta):
        return time.time_ns() - int(value.total_seconds() * 1_000_000_000)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise errors.InvalidArgument(
        f"{name} must be a datetime, a timedelta (that long ago) or nanoseconds "
        f"since the epoch, not {value!r}"
    )


def check_log_query(
    *,
    follow: object = False,
    since: object = None,
    until: object = None,
    tail: object = None,
    timestamps: object = False,
    stdout: object = True,
    stderr: object = True,
) -> LogQuery:
    """The arguments of a log read, checked before anything is opened.

    Raises:
        InvalidArgument: a bad value (a negative or non-int ``tail``, a
            stream choice that is not a bool, no stream at all, ``since``
            after ``until``).
    """
    for name, flag in (
        ("follow", follow),
        ("timestamps", timestamps),
        ("stdout", stdout),
        ("stderr", stderr),
    ):
        if not isinstance(flag, bool):
            raise errors.InvalidArgument(f"{name} must be True or False, not {flag!r}")
    if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int) or tail < 0):
        raise errors.InvalidArgument(f"tail must be a count of lines (an int >= 0), not {tail!r}")
    start, end = _when(since, "since"), _when(until, "until")
    if start is not None and end is not None and start > end:
        raise errors.InvalidArgument("since is after until")
    streams = frozenset(s for s, on in (("stdout", stdout), ("stderr", stderr)) if on)
    if not streams:
        raise errors.InvalidArgument("stdout and stderr are both False: no stream to read")
    return LogQuery(
        follow=bool(follow),
        since=start,
        until=end,
        tail=tail if isinstance(tail, int) else None,
        timestamps=bool(timestamps),
        streams=streams,
    )


# -- parsing ----------------------------------------------------------------------


class _Parser:
    """CRI records to lines: P records joined with what follows on their
    stream; the time of a line is that of its first record."""

    def __init__(self, timestamps: bool) -> None:
        self._timestamps = timestamps
        self._pending: dict[Stream, tuple[int, list[bytes]]] = {}
        self._sizes: dict[Stream, int] = {}
        self._second = b""
        self._epoch = 0

    def _time(self, text: bytes) -> int | None:
        match = _TIME.fullmatch(text)
        if match is None:
            return None
        second, fraction, zone = match.groups()
        if second != self._second:
            try:
                parsed = time.strptime(second.decode(), "%Y-%m-%dT%H:%M:%S")
            except ValueError:
                return None
            self._second, self._epoch = second, calendar.timegm(parsed)
        epoch = self._epoch
        if zone != b"Z":
            sign = 1 if zone[:1] == b"+" else -1
            epoch -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
        ns = int(fraction.ljust(9, b"0")) if fraction else 0
        return epoch * 1_000_000_000 + ns

    def feed(self, record: bytes) -> LogLine | None:
        parts = record.split(b" ", 3)
        if len(parts) < 3:
            return None
        stamp, stream_b, tag = parts[0], parts[1], parts[2]
        data = parts[3] if len(parts) == 4 else b""
        if stream_b == b"stdout":
            stream: Stream = "stdout"
        elif stream_b == b"stderr":
            stream = "stderr"
        else:
            return None
        if tag not in (b"F", b"P"):
            return None
        ns = self._time(stamp)
        if ns is None:
            return None
        pending = self._pending.get(stream)
        if tag == b"P":
            if pending is None:
                pending = self._pending[stream] = (ns, [])
            pending[1].append(data)
            self._sizes[stream] = size = self._sizes.get(stream, 0) + len(data)
            if size < MAX_LINE:
                return None
            self._sizes[stream] = 0
            del self._pending[stream]
            joined = b"".join(pending[1])
            return LogLine(stream, pending[0], joined, partial=True, timestamps=self._timestamps)
        if pending is not None:
            del self._pending[stream]
            self._sizes[stream] = 0
            ns, data = pending[0], b"".join([*pending[1], data])
        return LogLine(stream, ns, data, timestamps=self._timestamps)

    def rest(self) -> list[LogLine]:
        """Lines whose end never came, oldest first."""
        lines = [
            LogLine(stream, ns, b"".join(parts), partial=True, timestamps=self._timestamps)
            for stream, (ns, parts) in self._pending.items()
        ]
        self._pending.clear()
        self._sizes.clear()
        return sorted(lines, key=lambda line: line.time_ns)


# -- files ------------------------------------------------------------------------


def _open_dir(path: Path) -> int:
    try:
        return os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    except OSError as exc:
        raise errors.from_os_error(exc, f"cannot open {path.parent}") from exc


def _open_file(name: str, dir_fd: int, path: Path) -> int:
    flags = os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW | _CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        raise errors.from_os_error(exc, f"cannot open the log file {path.parent / name}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise errors.InvalidArgument(f"the log file {path.parent / name} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _rotated(name: str, dir_fd: int) -> list[str]:
    """The rotated files of ``name`` there are, oldest first."""
    numbers = []
    prefix = name + "."
    for entry in os.listdir(dir_fd):
        if entry.startswith(prefix) and entry[len(prefix) :].isdigit():
            number = int(entry[len(prefix) :])
            if 0 < number <= _MAX_ROTATED:
                numbers.append(number)
    return [f"{name}.{n}" for n in sorted(numbers, reverse=True)]


def _identity(name: str, dir_fd: int) -> tuple[int, int] | None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class _Reader:
    """The files of one log, read in order, records out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self.dir_fd = _open_dir(path)
        self.fd = -1
        self.pending = b""
        self.skipping = False

    def close(self) -> None:
        for attr in ("fd", "dir_fd"):
            fd = getattr(self, attr)
            setattr(self, attr, -1)
            if fd >= 0:
                os.close(fd)

    def read_records(self) -> list[bytes]:
        """Whole records appended to the open file since the last call
        (empty only at the end of the file; at most about 16 chunks' worth)."""
        if os.fstat(self.fd).st_size < os.lseek(self.fd, 0, os.SEEK_CUR):
            os.lseek(self.fd, 0, os.SEEK_SET)  # truncated (max_files=1): from the top
            self.pending, self.skipping = b"", False
        records: list[bytes] = []
        chunks = 0
        while not records or chunks < 16:
            data = os.read(self.fd, _CHUNK)
            if not data:
                break
            chunks += 1
            *new, self.pending = (self.pending + data).split(b"\n")
            if self.skipping and new:
                new, self.skipping = new[1:], False  # the end of an overlong record
            records += new
            if len(self.pending) > MAX_LINE + 4096:
                # No record of ours is that long: whatever it is, it is
                # skipped rather than held in memory until a newline comes.
                self.pending, self.skipping = b"", True
        return records

    def switch(self, name: str) -> None:
        fd = _open_file(name, self.dir_fd, self.path)
        old, self.fd = self.fd, fd
        self.pending, self.skipping = b"", False
        if old >= 0:
            os.close(old)

    def newer(self) -> list[str]:
        """The files written after ours (it was rotated away), oldest first;
        empty while ours is still the current file."""
        st = os.fstat(self.fd)
        ours = (st.st_dev, st.st_ino)
        if _identity(self.name, self.dir_fd) in (ours, None):
            return []
        names = [*_rotated(self.name, self.dir_fd), self.name]
        for i, candidate in enumerate(names):
            if _identity(candidate, self.dir_fd) == ours:
                return names[i + 1 :]
        return [self.name]


def _readable(query: LogQuery, line: LogLine) -> bool:
    if line.stream not in query.streams:
        return False
    if query.since is not None and line.time_ns < query.since:
        return False
    return query.until is None or line.time_ns < query.until


Done = Callable[[], Awaitable[bool]]


async def read_log_file(
    path: Path, query: LogQuery, done: Done | None = None
) -> AsyncGenerator[LogLine, None]:
    """The lines of the CRI log at ``path`` (and its rotated files) that
    ``query`` asks for. Following, it ends once ``await done()`` is true
    (the writer finished) and the file holds nothing more; ``done`` also
    paces the looks at the file (without it: forever, every 0.1 s)."""
    reader = await anyio.to_thread.run_sync(_Reader, path)
    parser = _Parser(query.timestamps)
    try:
        names = await anyio.to_thread.run_sync(
            lambda: [*_rotated(reader.name, reader.dir_fd), reader.name]
        )
        tail: collections.deque[LogLine] | None = (
            collections.deque(maxlen=query.tail) if query.tail is not None else None
        )
        for name in names:
            try:
                await anyio.to_thread.run_sync(reader.switch, name)
            except errors.NotFound:
                if name != reader.name:
                    continue  # rotated away while we looked
                raise
            while records := await anyio.to_thread.run_sync(reader.read_records):
                for record in records:
                    line = parser.feed(record)
                    if line is None or not _readable(query, line):
                        continue
                    if tail is not None:
                        tail.append(line)
                    else:
                        yield line
        if not query.follow:
            for line in parser.rest():
                if _readable(query, line) and tail is not None:
                    tail.append(line)
                elif _readable(query, line):
                    yield line
        for line in tail or ():
            yield line
        if not query.follow:
            return
        async for line in _follow(reader, parser, query, done):
            yield line
    finally:
        reader.close()


async def _follow(
    reader: _Reader, parser: _Parser, query: LogQuery, done: Done | None
) -> AsyncGenerator[LogLine, None]:
    while True:
        async for line in _available(reader, parser, query):
            yield line
        if done is None:
            await anyio.sleep(_POLL)
        elif await done():
            # The writer had finished before this last look: what it wrote
            # is all in the file now.
            async for line in _available(reader, parser, query):
                yield line
            for line in parser.rest():
                if _readable(query, line):
                    yield line
            return


async def _available(
    reader: _Reader, parser: _Parser, query: LogQuery
) -> AsyncGenerator[LogLine, None]:
    """The lines appended since the last look, following the file's
    rotations."""
    while True:
        records = await anyio.to_thread.run_sync(reader.read_records)
        if not records:
            newer = await anyio.to_thread.run_sync(reader.newer)
            if not newer:
                return
            await anyio.to_thread.run_sync(reader.switch, newer[0])
            continue
        for record in records:
            line = parser.feed(record)
            if line is not None and _readable(query, line):
                yield line
