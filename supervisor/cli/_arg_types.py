"""The types of the command line's option values, as argparse calls them:
each turns the text given into a value or refuses it with the reason."""

from __future__ import annotations

import argparse
import re
import signal

__all__ = [
    "parse_cpus",
    "parse_pids_limit",
    "parse_seconds",
    "parse_signal",
    "parse_size",
    "parse_stop_time",
]

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?")
_SCALE = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``64m``, ``1.5g``, ``512k``, ``64MiB`` or plain bytes."""
    match = _SIZE.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 64m, 1g, 512k)")
    value = int(float(match.group(1)) * _SCALE[match.group(2)])
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, not {text!r}")
    return value


def parse_signal(text: str) -> int:
    """``TERM``, ``SIGKILL`` or a number."""
    if text.isdigit():
        number = int(text)
        if not 1 <= number <= 64:
            raise argparse.ArgumentTypeError(f"signal {number} is out of range (1..64)")
        return number
    name = text.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise argparse.ArgumentTypeError(f"unknown signal {text!r}") from None


def parse_cpus(text: str) -> float:
    """A number of CPUs, e.g. ``0.5`` or ``2``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad number of CPUs {text!r}") from None
    if not 0.01 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"--cpus must be between 0.01 and 1024, not {text}")
    return value


def parse_pids_limit(text: str) -> int:
    """A positive process count, or -1 for no limit."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad pids limit {text!r}") from None
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError("--pids-limit must be positive (or -1: no limit)")
    return value


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad number of seconds {text!r}") from None
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"seconds must be positive, not {text}")
    return value


def parse_stop_time(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad number of seconds {text!r}") from None
    if not 0 <= value < 1e6:
        raise argparse.ArgumentTypeError(f"seconds must not be negative, not {text}")
    return value
