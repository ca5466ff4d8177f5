"""Linux stdio: FIFOs the shim writes and reads, our ends as anyio byte streams."""

from ._fifo_set import FifoSet
from ._stream import FdReceiveStream, FdSendStream

__all__ = ["FdReceiveStream", "FdSendStream", "FifoSet"]
