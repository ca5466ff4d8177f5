"""Where a process's stdio lives in its container's bundle, and how to tell
our own files from anything else.

Each process gets FIFO names of its own making, ``init.<token>`` for the init
process and ``exec.<exec id>.<token>`` for an exec, with a fresh random token
per attempt: a refused or losing create removes only the files it made, never
those of the process that already holds the id (or that won a race for it).
When stdio is reopened later (after the application's restart), the path
containerd reports is accepted only if it is exactly one this scheme derives
from the bundle directory and the process id.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

__all__ = ["new_stdio_name", "parse_stdio_path"]

_TOKEN = re.compile(r"[0-9a-f]{8}")


def new_stdio_name(process_id: str, *, init: bool) -> str:
    """A fresh FIFO name prefix for one attempt at creating a process."""
    token = secrets.token_hex(4)
    return f"init.{token}" if init else f"exec.{process_id}.{token}"


def parse_stdio_path(
    bundle_dir: Path, process_id: str, *, init: bool, path: str, stream: str
) -> str | None:
    """The name prefix of ``path`` if it is our ``stream`` FIFO for this
    process in ``bundle_dir``; ``None`` for anything else."""
    if not path:
        return None
    candidate = Path(path)
    if candidate.parent != bundle_dir:
        return None
    suffix = f"-{stream}"
    name = candidate.name
    if not name.endswith(suffix):
        return None
    prefix = name[: -len(suffix)]
    head = "init." if init else f"exec.{process_id}."
    if not prefix.startswith(head) or not _TOKEN.fullmatch(prefix[len(head) :]):
        return None
    return prefix
