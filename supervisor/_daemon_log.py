"""containerd's own log lines, forwarded into structlog with their level.

containerd logs through logrus' text formatter when its stderr is not a
terminal: ``time="…" level=info msg="…" key=value key2="quoted value"``.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["parse_logfmt", "forward_line"]

# key=value where the value is either a double-quoted string with backslash
# escapes, or a bare run of non-space characters (possibly empty).
_PAIR = re.compile(r'([A-Za-z_][\w.\-]*)=("(?:[^"\\]|\\.)*"|\S*)')
_ESCAPE = re.compile(r"\\(.)")

# logrus level -> structlog method; anything unknown is kept at info.
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

# Keys structlog or our own output already uses for something else.
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
