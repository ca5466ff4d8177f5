"""A grpclib channel over a Windows named pipe (``\\\\.\\pipe\\containerd-containerd``).

grpclib speaks HTTP/2 over any asyncio transport but only builds TCP and
unix-socket ones; asyncio's proactor loop builds named-pipe transports with
``create_pipe_connection``. This module joins the two by overriding the one
method of :class:`grpclib.client.Channel` that makes the transport.

Status: written against grpclib 0.4.9 and CPython's proactor loop, type-checked
on Linux, **not yet run on Windows** (no Windows machine in this project's CI).
``_create_connection`` is grpclib's private seam; a grpclib upgrade must be
checked against it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, cast

from grpclib.client import Channel
from grpclib.protocol import H2Protocol

from .._platform import WINDOWS_ADDRESS

__all__ = ["NamedPipeChannel", "DEFAULT_PIPE"]

DEFAULT_PIPE = WINDOWS_ADDRESS

# Windows' ERROR_PIPE_BUSY: every instance of the pipe is in use; the server
# makes a new one as soon as it accepts, so a short retry is the documented fix.
_ERROR_PIPE_BUSY = 231
_BUSY_RETRY_FOR = 5.0


class NamedPipeChannel(Channel):
    """A :class:`grpclib.client.Channel` whose transport is a named pipe.

    Like the unix-socket channel it connects lazily, on the first call, and
    again on the first call after the pipe broke.
    """

    def __init__(self, pipe: str = DEFAULT_PIPE) -> None:
        # grpclib wants a target; the path is only stored, never opened by it.
        super().__init__(path=pipe)
        self._pipe = pipe

    async def _create_connection(self) -> H2Protocol:
        loop = asyncio.get_running_loop()
        connect = cast("Callable[..., Any] | None", getattr(loop, "create_pipe_connection", None))
        if connect is None:
            raise OSError(
                f"named pipe {self._pipe!r} needs asyncio's proactor event loop (Windows)"
            )
        deadline = time.monotonic() + _BUSY_RETRY_FOR
        while True:
            try:
                _, protocol = await connect(self._protocol_factory, self._pipe)
                return cast(H2Protocol, protocol)
            except OSError as exc:
                busy = getattr(exc, "winerror", None) == _ERROR_PIPE_BUSY
                if not busy or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.02)
