"""containerd's log lines known to be harmless, forwarded at DEBUG: the
plugin loading of every start, and the shim clean-up of every task delete.
Anything else keeps the level containerd gave it."""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["is_chatter"]

# Said at INFO on every start (about 40 of them) and every task's life.
_ROUTINE = (
    "loading plugin ",
    "skip loading plugin ",
    "starting signal loop",
    "shim disconnected",
    "cleaning up dead shim",
)
# Warnings containerd 1.6 gives on every start without devmapper configured,
# and on every task delete (the shim's own clean-up after it exited).
_HARMLESS_WARNINGS = (
    "cleaning up after shim disconnected",
    "failed to load plugin io.containerd.snapshotter.v1.devmapper",
    "could not use snapshotter devmapper in metadata plugin",
)
# What the clean-up shim says on a delete: it found the container gone
# already (runc delete of what the first shim removed), which is the usual case.
_CLEANUP = "cleanup warnings "
_CLEANUP_HARMLESS = ("starting signal loop", "failed to remove runc container")
_LEVEL = re.compile(r"\blevel=(\w+)")
_MSG = re.compile(r'\bmsg="([^"\\]*)')


def _cleanup_is_routine(message: str) -> bool:
    # Each line the clean-up shim wrote: only info or debug lines, or the
    # known warning, make it routine.
    for line in message[len(_CLEANUP) :].splitlines():
        if not line.strip():
            continue
        level, msg = _LEVEL.search(line), _MSG.search(line)
        if level is not None and level.group(1).lower() in ("info", "debug", "trace"):
            continue
        if msg is None or not msg.group(1).startswith(_CLEANUP_HARMLESS):
            return False
    return True


def is_chatter(level: str, message: str, fields: Mapping[str, str]) -> bool:
    """Whether a containerd line (its logrus ``level``, ``msg`` and other
    fields) is one of those known to be harmless."""
    if level == "info":
        return message.startswith(_ROUTINE)
    if level in ("warning", "warn"):
        if message.startswith(_CLEANUP):
            return _cleanup_is_routine(message)
        if message.startswith(_HARMLESS_WARNINGS[1:]):
            return fields.get("error", "") == "devmapper not configured"
        return message.startswith(_HARMLESS_WARNINGS[0])
    return False
