"""Capturing the library's log records as event dicts, in tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = dict(getattr(record, "fields", {}) or {})
        # The record's own keys last: a field of the same name cannot hide them.
        self.events.append(
            {
                **fields,
                "log_level": record.levelname.lower(),
                "logger": record.name,
                "event": getattr(record, "event", record.getMessage()),
                "exc_info": bool(record.exc_info),
            }
        )


@contextmanager
def capture_logs(name: str = "supervisor") -> Iterator[list[dict[str, Any]]]:
    """Every record of ``name`` (and below) at any level, as a list of dicts."""
    logger = logging.getLogger(name)
    handler = _Capture()
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.events
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
