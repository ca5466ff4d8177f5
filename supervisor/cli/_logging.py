"""How the command shows the library's log records: on stderr, as text or JSON.

The library only emits stdlib records under ``supervisor.*``; this is the one
place that decides rendering, for the command alone.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["configure_logging"]


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {}) or {}
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", record.getMessage()),
            **{
                k: v if isinstance(v, int | float | bool | None) else str(v)
                for k, v in fields.items()
            },
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


class _QuietContainerd(logging.Filter):
    """containerd and its shims log every plugin load and signal loop at
    info; on a terminal that drowns the container's own output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "supervisor.containerd" and record.levelno < logging.WARNING)


def configure_logging(level: str, fmt: str, *, containerd_chatter: bool = False) -> None:
    """Show ``supervisor.*`` records at ``level`` and above on stderr.

    ``containerd_chatter``: pass containerd's own info lines through even
    below ``debug`` (``supervisor daemon`` does: containerd is its subject).
    """
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_Json())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    if not containerd_chatter and level.lower() != "debug":
        handler.addFilter(_QuietContainerd())
    root = logging.getLogger("supervisor")
    root.setLevel(logging.getLevelNamesMapping()[level.upper()])
    root.addHandler(handler)
