"""What a process's stdio set offers, whatever the platform builds it from."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from anyio.abc import ByteReceiveStream, ByteSendStream

from .. import _platform
from ._fifo_set import FifoSet

__all__ = ["StdioSet", "open_stdio"]


class StdioSet(Protocol):
    """One process's stdio: names for containerd, our ends as byte streams."""

    terminal: bool
    stdin_path: str | None
    stdout_path: str
    stderr_path: str | None

    @property
    def stdin(self) -> ByteSendStream | None: ...

    @property
    def stdout(self) -> ByteReceiveStream: ...

    @property
    def stderr(self) -> ByteReceiveStream | None: ...

    def started(self) -> None:
        """The process started: from now on EOF means its side is done."""

    def close(self) -> None:
        """Close our ends (idempotent)."""

    def remove(self) -> None:
        """Close our ends and remove what was made (idempotent)."""


async def open_stdio(directory: Path, name: str, *, stdin: bool, terminal: bool) -> StdioSet:
    """One process's stdio, as :data:`supervisor._platform.PLATFORM` says:
    FIFOs under ``directory``, or named pipes served for the shim.

    ``name`` must be fresh for each attempt at creating a process (see
    :func:`supervisor.fifo._names.new_stdio_name`): neither scheme ever
    reuses, or removes, what another attempt made.
    """
    if _platform.PLATFORM.stdio == "named-pipe":
        from ._named_pipes import NamedPipeSet

        return await NamedPipeSet.create(directory, name, stdin=stdin, terminal=terminal)
    return FifoSet.create(directory, name, stdin=stdin, terminal=terminal)
