"""How the command shows things: tables, human sizes, RFC 3339 times."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

__all__ = ["command_line", "human_bytes", "printable", "rfc3339", "table"]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: int | float) -> str:
    """``12.5MiB``: binary units, at most four significant digits."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.4g}{unit}" if unit != "B" else f"{int(value)}B"
        value /= 1024
    raise AssertionError("unreachable")


def rfc3339(when: datetime | None) -> str | None:
    """``2025-01-02T03:04:05.123456Z`` (UTC), or None."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def spec_args(spec: Mapping[str, object]) -> list[str]:
    """The command a container's spec runs (``process.args``), as strings."""
    process = spec.get("process")
    args = process.get("args") if isinstance(process, Mapping) else None
    return [str(a) for a in args] if isinstance(args, list) else []


def command_line(args: Sequence[str], width: int | None = None) -> str:
    """A command as a shell would read it, cut to ``width`` with an ellipsis."""
    text = shlex.join(args)
    if width is not None and len(text) > width:
        text = text[: max(width - 1, 0)] + "…"
    return text


# C0 and C1 controls, DEL and lone surrogates: a terminal obeys the first (moves the cursor, clears
# the screen, sets the title or the clipboard).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` safe to show on a terminal: control characters written as
    ``\\xNN``. What containerd stores (a command, a label, an env value)
    may come from any of its clients, and a table is no place for an escape
    sequence to take over the reader's terminal."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    # Lone surrogates (from a JSON \ud800 escape) cannot even be encoded.
    code = ord(match.group())
    return f"\\u{code:04x}" if code > 0xFF else f"\\x{code:02x}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns three spaces apart, as docker prints them; every
    cell made :func:`printable`."""
    cells = [[printable(str(h)) for h in headers]] + [
        ["" if c is None else printable(str(c)) for c in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        line = "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
        lines.append(line.rstrip())
    return "\n".join(lines)
