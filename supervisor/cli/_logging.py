"""How the command shows the library's log records: on stderr, as text or JSON.

The library only emits stdlib records under ``supervisor.*``; this is the one
place that decides rendering, for the command alone. Text goes through
structlog's console renderer (the record's event name and its fields, as the
library's records carry them); structlog loads with the first record shown,
so a command that logs nothing never pays for it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import MutableMapping
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


class _Console(logging.Formatter):
    """structlog's ConsoleRenderer over stdlib records, built on first use."""

    def __init__(self) -> None:
        super().__init__()
        self._formatter: logging.Formatter | None = None

    def format(self, record: logging.LogRecord) -> str:
        if self._formatter is None:
            self._formatter = _structlog_formatter()
        return self._formatter.format(record)


def _structlog_formatter() -> logging.Formatter:
    import structlog

    def from_record(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        # The library's records carry their event name and fields apart from
        # the rendered message: show them as structlog shows its own events.
        record = event.get("_record")
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            event["event"] = getattr(record, "event", event.get("event"))
            event.update(fields)
        return event

    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            from_record,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ],
    )


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
        handler.setFormatter(_Console())
    if not containerd_chatter and level.lower() != "debug":
        handler.addFilter(_QuietContainerd())
    root = logging.getLogger("supervisor")
    root.setLevel(logging.getLevelNamesMapping()[level.upper()])
    root.addHandler(handler)
