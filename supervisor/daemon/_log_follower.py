"""containerd's own log lines, followed from its log file and forwarded into
logging (``supervisor.containerd``) with their level.

containerd logs through logrus' text formatter when its stderr is not a
terminal: ``time="…" level=info msg="…" key=value key2="quoted value"``, a
quoted value written the way Go's ``strconv.Quote`` writes it.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from .. import errors
from .._log import get_logger
from ._chatter import is_chatter
from ._files import open_regular

__all__ = ["LogFollower", "forward_line", "parse_logfmt", "unquote"]

_containerd_log = get_logger("containerd")
_log = get_logger("daemon")
# Lines kept for an error message when containerd fails to start.
_LOG_TAIL = 20
# The log file is emptied once it has been read past this size.
_LOG_ROTATE = 8 << 20

# key=value where the value is either a double-quoted string with backslash
# escapes, or a bare run of non-space characters (possibly empty).
_PAIR = re.compile(r'([A-Za-z_][\w.\-]*)=("(?:[^"\\]|\\.)*"|\S*)')
# Go's escapes: one character, \xHH (a byte), \uHHHH, \UHHHHHHHH, \ooo (a byte).
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)", re.S)
_SIMPLE = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    '"': '"',
    "\\": "\\",
    "'": "'",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}
# logrus level -> logging method; anything unknown is kept at info.
_LEVELS = {
    "trace": "debug",
    "debug": "debug",
    "info": "info",
    "warning": "warning",
    "warn": "warning",
    "error": "error",
    "fatal": "critical",
    "panic": "critical",
}

# Keys our own records already uses for something else.
_RESERVED = {"event", "level", "logger", "timestamp", "exc_info"}


def unquote(body: str) -> str:
    """The text of a Go-quoted string without its quotes (``a\\nb`` -> ``a``,
    newline, ``b``). Byte escapes are bytes of UTF-8, as Go writes them; an
    escape Go never writes is kept as it stands."""
    if "\\" not in body:
        return body
    out = bytearray()
    position = 0
    for match in _ESCAPE.finditer(body):
        out += body[position : match.start()].encode(errors="surrogatepass")
        code = match.group(1)
        if code in _SIMPLE:
            out += _SIMPLE[code].encode()
        elif code[0] == "x" and len(code) == 3:
            out.append(int(code[1:], 16))
        elif code[0] in "uU" and len(code) > 1:
            value = int(code[1:], 16)
            out += (chr(value) if value <= 0x10FFFF else "\ufffd").encode(errors="surrogatepass")
        elif len(code) == 3 and code.isdigit():
            out.append(int(code, 8) & 0xFF)
        else:
            out += match.group(0).encode(errors="surrogatepass")
        position = match.end()
    out += body[position:].encode(errors="surrogatepass")
    return out.decode(errors="replace")


def parse_logfmt(line: str) -> dict[str, str]:
    """The key/value pairs of one logfmt line; an unparsable line gives ``{}``."""
    fields: dict[str, str] = {}
    for key, raw in _PAIR.findall(line):
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = unquote(raw[1:-1])
        fields[key] = raw
    return fields


def forward_line(logger: Any, line: str) -> None:
    """Emit one containerd log line on ``logger`` at the level it carries.

    Lines that are not logfmt (a Go panic's stack, say) are kept verbatim at
    warning, since containerd only writes such lines when something is wrong.
    Lines known to be harmless (plugin loading, a task's shim clean-up) are
    debug whatever their level (see ``_chatter``).
    """
    line = line.rstrip("\r\n")
    if not line.strip():
        return
    fields = parse_logfmt(line)
    if "msg" not in fields or "level" not in fields:
        logger.warning("containerd.output", line=line)
        return
    level = fields.pop("level").lower()
    method = _LEVELS.get(level, "info")
    message = fields.pop("msg")
    if is_chatter(level, message, fields):
        method = "debug"
    extra: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "time":
            extra["containerd_time"] = value
        elif key in _RESERVED:
            extra[f"containerd_{key}"] = value
        else:
            extra[key] = value
    getattr(logger, method)("containerd.log", msg=message, **extra)


class LogFollower:
    """Follows containerd's log file into logging, as ``tail -F`` would.

    Polling a file costs one ``read`` per interval; it keeps containerd's
    output independent of our process, and it follows an adopted containerd
    just as well as one we started. A file replaced under us (removed and
    made anew) is followed to its end, then the new one from its start.
    :meth:`drain` never raises: a log that cannot be read is reported once
    and tried again at the next poll.
    """

    def __init__(
        self, path: Path, poll: float, *, opener: Callable[[Path, int], int] = open_regular
    ) -> None:
        self.path = path
        # How a file of ours is opened without following a link (per platform).
        self._opener = opener
        self.tail: deque[str] = deque(maxlen=_LOG_TAIL)
        self._poll = poll
        self._fd = -1
        self._pending = b""
        # What an earlier run wrote was forwarded (or not) back then: a file
        # found at the first look is read from its end; one that appears
        # later (made for our containerd) from its start.
        self._from_end = True
        self._error = ""

    async def follow(self) -> None:
        """Forward lines until cancelled."""
        while True:
            self.drain()
            await anyio.sleep(self._poll)

    def drain(self) -> None:
        """Forward every complete line written since the last call."""
        try:
            self._drain()
        except (OSError, errors.SupervisorError) as exc:
            self.close()
            # Whatever is there once it can be read is nothing we have seen.
            self._from_end = False
            if str(exc) != self._error:  # once per cause, not once per poll
                self._error = str(exc)
                _log.warning("daemon.log_unreadable", path=str(self.path), error=str(exc))
        else:
            self._error = ""

    def _drain(self) -> None:
        if self._fd < 0 and not self._open():
            return
        self._read()
        # Replaced under us (logrotate's create mode, an operator): the old
        # file is read to its end above, then the new one from its start.
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return  # removed: containerd may still write to it
        current = os.fstat(self._fd)
        if (st.st_dev, st.st_ino) != (current.st_dev, current.st_ino):
            self._forward([self._pending] if self._pending else [])
            self.close()
            if self._open():
                self._read()

    def _open(self) -> bool:
        try:
            # Read-write, for the truncation in _read; never through a symlink.
            fd = self._opener(self.path, os.O_RDWR)
        except FileNotFoundError:
            self._from_end = False
            return False
        if self._from_end:
            os.lseek(fd, 0, os.SEEK_END)
        self._from_end = False
        self._fd = fd
        self._pending = b""
        return True

    def _read(self) -> None:
        fd = self._fd
        position = os.lseek(fd, 0, os.SEEK_CUR)
        if os.fstat(fd).st_size < position:  # emptied under us
            os.lseek(fd, 0, os.SEEK_SET)
            self._pending = b""
        while chunk := os.read(fd, 1 << 16):
            self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        self._forward(lines)
        position = os.lseek(fd, 0, os.SEEK_CUR)
        if not self._pending and position > _LOG_ROTATE and os.fstat(fd).st_size == position:
            # containerd appends (O_APPEND), so emptying the file is safe:
            # its next line lands at offset 0. Everything was read already.
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)

    def _forward(self, lines: list[bytes]) -> None:
        for raw in lines:
            line = raw.decode(errors="replace")
            self.tail.append(line)
            forward_line(_containerd_log, line)

    def close(self) -> None:
        """Let go of the file (the next :meth:`drain` opens it again)."""
        fd, self._fd = self._fd, -1
        self._pending = b""
        if fd >= 0:
            os.close(fd)
