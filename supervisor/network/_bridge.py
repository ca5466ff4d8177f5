"""The default network ``"bridge"``: its subnet, its conflist, and the Linux
bridge it runs on.

The bridge is named after the state directory (``sv-<hash>``, see
:func:`scoped_name`), so two state directories never share a bridge, a CNI
network name (which scopes portmap's and bridge's per-container iptables
chains), or IPAM data.  Its subnet is kept in ``bridge.json`` and its
host-local leases under ``ipam/``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import errors
from .._paths import read_small, write_new
from ._cni import CNI
from ._conflist import ConfList
from ._host import (
    bridge_exists,
    bridge_subnet,
    choose_subnet,
    conflict,
    delete_bridge,
    file_lock,
    host_networks,
    scoped_name,
)
from ._record import listdir
from ._runtime import RuntimeConf

__all__ = ["HOST_LOCK", "DefaultNetwork", "host_local_leases", "parse_subnet"]

# Held while the default network's subnet is chosen and its bridge made, so
# two library instances (two state directories) never pick the same subnet.
HOST_LOCK = Path("/run/supervisor-network.lock")
# Checks the plugins are there before the subnet is chosen.
_PLACEHOLDER = ipaddress.IPv4Network("10.88.0.0/24")


def parse_subnet(subnet: str) -> ipaddress.IPv4Network:
    """A subnet the caller gave for the default network, checked."""
    try:
        fixed = ipaddress.IPv4Network(subnet)
    except ValueError as exc:
        raise errors.InvalidArgument(f"subnet {subnet!r} is invalid: {exc}") from None
    if fixed.prefixlen > 30:
        raise errors.InvalidArgument(f"subnet {subnet} is too small")
    return fixed


class DefaultNetwork:
    """The default network of one state directory (``root`` is its
    ``network/`` directory); ``fixed_subnet`` is the caller's, if given."""

    def __init__(
        self,
        state_dir: Path,
        root: Path,
        cni: CNI,
        fixed_subnet: ipaddress.IPv4Network | None,
        lock_bound: float,
    ) -> None:
        self.state_dir = state_dir
        self.root = root
        self.cni = cni
        self.name = scoped_name(state_dir)
        self.fixed_subnet = fixed_subnet
        self.lock_bound = lock_bound
        # Known once chosen (or found) in this process.
        self.subnet: ipaddress.IPv4Network | None = None

    def placeholder(self) -> ConfList:
        """The conflist as it will be: the subnet is only known once chosen."""
        return self.conflist(self.subnet or _PLACEHOLDER)

    async def add(self, rt: RuntimeConf) -> dict[str, Any]:
        """CNI ADD on the default network, choosing its subnet first if needed."""
        if self.subnet is not None and bridge_exists(self.name):
            return await self.cni.add(self.conflist(self.subnet), rt)
        # First use (or our bridge went away): choose the subnet and make the
        # bridge under the host-wide lock, so its route claims the subnet
        # before another instance looks.
        async with file_lock(HOST_LOCK, bound=self.lock_bound):
            subnet = await self._settle_subnet()
            self.subnet = subnet
            return await self.cni.add(self.conflist(subnet), rt)

    async def _settle_subnet(self) -> ipaddress.IPv4Network:
        if bridge_exists(self.name):
            existing = await bridge_subnet(self.name)
            if existing is not None:
                return existing
        used = await host_networks()
        wanted = self.fixed_subnet or await self.known_subnet()
        if wanted is not None:
            clash = conflict(wanted, used, own_dev=self.name)
            if clash is None:
                self._save_subnet(wanted)
                return wanted
            if self.fixed_subnet is not None:
                raise errors.AlreadyExists(
                    f"subnet {wanted} is already in use on this host ({clash.what})"
                )
        subnet = choose_subnet(self.state_dir, used, own_dev=self.name)
        self._save_subnet(subnet)
        return subnet

    async def known_subnet(self) -> ipaddress.IPv4Network | None:
        """The subnet an earlier run chose, if it is on record."""
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            data = json.loads(read_small(self.root / "bridge.json"))
            return ipaddress.IPv4Network(data["subnet"])
        return None

    def _save_subnet(self, subnet: ipaddress.IPv4Network) -> None:
        write_new(self.root / "bridge.json", json.dumps({"subnet": str(subnet)}).encode())

    def conflist(self, subnet: ipaddress.IPv4Network) -> ConfList:
        """bridge + host-local, portmap, firewall, on ``subnet``."""
        gateway = str(next(subnet.hosts()))
        return ConfList.from_dict(
            {
                "cniVersion": "1.0.0",
                "name": self.name,
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": self.name,
                        "isGateway": True,
                        "ipMasq": True,
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": str(subnet), "gateway": gateway}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "dataDir": str(self.root / "ipam"),
                        },
                    },
                    {"type": "portmap", "capabilities": {"portMappings": True}},
                    {"type": "firewall", "backend": "iptables"},
                ],
            }
        )

    async def remove_if_idle(self, in_use: Callable[[], bool]) -> None:
        """Delete the bridge when ``in_use()`` says nothing is attached or
        being attached, by any instance sharing the state directory."""
        if not bridge_exists(self.name) or in_use():
            return
        async with file_lock(self.root / "lock", bound=0, wait=False) as taken:
            # Taken only when no attach or detach of any instance is running.
            if taken and not in_use():
                await delete_bridge(self.name)
                self.subnet = None


def host_local_leases(ipam: Path, network: str | None = None) -> list[tuple[str, str]]:
    """(container id, ifname) of each host-local lease in the IPAM data
    directory ``ipam``: of ``network`` only, or of every network kept there."""
    out = []
    for net in [network] if network is not None else listdir(ipam):
        directory = ipam / net
        for entry in listdir(directory):
            if entry.startswith(("last_reserved_ip", "lock", ".")):
                continue
            with contextlib.suppress(OSError, UnicodeDecodeError):
                raw = read_small(directory / entry, 4096).decode()
                cid, _, ifname = raw.partition("\r\n")
                if cid:
                    out.append((cid.strip(), ifname.strip() or "eth0"))
    return out
