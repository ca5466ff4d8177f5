"""An attach's arguments checked, and a network's name resolved to its
conflist, before anything is made."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import anyio

from .. import errors
from .._ids import validate_id
from ._bridge import DefaultNetwork
from ._cni import CNI
from ._conflist import ConfList, find_conflist
from ._dns import hostname_for, valid_hostname
from ._ports import PortMapping, parse_port
from ._record import has_capability
from ._runtime import valid_ifname

__all__ = ["Resolver", "checked_request"]


@dataclass(frozen=True, slots=True)
class Resolver:
    """Network names to conflists: the built-in ones, then ``conf_dir``'s."""

    conf_dir: Path | None
    default: DefaultNetwork
    cni: CNI

    async def resolve(self, network: str, conf_dir: Path | str | None = None) -> ConfList | None:
        """The conflist of ``network`` (None for ``"none"`` and ``"host"``),
        its plugins checked to be there."""
        conf = Path(conf_dir) if conf_dir is not None else self.conf_dir
        if not isinstance(network, str):
            raise errors.InvalidArgument(f"network must be a string, not {type(network).__name__}")
        if network in ("none", "host"):
            return None
        if network == "bridge":
            conflist = self.default.placeholder()
        elif conf is None:
            raise errors.NotFound(f"unknown network {network!r} (no configuration directory)")
        else:
            conflist = await anyio.to_thread.run_sync(find_conflist, conf, network)
        self.cni.check_plugins(conflist)
        return conflist


async def checked_request(
    resolver: Resolver,
    cid: str,
    network: str,
    ports: Iterable[str | PortMapping],
    hostname: str | None,
    ifname: str,
    conf_dir: Path | str | None = None,
) -> tuple[str, list[PortMapping], ConfList | None]:
    """attach's arguments checked: the hostname, the ports, the network."""
    validate_id(cid, kind="container id")
    valid_ifname(ifname)
    name = valid_hostname(hostname) if hostname is not None else hostname_for(cid)
    mappings = [parse_port(p) for p in ports]
    conflist = await resolver.resolve(network, conf_dir)
    if mappings and (conflist is None or not has_capability(conflist, "portMappings")):
        raise errors.InvalidArgument(
            f"network {network!r} cannot publish ports (no plugin with portMappings)",
            container_id=cid,
        )
    if network == "bridge" and any(":" in m.host_ip for m in mappings):
        # portmap would accept it and publish nothing: the default
        # network gives containers IPv4 addresses only.
        raise errors.InvalidArgument(
            "the default network is IPv4 only: publish on an IPv4 host address",
            container_id=cid,
        )
    return name, mappings, conflist
