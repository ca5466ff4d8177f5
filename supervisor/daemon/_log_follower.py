"""containerd's own log lines, followed from its log file and forwarded into
structlog with their level.

containerd logs through logrus' text formatter when its stderr is not a
terminal: ``time="…" level=info msg="…" key=value key2="quoted value"``.
"""

from __future__ import annotations

import os
import re
from collections import deque
from pathlib import Path
from typing import Any

import anyio

from .._log import get_logger

__all__ = ["LogFollower", "forward_line", "parse_logfmt"]

_containerd_log = get_logger("containerd")
# Lines kept for an error message when containerd fails to start.
_LOG_TAIL = 20
# The log file is emptied once it has been read past this size.
_LOG_ROTATE = 8 << 20
_LOG_POLL = 0.1

# key=value where the value is either a double-quoted string with backslash
# escapes, or a bare run of non-space characters (possibly empty).
_PAIR = re.compile(r'([A-Za-z_][\w.\-]*)=("(?:[^"\\]|\\.)*"|\S*)')
_ESCAPE = re.compile(r"\\(.)")

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


def parse_logfmt(line: str) -> dict[str, str]:
    """The key/value pairs of one logfmt line; an unparsable line gives ``{}``."""
    fields: dict[str, str] = {}
    for key, raw in _PAIR.findall(line):
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = _ESCAPE.sub(r"\1", raw[1:-1])
        fields[key] = raw
    return fields


def forward_line(logger: Any, line: str) -> None:
    """Emit one containerd log line on ``logger`` at the level it carries.

    Lines that are not logfmt (a Go panic's stack, say) are kept verbatim at
    warning, since containerd only writes such lines when something is wrong.
    """
    line = line.rstrip("\r\n")
    if not line.strip():
        return
    fields = parse_logfmt(line)
    if "msg" not in fields or "level" not in fields:
        logger.warning("containerd.output", line=line)
        return
    method = _LEVELS.get(fields.pop("level").lower(), "info")
    message = fields.pop("msg")
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
    just as well as one we started.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tail: deque[str] = deque(maxlen=_LOG_TAIL)
        self._fd = -1
        self._pending = b""

    async def follow(self) -> None:
        while True:
            self.drain()
            await anyio.sleep(_LOG_POLL)

    def drain(self) -> None:
        """Forward every complete line written since the last call."""
        if self._fd < 0:
            try:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return
            # What an earlier run wrote was forwarded (or not) back then.
            os.lseek(self._fd, 0, os.SEEK_END)
        position = os.lseek(self._fd, 0, os.SEEK_CUR)
        if os.fstat(self._fd).st_size < position:  # emptied under us
            os.lseek(self._fd, 0, os.SEEK_SET)
            self._pending = b""
        while chunk := os.read(self._fd, 1 << 16):
            self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace")
            self.tail.append(line)
            forward_line(_containerd_log, line)
        position = os.lseek(self._fd, 0, os.SEEK_CUR)
        if not self._pending and position > _LOG_ROTATE and os.fstat(self._fd).st_size == position:
            # containerd appends (O_APPEND), so emptying the file is safe:
            # its next line lands at offset 0. Everything was read already.
            os.truncate(self.path, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
