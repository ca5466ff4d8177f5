"""The grpclib channel to containerd, and the metadata its calls carry."""

from __future__ import annotations

from grpclib.client import Channel

from .. import _platform

__all__ = ["LEASE_HEADER", "NAMESPACE_HEADER", "open_channel"]

NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"


def open_channel(address: str) -> Channel:
    """A grpclib channel to containerd's socket (or named pipe on Windows).

    Nothing is connected yet: grpclib connects on the first call and again on
    the first call after the connection broke, which is what lets a client ride
    through a containerd restart.
    """
    if _platform.IS_WINDOWS:  # pragma: no cover - exercised on Windows only
        from ._named_pipe import NamedPipeChannel

        return NamedPipeChannel(address)
    return Channel(path=address)
