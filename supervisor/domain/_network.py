"""A container's network, as the domain objects see it.

The network layer (``supervisor.network``) attaches a container before it is
created and must release it when the container is deleted; the domain
objects only need to hand out what was attached and to call the release.
So the client plugs an attachment in from above, as the image layer plugs in
a :class:`~supervisor.domain._rootfs.Rootfs`, and nothing here imports the
network layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["AttachedNetwork", "NetworkAttachment", "PublishedPort"]


class PublishedPort(Protocol):
    """One published port (a :class:`supervisor.network.PortMapping`)."""

    @property
    def host_ip(self) -> str: ...

    @property
    def host_port(self) -> int: ...

    @property
    def container_port(self) -> int: ...

    @property
    def protocol(self) -> str: ...


class AttachedNetwork(Protocol):
    """What a container got from its network (a
    :class:`supervisor.network.NetworkInfo`)."""

    @property
    def container_id(self) -> str: ...

    @property
    def network(self) -> str: ...

    @property
    def netns(self) -> str | None: ...

    @property
    def interface(self) -> str | None: ...

    @property
    def ip(self) -> str | None: ...

    @property
    def prefix_length(self) -> int | None: ...

    @property
    def gateway(self) -> str | None: ...

    @property
    def hostname(self) -> str | None: ...

    @property
    def ports(self) -> Sequence[PublishedPort]: ...

    def host_port(self, container_port: int, protocol: str = "tcp") -> int:
        """The host port published for ``container_port``/``protocol``."""
        ...


class NetworkAttachment(Protocol):
    """A container's place on a network, released with the container."""

    @property
    def info(self) -> AttachedNetwork: ...

    async def release(self) -> None:
        """Give back what the attachment holds (one released already is fine)."""
        ...
