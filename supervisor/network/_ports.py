"""Published ports: ``"18080:80"``, ``"127.0.0.1:18081:81/udp"``, as ``docker -p``.

A spec is ``[host_ip:][host_port:]container_port[/protocol]``; an IPv6 host
address goes in brackets (``"[::1]:8080:80"``).  Host port 0 (or none given)
means "any free port".  Parsing checks everything before anything is made.

A published port is held by a bound socket of our own for as long as it is
published: portmap's DNAT rules hold no socket, so without one another
program (or another library instance) could bind the same port and be
shadowed.  The same socket is how a free port is picked for port 0.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from .. import errors

__all__ = ["PortMapping", "PortReservation", "hold", "parse_port", "reserve"]

_PROTOCOLS = ("tcp", "udp", "sctp")
_SPEC = re.compile(
    r"(?:(?P<ip>\[[0-9A-Fa-f:.]+\]|\d{1,3}(?:\.\d{1,3}){3}):)?"
    r"(?:(?P<host>\d*):)?"
    r"(?P<container>\d+)"
    r"(?:/(?P<proto>[a-z]+))?",
    re.ASCII,
)


@dataclass(frozen=True, slots=True)
class PortMapping:
    """One published port.

    Attributes:
        container_port: the port inside the container.
        host_port: the port on the host (0 before one was picked).
        protocol: ``"tcp"``, ``"udp"`` or ``"sctp"``.
        host_ip: the host address it is published on (``""``: all of them).
    """

    container_port: int
    host_port: int = 0
    protocol: str = "tcp"
    host_ip: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.container_port, int) or not 1 <= self.container_port <= 65535:
            raise errors.InvalidArgument(f"container port {self.container_port!r} is out of range")
        if not isinstance(self.host_port, int) or not 0 <= self.host_port <= 65535:
            raise errors.InvalidArgument(f"host port {self.host_port!r} is out of range")
        if self.protocol not in _PROTOCOLS:
            raise errors.InvalidArgument(
                f"protocol {self.protocol!r} is not one of {', '.join(_PROTOCOLS)}"
            )
        if self.host_ip:
            try:
                ipaddress.ip_address(self.host_ip)
            except ValueError:
                raise errors.InvalidArgument(f"host address {self.host_ip!r} is invalid") from None

    def to_cni(self) -> dict[str, object]:
        """The ``portMappings`` entry portmap takes in its runtimeConfig."""
        entry: dict[str, object] = {
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol,
        }
        if self.host_ip:
            entry["hostIP"] = self.host_ip
        return entry

    def __str__(self) -> str:
        ip = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        host = f"{ip}:{self.host_port}" if ip else str(self.host_port)
        return f"{host}->{self.container_port}/{self.protocol}"


def parse_port(spec: object) -> PortMapping:
    """A :class:`PortMapping` from a ``docker -p`` style string (or itself).

    Raises:
        InvalidArgument: not of the form ``[ip:][host:]container[/proto]``,
            a port out of range, an unknown protocol or a malformed address.
    """
    if isinstance(spec, PortMapping):
        return spec
    if not isinstance(spec, str):
        raise errors.InvalidArgument(f"port spec must be a string, not {type(spec).__name__}")
    m = _SPEC.fullmatch(spec.strip())
    if m is None:
        raise errors.InvalidArgument(
            f"port spec {spec!r} is not [host_ip:][host_port:]container_port[/protocol]"
        )
    ip = m["ip"] or ""
    if ip.startswith("["):
        ip = ip[1:-1]
    host = m["host"]
    if m["ip"] and host is None:
        # As docker: an address comes with a host port field ("ip::80" for any).
        raise errors.InvalidArgument(f"port spec {spec!r}: give the host port after the address")
    try:
        return PortMapping(
            container_port=int(m["container"]),
            host_port=int(host) if host else 0,
            protocol=m["proto"] or "tcp",
            host_ip=ip,
        )
    except errors.InvalidArgument as exc:
        raise errors.InvalidArgument(f"port spec {spec!r}: {exc.message}") from None


class PortReservation:
    """Bound sockets holding published host ports; :meth:`close` lets them go."""

    def __init__(self) -> None:
        self._sockets: list[socket.socket] = []

    def close(self) -> None:
        for s in self._sockets:
            s.close()
        self._sockets.clear()

    def _hold(self, s: socket.socket) -> None:
        self._sockets.append(s)


def _socket_for(mapping: PortMapping) -> tuple[socket.socket, str]:
    ip = mapping.host_ip or "0.0.0.0"
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    if mapping.protocol == "tcp":
        kind, proto = socket.SOCK_STREAM, 0
    elif mapping.protocol == "udp":
        kind, proto = socket.SOCK_DGRAM, 0
    else:
        kind, proto = socket.SOCK_STREAM, socket.IPPROTO_SCTP
    return socket.socket(family, kind, proto), ip


def reserve(
    mappings: list[PortMapping], reservation: PortReservation, *, container_id: str | None = None
) -> list[PortMapping]:
    """Bind a socket for each mapping (a free port for host port 0); the
    mappings with their ports filled in.  All or nothing: on a refusal the
    sockets bound so far are closed again.

    Raises:
        AlreadyExists: a host port is taken (by another program, or twice here).
        InvalidArgument: the host address is not one of this host's.
    """
    held: list[socket.socket] = []
    out = []
    try:
        for m in mappings:
            s, ip = _socket_for(m)
            held.append(s)
            try:
                # No SO_REUSEADDR: our bind must make every other bind fail.
                s.bind((ip, m.host_port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise errors.AlreadyExists(
                        f"host port {m.host_port}/{m.protocol} on {ip} is already in use",
                        container_id=container_id,
                    ) from None
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise errors.InvalidArgument(
                        f"{ip} is not an address of this host", container_id=container_id
                    ) from None
                raise errors.from_os_error(
                    exc, f"cannot publish {m}", container_id=container_id
                ) from exc
            out.append(PortMapping(m.container_port, s.getsockname()[1], m.protocol, m.host_ip))
    except BaseException:
        for s in held:
            with contextlib.suppress(OSError):
                s.close()
        raise
    for s in held:
        reservation._hold(s)
    return out


def hold(ports: Iterable[PortMapping], container_id: str) -> PortReservation:
    """A new reservation holding the host ports of ``ports``; on a refusal
    nothing stays bound."""
    reservation = PortReservation()
    try:
        reserve(list(ports), reservation, container_id=container_id)
    except BaseException:
        reservation.close()
        raise
    return reservation
