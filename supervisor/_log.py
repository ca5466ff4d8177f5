"""How the library logs: stdlib ``logging`` records under ``supervisor.*``.

The library only emits; what is shown, where and how is the embedding
application's choice. ``supervisor`` carries a ``NullHandler``, so an
application that configures nothing sees nothing, and
``logging.getLogger("supervisor").setLevel(...)`` governs every line, the
embedded containerd's (``supervisor.containerd``) included.

Each record is one structured event: ``record.getMessage()`` is the event
name followed by its fields in logfmt (``container.create container_id=web``),
``record.event`` is the name, ``record.fields`` the fields as a dict, and each
field is also an attribute of the record (structlog's ``ExtraAdder`` picks
them up when an application routes stdlib records through structlog).

A log call never raises: a handler that fails (a closed stdout, a full disk)
must not fail the operation that was logging.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["Logger", "get_logger"]

ROOT = "supervisor"
logging.getLogger(ROOT).addHandler(logging.NullHandler())

# Attributes a LogRecord has already: ``extra`` may not overwrite them.
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "event", "fields"}


def _value(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' ="\n\\'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class Logger:
    """A named emitter of structured events; see the module docstring."""

    __slots__ = ("_logger",)

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    @property
    def name(self) -> str:
        return self._logger.name

    def is_enabled(self, level: int) -> bool:
        return self._logger.isEnabledFor(level)

    def log(self, level: int, event: str, /, **fields: Any) -> None:
        """Emit ``event`` with ``fields`` at ``level`` (an ``exc_info`` field
        is passed on to logging as such)."""
        try:
            if not self._logger.isEnabledFor(level):
                return
            exc_info = fields.pop("exc_info", None)
            message = " ".join([event, *(f"{k}={_value(v)}" for k, v in fields.items())])
            extra: dict[str, Any] = {"event": event, "fields": fields}
            for key, value in fields.items():
                extra[f"field_{key}" if key in _RESERVED else key] = value
            self._logger.log(level, "%s", message, exc_info=exc_info, extra=extra, stacklevel=3)
        except Exception:  # noqa: BLE001 - logging must never fail an operation
            pass

    def debug(self, event: str, /, **fields: Any) -> None:
        self.log(logging.DEBUG, event, **fields)

    def info(self, event: str, /, **fields: Any) -> None:
        self.log(logging.INFO, event, **fields)

    def warning(self, event: str, /, **fields: Any) -> None:
        self.log(logging.WARNING, event, **fields)

    def error(self, event: str, /, **fields: Any) -> None:
        self.log(logging.ERROR, event, **fields)

    def critical(self, event: str, /, **fields: Any) -> None:
        self.log(logging.CRITICAL, event, **fields)

    def exception(self, event: str, /, **fields: Any) -> None:
        """An error with the exception being handled attached."""
        fields.setdefault("exc_info", True)
        self.log(logging.ERROR, event, **fields)


def get_logger(component: str) -> Logger:
    """The logger ``supervisor.<component>``."""
    return Logger(f"{ROOT}.{component}")
