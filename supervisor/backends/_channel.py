"""The grpclib channel to containerd, and the metadata its calls carry."""

from __future__ import annotations

from asyncio import BaseTransport
from collections.abc import Callable

from grpclib.client import Channel, Handler
from grpclib.protocol import EventsProcessor, H2Protocol, Stream

from .. import _platform

__all__ = ["LEASE_HEADER", "NAMESPACE_HEADER", "channel_address", "open_channel"]

NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"


class _EndingProcessor(EventsProcessor):
    """Ends a stream registered after the connection was lost.

    grpclib ends the streams it knows of when the connection goes; a call that
    was parked before it had a stream registers one afterwards, on a connection
    that will never answer.
    """

    _lost: str | None = None

    def close(self, reason: str = "Connection closed") -> None:
        self._lost = reason
        super().close(reason)

    def register(self, stream: Stream) -> Callable[[], None]:
        release = super().register(stream)
        if self._lost is not None:
            stream.__terminated__(self._lost)
        return release


class _Protocol(H2Protocol):
    """grpclib's protocol, with calls parked on a full write buffer woken when
    the connection is lost: only a draining buffer wakes them otherwise, and a
    lost connection never drains, so a call without a deadline (Wait) would
    wait forever."""

    def connection_made(self, transport: BaseTransport) -> None:
        super().connection_made(transport)
        self.processor = _EndingProcessor(self.handler, self.connection)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self.connection.write_ready.set()


class _Channel(Channel):
    def _protocol_factory(self) -> H2Protocol:
        return _Protocol(Handler(), self._config, self._h2_config)


def open_channel(address: str) -> Channel:
    """A grpclib channel to containerd's socket (or named pipe on Windows).

    Nothing is connected yet: grpclib connects on the first call and again on
    the first call after the connection broke, which is what lets a client ride
    through a containerd restart.
    """
    if _platform.IS_WINDOWS:  # pragma: no cover - exercised on Windows only
        from ._named_pipe import NamedPipeChannel

        return NamedPipeChannel(address)
    return _Channel(path=address)


def channel_address(channel: Channel) -> str:
    """The socket (or pipe) ``channel`` was opened on, for error messages;
    ``""`` for a channel that keeps none (grpclib stores ``path=`` there)."""
    path = getattr(channel, "_path", None)
    return path if isinstance(path, str) else ""
