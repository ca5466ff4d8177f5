"""How a process's log file is written: its format and its rotation, as
the caller chose them and as the process's record keeps them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .. import errors
from ._log_writer import CRI, FORMATS, options_text, parse_options

__all__ = ["LogFormat", "LogOptions", "checked_log_options"]

LogFormat = Literal["raw", "cri"]
"""How ``log_path`` is written: ``"raw"`` (the bytes as written, both
streams mixed) or ``"cri"`` (one line per record with its time and stream,
as kubelet and ``crictl logs`` read; see ``docs/logs.md``)."""


@dataclass(frozen=True)
class LogOptions:
    """A log file's format and rotation (``max_size`` 0: never rotated)."""

    format: LogFormat = "raw"
    max_size: int = 0
    max_files: int = 1

    def encode(self) -> bytes:
        """The options as a log record keeps them."""
        return options_text(self.format, self.max_size, self.max_files)

    @classmethod
    def decode(cls, text: bytes) -> LogOptions:
        """A record's options (raw, unrotated for a record without them)."""
        fmt, max_size, max_files = parse_options(text)
        return cls("cri" if fmt == CRI else "raw", max_size, max_files)


RAW_OPTIONS = LogOptions()


def _count(value: object, name: str, minimum: int, ids: dict[str, str]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise errors.InvalidArgument(f"{name} must be an int >= {minimum}, not {value!r}", **ids)
    return value


def checked_log_options(
    log_format: object,
    log_max_size: object,
    log_max_files: object,
    *,
    has_path: bool,
    container_id: str,
    process_id: str,
) -> LogOptions:
    """Check the log options a task or exec was asked for; they need a
    ``log_path`` unless they are the defaults."""
    ids = {"container_id": container_id, "process_id": process_id}
    if log_format not in FORMATS:
        raise errors.InvalidArgument(
            f"log_format must be 'raw' or 'cri', not {log_format!r}", **ids
        )
    max_size = 0 if log_max_size is None else _count(log_max_size, "log_max_size", 1, ids)
    max_files = 1 if log_max_files is None else _count(log_max_files, "log_max_files", 1, ids)
    if max_size and max_size < 4096:
        raise errors.InvalidArgument(
            f"log_max_size must be at least 4096 bytes, not {max_size}", **ids
        )
    if log_max_files is not None and not max_size:
        raise errors.InvalidArgument("log_max_files needs log_max_size", **ids)
    options = LogOptions("cri" if log_format == CRI else "raw", max_size, max_files)
    if options != RAW_OPTIONS and not has_path:
        raise errors.InvalidArgument("log_format and rotation need a log_path", **ids)
    return options
