"""The name-resolution files a networked container gets: resolv.conf, hosts, hostname.

``resolv.conf`` is the caller's, or the host's with loopback resolvers
removed: a resolver on the host's 127.0.0.53 (systemd-resolved, dnsmasq) is
not reachable from another network namespace, where 127.0.0.53 is the
container's own loopback.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import errors
from .._log import get_logger
from .._paths import private_dir, read_small, write_new
from ._info import NetworkInfo

__all__ = [
    "DnsConfig",
    "hostname_for",
    "hosts_file",
    "resolv_conf",
    "valid_hostname",
    "write_files",
]

log = get_logger("network.dns")

_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)
_HOST_RESOLV = Path("/etc/resolv.conf")
# Where systemd-resolved lists the upstream servers behind its 127.0.0.53
# (Docker reads it for the same reason).
_RESOLVED_UPSTREAM = Path("/run/systemd/resolve/resolv.conf")


@dataclass(frozen=True, slots=True)
class DnsConfig:
    """A container's resolver settings (``None`` fields: take the host's).

    Attributes:
        nameservers: resolver addresses.
        search: search domains.
        options: resolv.conf options (``ndots:2``...).
    """

    nameservers: tuple[str, ...] | None = None
    search: tuple[str, ...] | None = None
    options: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for ns in self.nameservers or ():
            try:
                ipaddress.ip_address(ns)
            except ValueError:
                raise errors.InvalidArgument(f"nameserver {ns!r} is not an IP address") from None
        for item in (*(self.search or ()), *(self.options or ())):
            if not isinstance(item, str) or not item or any(c.isspace() for c in item):
                raise errors.InvalidArgument(f"resolv.conf entry {item!r} is invalid")


def valid_hostname(name: object) -> str:
    """``name`` if it is a valid host name (RFC 1123 labels, 63 bytes at most,
    as ``sethostname`` and the OCI spec allow)."""
    if (
        not isinstance(name, str)
        or len(name) > 63
        or not all(_LABEL.fullmatch(label) for label in name.split("."))
    ):
        raise errors.InvalidArgument(f"hostname {name!r} is invalid")
    return name


def hostname_for(container_id: str) -> str:
    """The default host name: the container id made hostname-safe."""
    name = re.sub(r"[^A-Za-z0-9-]", "-", container_id)[:63].strip("-")
    return name or "container"


def _parse(text: str) -> tuple[list[str], list[str], list[str]]:
    nameservers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        key, rest = fields[0], fields[1:]
        if key == "nameserver" and rest:
            nameservers.append(rest[0])
        elif key in ("search", "domain"):
            search = rest  # the last one wins, as in the resolver
        elif key == "options":
            options.extend(rest)
    return nameservers, search, options


def _not_loopback(address: str) -> bool:
    try:
        return not ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def resolv_conf(
    dns: DnsConfig | None = None,
    *,
    host_file: Path = _HOST_RESOLV,
    upstream_file: Path = _RESOLVED_UPSTREAM,
) -> str:
    """The container's ``/etc/resolv.conf``: the host's minus loopback
    resolvers (when that leaves none, systemd-resolved's upstream servers),
    each field replaced by the caller's where given."""
    nameservers, search, options = _parse(_read(host_file))
    nameservers = [ns for ns in nameservers if _not_loopback(ns)]
    if not nameservers:
        upstream = _parse(_read(upstream_file))[0]
        nameservers = [ns for ns in upstream if _not_loopback(ns)]
    if dns is not None:
        if dns.nameservers is not None:
            nameservers = list(dns.nameservers)
        if dns.search is not None:
            search = list(dns.search)
        if dns.options is not None:
            options = list(dns.options)
    if not nameservers:
        # No public fallback (docker adds 8.8.8.8): the library sends nothing
        # anywhere the caller did not ask for.
        log.info("dns.no_nameserver")
    lines = [f"nameserver {ns}" for ns in nameservers]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def hosts_file(hostname: str, addresses: Sequence[str]) -> str:
    """The container's ``/etc/hosts``: loopback names and its own name on its
    addresses (on 127.0.1.1 when it has none, as Debian does)."""
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "ff00::0\tip6-mcastprefix",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
    ]
    short = hostname.split(".", 1)[0]
    names = hostname if short == hostname else f"{hostname} {short}"
    for address in addresses or ["127.0.1.1"]:
        lines.append(f"{address}\t{names}")
    return "\n".join(lines) + "\n"


def write_files(
    info: NetworkInfo, files: Path, got: dict[str, Any], dns: DnsConfig | None
) -> NetworkInfo:
    """Write the container's resolv.conf, hosts and hostname into ``files``;
    ``info`` completed with them and with ``got`` (a parsed CNI result)."""
    private_dir(files, 0o711)
    hostname = info.hostname or hostname_for(info.container_id)
    resolv_src = files / "resolv.conf"
    hosts_src = files / "hosts"
    if info.network == "host":
        # Copies, never the host's own files: the container may write to
        # its /etc/hosts, and must not reach the host's through it.  On
        # the host's network its loopback resolvers work.
        write_new(resolv_src, read_small(Path("/etc/resolv.conf")), 0o644)
        write_new(hosts_src, read_small(Path("/etc/hosts")), 0o644)
    else:
        write_new(resolv_src, resolv_conf(dns).encode(), 0o644)
        addresses = [got["ip"]] if got.get("ip") else []
        write_new(hosts_src, hosts_file(hostname, addresses).encode(), 0o644)
    hostname_src = files / "hostname"
    write_new(hostname_src, (hostname + "\n").encode(), 0o644)
    return NetworkInfo(
        container_id=info.container_id,
        network=info.network,
        netns=info.netns,
        interface=got.get("interface"),
        ip=got.get("ip"),
        prefix_length=got.get("prefix_length"),
        gateway=got.get("gateway"),
        mac=got.get("mac"),
        ports=info.ports,
        hostname=hostname,
        resolv_conf=str(resolv_src),
        hosts=str(hosts_src),
        hostname_file=str(hostname_src),
    )
