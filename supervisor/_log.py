"""One place that names the library's loggers.

The library only emits events; rendering (JSON or console) is chosen by the
embedding application, or by the command-line entry point for ``supervisor``.
"""

from __future__ import annotations

from typing import Any

import structlog


def get_logger(component: str, **bound: Any) -> Any:
    """A structlog logger named ``supervisor.<component>`` with ``bound`` values."""
    return structlog.get_logger(f"supervisor.{component}").bind(**bound)
