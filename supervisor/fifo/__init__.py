"""Per-platform stdio: FIFOs on Linux, served named pipes on Windows; our
ends as anyio byte streams."""

from ._fifo_set import FifoSet
from ._named_pipes import NamedPipeSet
from ._stdio import StdioSet, open_stdio
from ._stream import FdReceiveStream, FdSendStream

__all__ = ["FdReceiveStream", "FdSendStream", "FifoSet", "NamedPipeSet", "StdioSet", "open_stdio"]
