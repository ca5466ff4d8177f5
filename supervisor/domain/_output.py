"""Where a process's output goes: the choices a caller makes when creating
a task or an exec, and their checks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from .. import _platform, errors

__all__ = ["LogWriter", "Output", "checked_log_writer", "checked_output"]

Output = Literal["pipe", "null"]
"""Where a process's output goes when no ``log_path`` is given: ``"pipe"``
(the caller reads :attr:`Process.stdout`) or ``"null"`` (discarded)."""

LogWriter = Literal["client", "logger"]
"""Who appends a process's output to its ``log_path``: ``"client"`` (this
client copies it from FIFOs) or ``"logger"`` (a logger process that
containerd's shim runs beside the process); see ``docs/api.md``."""


def checked_output(
    log_path: str | os.PathLike[str] | None,
    output: object,
    *,
    stdin: bool,
    container_id: str,
    process_id: str,
) -> Path | None:
    """Check where output should go; the log file's path if there is one."""
    if output not in ("pipe", "null"):
        raise errors.InvalidArgument(
            f"output must be 'pipe' or 'null', not {output!r}",
            container_id=container_id,
            process_id=process_id,
        )
    if log_path is None:
        if output == "null" and stdin:
            raise errors.InvalidArgument(
                "stdin=True cannot be combined with output='null'",
                container_id=container_id,
                process_id=process_id,
            )
        return None
    try:
        path = Path(log_path)
    except TypeError:
        raise errors.InvalidArgument(
            "log_path must be a path", container_id=container_id, process_id=process_id
        ) from None
    text = str(path)
    if not path.is_absolute() or "\0" in text or not text.isprintable():
        raise errors.InvalidArgument(
            f"log_path must be an absolute path, not {text!r}",
            container_id=container_id,
            process_id=process_id,
        )
    if not path.parent.is_dir():
        raise errors.InvalidArgument(
            f"log_path's directory {path.parent} does not exist",
            container_id=container_id,
            process_id=process_id,
        )
    if stdin:
        raise errors.InvalidArgument(
            "stdin=True cannot be combined with log_path (the output has no pipe)",
            container_id=container_id,
            process_id=process_id,
        )
    return path


def checked_log_writer(
    log_writer: object, log_path: Path | None, *, container_id: str, process_id: str
) -> LogWriter:
    """Check the ``log_writer`` choice (it needs a ``log_path`` when it is
    not the default)."""
    if log_writer not in ("client", "logger"):
        raise errors.InvalidArgument(
            f"log_writer must be 'client' or 'logger', not {log_writer!r}",
            container_id=container_id,
            process_id=process_id,
        )
    if log_writer == "logger" and log_path is None:
        raise errors.InvalidArgument(
            "log_writer='logger' needs a log_path",
            container_id=container_id,
            process_id=process_id,
        )
    if log_writer == "logger" and _platform.PLATFORM.stdio != "fifo":
        raise errors.InvalidArgument(
            "log_writer='logger' is not available on this platform",
            container_id=container_id,
            process_id=process_id,
        )
    return "logger" if log_writer == "logger" else "client"
