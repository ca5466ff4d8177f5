"""One place that names the library's loggers.

The library only emits events; rendering (JSON or console) and filtering are
chosen by the embedding application, or by the command-line entry point.
"""

from __future__ import annotations

from typing import Any

import structlog


def get_logger(component: str, **initial: Any) -> Any:
    """A structlog logger named ``supervisor.<component>``.

    It stays a lazy proxy: binding here, at import time, would freeze
    structlog's configuration before the application had a chance to set it.
    """
    return structlog.get_logger(f"supervisor.{component}", **initial)
