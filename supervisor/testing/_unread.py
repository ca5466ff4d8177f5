"""What a failing test left unread in the pipes of its clients' processes.

A test that made a process through ``supervisor_client`` (not the
``containers`` fixture, which reads everything itself) and never read its
output would show nothing of it in the failure report. Every open stdio set
of a client is in its session's table, so the report takes what is waiting
in those pipes at that moment: only reads that cannot block (the fds are
non-blocking; anything else is left alone), and at most a bounded number of
bytes per pipe, since a process may still be writing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .. import Client

__all__ = ["unread_output"]

_MAX_BYTES = 64 << 10
_MAX_LINES = 200


def unread_output(clients: Iterable[Client], skip: Collection[str]) -> str:
    """The unread output of every process the open ``clients`` hold stdio
    for, except containers named in ``skip``; empty when there is none."""
    from ..fifo._fifo_set import FifoSet
    from ..fifo._stream import FdReceiveStream

    parts: list[str] = []
    seen: set[int] = set()
    for client in clients:
        if client.closed:
            continue
        # The session's table holds every stdio set any object of the client opened.
        for (container_id, process_id), sets in sorted(client._session.stdio.items()):
            if container_id in skip:
                continue
            name = container_id if process_id == container_id else f"{container_id}/{process_id}"
            for stdio in sets:
                if not isinstance(stdio, FifoSet):
                    continue  # a log file's pump reads it, a logger holds it
                for stream_name, stream in (("stdout", stdio.stdout), ("stderr", stdio.stderr)):
                    if not isinstance(stream, FdReceiveStream) or stream.fileno in seen:
                        continue
                    seen.add(stream.fileno)
                    data = _read_ready(stream.fileno)
                    if data:
                        parts.append(_show(f"[{name}] {stream_name}", data))
    return "\n\n".join(parts)


def _read_ready(fd: int) -> bytes:
    """What the pipe holds now, without ever waiting; b"" for anything but
    an open non-blocking FIFO or pipe."""
    if fd < 0:
        return b""
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode) or os.get_blocking(fd):
            return b""
    except OSError:
        return b""
    chunks: list[bytes] = []
    size = 0
    while size < _MAX_BYTES:
        try:
            data = os.read(fd, _MAX_BYTES - size)
        except OSError:  # BlockingIOError: nothing more now
            break
        if not data:
            break
        chunks.append(data)
        size += len(data)
    return b"".join(chunks)


def _show(head: str, data: bytes) -> str:
    lines = data.decode(errors="replace").splitlines()
    if len(lines) > _MAX_LINES:
        lines = ["[... earlier lines left out ...]", *lines[-_MAX_LINES:]]
    if len(data) >= _MAX_BYTES:
        lines.append("[... more output left unread ...]")
    return "\n".join([head, *lines])
