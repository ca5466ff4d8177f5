"""What an attached container got (:class:`NetworkInfo`) and the OCI spec
changes that put it into its network (:func:`apply_network`)."""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import errors
from ._ports import PortMapping

__all__ = ["NetworkInfo", "apply_network", "network_changes", "parse_result"]


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    """One container's network, as attached.

    Attributes:
        container_id: the container.
        network: the network's name as the caller gave it (``"bridge"``,
            ``"none"``, ``"host"`` or a conflist's name).
        netns: the network namespace's path (``None`` for ``"host"``).
        interface: the interface inside the namespace (``"eth0"``), if any.
        ip: the container's IPv4 address (without prefix), if it got one.
        prefix_length: the prefix length of ``ip``'s subnet.
        gateway: the gateway the plugins reported.
        mac: the interface's MAC address, if reported.
        ports: the published ports, with the host ports actually used.
        hostname: the container's host name.
        resolv_conf, hosts, hostname_file: the files to bind-mount on the
            container's ``/etc/resolv.conf``, ``/etc/hosts``, ``/etc/hostname``
            (``None`` where the container keeps its own).
    """

    container_id: str
    network: str
    netns: str | None
    interface: str | None = None
    ip: str | None = None
    prefix_length: int | None = None
    gateway: str | None = None
    mac: str | None = None
    ports: tuple[PortMapping, ...] = ()
    hostname: str | None = None
    resolv_conf: str | None = None
    hosts: str | None = None
    hostname_file: str | None = None

    def host_port(self, container_port: int, protocol: str = "tcp") -> int:
        """The host port published for ``container_port``/``protocol``.

        Raises:
            NotFound: that port is not published.
        """
        for p in self.ports:
            if p.container_port == container_port and p.protocol == protocol:
                return p.host_port
        raise errors.NotFound(
            f"port {container_port}/{protocol} is not published", container_id=self.container_id
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in self.__slots__}
        out["ports"] = [
            {
                "container_port": p.container_port,
                "host_port": p.host_port,
                "protocol": p.protocol,
                "host_ip": p.host_ip,
            }
            for p in self.ports
        ]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkInfo:
        fields: dict[str, Any] = {k: data.get(k) for k in cls.__slots__ if k != "ports"}
        ports = tuple(PortMapping(**p) for p in data.get("ports") or ())
        return cls(ports=ports, **fields)


def parse_result(result: Mapping[str, Any] | None, ifname: str) -> dict[str, Any]:
    """The interface, address, gateway and MAC of a CNI result (0.3.0 - 1.x,
    or 0.1/0.2's ``ip4``), for the interface named ``ifname`` in the sandbox."""
    out: dict[str, Any] = {}
    if not result:
        return out
    interfaces = result.get("interfaces") or []
    sandbox_index = None
    for i, iface in enumerate(interfaces):
        if isinstance(iface, dict) and iface.get("name") == ifname and iface.get("sandbox"):
            sandbox_index = i
            out["interface"] = ifname
            if isinstance(iface.get("mac"), str):
                out["mac"] = iface["mac"]
    ips = result.get("ips") or []
    if not ips and isinstance(result.get("ip4"), dict):
        ips = [result["ip4"]]
    for entry in ips:
        if not isinstance(entry, dict):
            continue
        index = entry.get("interface")
        if sandbox_index is not None and index is not None and index != sandbox_index:
            continue
        try:
            iface = ipaddress.ip_interface(str(entry.get("address") or entry.get("ip")))
        except ValueError:
            continue
        if iface.version != 4:
            continue
        out["ip"] = str(iface.ip)
        out["prefix_length"] = iface.network.prefixlen
        if isinstance(entry.get("gateway"), str):
            out["gateway"] = entry["gateway"]
        out.setdefault("interface", ifname)
        break
    return out


def network_changes(info: NetworkInfo) -> dict[str, Any]:
    """The OCI spec changes that put a container into ``info``'s network:
    ``namespace`` (the ``linux.namespaces`` entry, ``None`` for the host's
    network), ``hostname`` and ``mounts`` (the DNS files' bind mounts)."""
    files = {
        "/etc/resolv.conf": info.resolv_conf,
        "/etc/hosts": info.hosts,
        "/etc/hostname": info.hostname_file,
    }
    return {
        "namespace": ({"type": "network", "path": info.netns} if info.netns is not None else None),
        "hostname": info.hostname,
        "mounts": [
            {
                "destination": dst,
                "type": "bind",
                "source": src,
                "options": ["rbind", "rprivate", "rw"],
            }
            for dst, src in files.items()
            if src
        ],
    }


def apply_network(spec: Mapping[str, Any], info: NetworkInfo) -> dict[str, Any]:
    """A copy of OCI ``spec`` with :func:`network_changes` applied:
    ``linux.namespaces`` gets the network namespace's path (or loses its
    network entry for ``"host"``), ``hostname`` is set (when the spec has a
    UTS namespace), and the DNS files are bind-mounted over
    ``/etc/resolv.conf``, ``/etc/hosts`` and ``/etc/hostname`` (replacing any
    mounts there).  ``spec`` is not changed.

    Example::

        info = await nm.attach("web", ports=["18080:80"])
        spec = apply_network(supervisor.default_spec(["httpd", "-f"], rootfs), info)
    """
    changes = network_changes(info)
    out = copy.deepcopy(dict(spec))
    linux = out.setdefault("linux", {})
    namespaces = [ns for ns in linux.get("namespaces", []) if ns.get("type") != "network"]
    if changes["namespace"] is not None:
        namespaces.append(changes["namespace"])
    linux["namespaces"] = namespaces
    if changes["hostname"] and any(ns.get("type") == "uts" for ns in namespaces):
        out["hostname"] = changes["hostname"]
    added = changes["mounts"]
    replaced = {m["destination"] for m in added}
    out["mounts"] = [m for m in out.get("mounts", []) if m.get("destination") not in replaced]
    out["mounts"].extend(added)
    return out
