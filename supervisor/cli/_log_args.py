"""The ``logs`` command's options: standard library only, since every
parse of the command line builds them (the command's start-up must not load
the event loop, grpclib or the daemon for it)."""

from __future__ import annotations

import argparse
import datetime as dt
import re

__all__ = ["add_log_arguments", "parse_log_time"]

_FRACTION = re.compile(r"\.(\d+)")
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_log_time(text: str) -> dt.datetime | dt.timedelta | int:
    """``--since``/``--until``: an RFC 3339 time (``2026-12-07T10:02:00Z``;
    without a zone, local time; to the nanosecond, as ``-t`` prints it),
    seconds since the epoch, or a duration before now (``10m``, ``1h30m``,
    ``45s``)."""
    value = text.strip()
    match = _DURATION.fullmatch(value)
    if value and match is not None and any(match.groups()):
        hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
        return dt.timedelta(hours=hours, minutes=minutes, seconds=seconds)
    try:
        return dt.datetime.fromtimestamp(float(value), dt.UTC)
    except (ValueError, OverflowError, OSError):
        pass
    # fromisoformat takes at most microseconds: the fraction is added apart,
    # so that a time -t printed selects exactly from that line on.
    match = _FRACTION.search(value)
    whole = value if match is None else value[: match.start()] + value[match.end() :]
    try:
        when = dt.datetime.fromisoformat(whole.replace("z", "Z"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad time {text!r} (e.g. 2026-12-07T10:02:00Z, 1765101720, 10m, 1h30m)"
        ) from None
    when = when if when.tzinfo is not None else when.astimezone()
    if match is None:
        return when
    return int(when.timestamp()) * 1_000_000_000 + int(match.group(1).ljust(9, "0")[:9])


def _count(text: str) -> int:
    if text == "all":
        return -1
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"--tail takes a number of lines or 'all', not {text!r}")
    return int(text)


def add_log_arguments(p: argparse.ArgumentParser) -> None:
    """The ``logs`` command's options."""
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until it exits")
    p.add_argument("--since", type=parse_log_time, metavar="T", help="lines from T on")
    p.add_argument("--until", type=parse_log_time, metavar="T", help="lines before T")
    p.add_argument("--tail", type=_count, default=-1, metavar="N", help="the last N lines")
    p.add_argument("-t", "--timestamps", action="store_true", help="each line after its time")
    p.add_argument("container")
