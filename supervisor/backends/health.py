"""containerd's ``grpc.health.v1`` service, as the daemon watchdog uses it.

Kept apart from :mod:`.containerd` because the watchdog needs no namespace and
must not share a channel with clients: a channel stuck on a stopped containerd
is exactly what it has to notice.
"""

from __future__ import annotations

import grpclib.exceptions
from grpclib.client import Channel

from .._proto.grpc.health import v1 as pb_health
from ._channel import open_channel

__all__ = ["HealthChecker"]


class HealthChecker:
    """One channel to containerd that answers "is it serving?".

    It never raises for an unhealthy containerd: :meth:`check` returns False
    whatever went wrong (refused, reset, timed out, not serving), because to
    the watchdog they all mean the same thing.
    """

    def __init__(self, address: str) -> None:
        self._address = address
        self._channel: Channel | None = None

    async def check(self, within: float) -> bool:
        """True when containerd answered SERVING within ``within`` seconds."""
        if self._channel is None:
            self._channel = open_channel(self._address)
        stub = pb_health.HealthStub(self._channel)
        try:
            reply = await stub.check(pb_health.HealthCheckRequest(), timeout=within)
        except (
            grpclib.exceptions.GRPCError,
            OSError,
            TimeoutError,
            ConnectionError,
            grpclib.exceptions.StreamTerminatedError,
            grpclib.exceptions.ProtocolError,
        ):
            # A half-dead connection would keep failing (or hanging) after
            # containerd is replaced; start the next check from a new one.
            self.close()
            return False
        return bool(reply.status == pb_health.HealthCheckResponseServingStatus.SERVING)

    def close(self) -> None:
        """Drop the channel; the next :meth:`check` opens a new one."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
