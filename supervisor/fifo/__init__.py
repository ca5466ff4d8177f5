"""Per-platform stdio: FIFOs on Linux, served named pipes on Windows; our
ends as anyio byte streams.

The named-pipe module loads on first use (``NamedPipeSet`` or a Windows
:func:`open_stdio`): it pulls in asyncio and hashlib, which a Linux
``import supervisor`` has no use for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._fifo_set import FifoSet
from ._stdio import StdioSet, open_stdio
from ._stream import FdReceiveStream, FdSendStream

if TYPE_CHECKING:
    from ._named_pipes import NamedPipeSet

__all__ = ["FdReceiveStream", "FdSendStream", "FifoSet", "NamedPipeSet", "StdioSet", "open_stdio"]


def __getattr__(name: str) -> Any:
    if name == "NamedPipeSet":
        from ._named_pipes import NamedPipeSet

        globals()[name] = NamedPipeSet
        return NamedPipeSet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
