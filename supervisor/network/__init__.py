"""Container networking through CNI plugins (issue 23).

::

    _cni.py        the CNI protocol: commands, chaining
    _runtime.py    RuntimeConf: what a plugin is told about one attachment
    _cache.py      ADD results kept on disk for DEL and CHECK
    _run.py        one plugin run: pipes, pidfd, timeout, process-group kill
    _conflist.py   network configuration lists, checked on load
    _errors.py     a plugin's CNI error as a supervisor.errors class
    _netns.py      network namespaces made and owned by the library
    _ports.py      port specs and the sockets that hold published ports
    _dns.py        resolv.conf, hosts, hostname
    _host.py       the host's routes and addresses, bridges, locks
    _info.py       NetworkInfo and the OCI spec changes
    _manager.py    NetworkManager: attach, detach, release_stale
    _bridge.py     the default network: its subnet, conflist and bridge
    _stale.py      releasing what stale or interrupted attachments left
    _record.py     the per-container record kept on disk

See docs/networking.md.
"""

from __future__ import annotations

from ._cache import CachedResult
from ._cni import CNI, VersionInfo
from ._conflist import ConfList, find_conflist
from ._dns import DnsConfig
from ._errors import PluginError
from ._host import SUBNET_POOL, scoped_name
from ._info import NetworkInfo, apply_network, network_changes
from ._manager import DEFAULT_CNI_PATH, NetworkManager, NetworkTimeouts
from ._ports import PortMapping, parse_port
from ._runtime import RuntimeConf

__all__ = [
    # the API
    "NetworkManager",
    "NetworkTimeouts",
    "NetworkInfo",
    "apply_network",
    "network_changes",
    "DnsConfig",
    "PortMapping",
    "parse_port",
    "PluginError",
    "DEFAULT_CNI_PATH",
    "SUBNET_POOL",
    "scoped_name",
    # the protocol, for callers driving plugins themselves
    "CNI",
    "CachedResult",
    "ConfList",
    "RuntimeConf",
    "VersionInfo",
    "find_conflist",
]
