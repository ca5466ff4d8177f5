"""A process's output as it goes into its log file: the format and rotation.

Both writers use this module: the client's pump imports it, and the
shim-run logger runs its very source (it is copied at the top of the
logger's script), so the two can never write different files. Hence the
rules that bind it: the standard library only, no relative imports, nothing
run at import time.

Formats:

* ``raw``: the bytes as the process wrote them, both streams in one file.
* ``cri``: the CRI container log format that kubelet and ``crictl logs``
  read, one record per line of output::

      2026-12-07T04:09:40.123456789Z stdout F hello

  the time the writer read the bytes (UTC, nanoseconds), the stream, ``F``
  for a line the process ended with a newline and ``P`` for a part of a
  line (the output read so far had no newline yet: the rest follows in
  later records of the same stream), then the bytes without their newline.
  A record is written as soon as its bytes are read (nothing waits in
  memory for a newline), so nothing read is ever lost with the writer.

Rotation (``max_size`` > 0): before a record would take the file past
``max_size`` bytes, the file is renamed ``<name>.1`` (``.1`` to ``.2`` and
so on, the oldest beyond ``max_files - 1`` removed) and a new file begun,
as docker's json-file driver does. Every path is taken relative to the
directory's fd, never through a link.
"""

from __future__ import annotations

import os
import stat
import time

RAW = "raw"
CRI = "cri"
FORMATS = (RAW, CRI)

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def cri_time(ns: int) -> bytes:
    """``ns`` since the epoch as RFC 3339 with nine fraction digits, UTC."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z").encode()


def options_text(fmt: str, max_size: int, max_files: int) -> bytes:
    """The options as a log record's third line keeps them."""
    return f"{fmt} {max_size} {max_files}".encode()


def parse_options(text: bytes) -> tuple[str, int, int]:
    """A record's options line back; ``raw`` without rotation for a line
    that is missing or not one this module wrote."""
    parts = text.split()
    if len(parts) == 3 and parts[0].decode("ascii", "replace") in FORMATS:
        fmt = parts[0].decode()
        if parts[1].isdigit() and parts[2].isdigit():
            return fmt, int(parts[1]), max(1, int(parts[2]))
    return RAW, 0, 1


def _open_append(name: str, dir_fd: int) -> int:
    # Non-blocking: a FIFO planted under the name would otherwise hold the
    # writer; anything but a regular file is refused by the caller's check.
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | _NOFOLLOW | _CLOEXEC
    return os.open(name, flags, 0o644, dir_fd=dir_fd)


class FormattedLog:
    """Writes one process's output into its log file, formatted and rotated.

    ``fd`` is the open file (appending), ``dir_fd`` its directory, ``name``
    its name there (both only needed with rotation). Write failures (a full
    disk) drop the bytes and are counted: a container never blocks on the
    log's disk. Owns ``fd`` (closed by :meth:`close`), not ``dir_fd``.
    """

    def __init__(
        self,
        fd: int,
        *,
        fmt: str = RAW,
        max_size: int = 0,
        max_files: int = 1,
        dir_fd: int = -1,
        name: str = "",
    ) -> None:
        self.fd = fd
        self.fmt = fmt
        self.max_size = max_size if dir_fd >= 0 and name else 0
        self.max_files = max(1, max_files)
        self.dir_fd = dir_fd
        self.name = name
        self.dropped = 0
        self.failed: OSError | None = None
        self._last = 0
        try:
            self._size = os.fstat(fd).st_size if fd >= 0 else 0
        except OSError:
            self._size = 0

    def write(self, stream: str, data: bytes) -> None:
        """Append what was just read from ``stream`` ("stdout"/"stderr")."""
        if not data:
            return
        if self.fmt != CRI:
            self._append(data)
            return
        # Never earlier than the record before: a wall clock stepped back
        # must not make the file's times go backwards.
        now = max(time.time_ns(), self._last)
        self._last = now
        prefix = cri_time(now) + b" " + stream.encode() + b" "
        lines = data.split(b"\n")
        tail = lines.pop()
        records = [prefix + b"F " + line + b"\n" for line in lines]
        if tail:
            records.append(prefix + b"P " + tail + b"\n")
        for record in records:
            self._append(record)

    def _append(self, data: bytes) -> None:
        if self.max_size and self._size and self._size + len(data) > self.max_size:
            self._rotate()
        view = memoryview(data)
        while view:
            if self.fd < 0:
                self.dropped += len(view)
                return
            try:
                written = os.write(self.fd, view)
            except InterruptedError:
                continue
            except OSError as exc:
                self.dropped += len(view)
                if self.failed is None:
                    self.failed = exc
                return
            self._size += written
            view = view[written:]

    def _rotate(self) -> None:
        # A rotation that fails partway (a full disk, something planted under
        # the name) keeps appending to the file already open: output is kept
        # over the size bound.
        name, d = self.name, self.dir_fd
        try:
            if self.max_files <= 1:
                os.ftruncate(self.fd, 0)
                self._size = 0
                return
            for i in range(self.max_files - 1, 0, -1):
                older = name if i == 1 else f"{name}.{i - 1}"
                try:
                    os.rename(older, f"{name}.{i}", src_dir_fd=d, dst_dir_fd=d)
                except FileNotFoundError:
                    continue
            fd = _open_append(name, d)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise OSError(f"{name} is not a regular file")
        except OSError as exc:
            if self.failed is None:
                self.failed = exc
            return
        old, self.fd = self.fd, fd
        os.close(old)
        self._size = 0

    def close(self) -> None:
        """Close the file (idempotent)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
