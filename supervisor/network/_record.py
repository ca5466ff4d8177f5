"""What the network layer keeps on disk per container (:class:`Record`, in
the directory :class:`Records` reads and writes), and small helpers the
manager's steps share."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from .. import errors
from .._log import get_logger
from .._paths import read_small, write_new
from ._conflist import ConfList, valid_network_name
from ._info import NetworkInfo
from ._netns import is_netns_mount
from ._ports import PortMapping
from ._runtime import RuntimeConf

__all__ = ["Record", "Records", "has_capability", "listdir", "reachable"]

log = get_logger("network")


@dataclass(frozen=True, slots=True)
class Record:
    """One container's entry in ``containers/<id>.json``: written before
    anything is made, marked ``attached`` once everything is."""

    info: NetworkInfo
    cni_name: str | None  # the CNI network's name: the key of its cached results
    ifname: str
    args: tuple[tuple[str, str], ...]
    attached: bool

    @property
    def container_id(self) -> str:
        return self.info.container_id

    @property
    def ports(self) -> tuple[PortMapping, ...]:
        return self.info.ports

    def runtime(self) -> RuntimeConf:
        return RuntimeConf(
            container_id=self.container_id,
            netns=self.info.netns,
            ifname=self.ifname,
            args=self.args,
            capability_args={"portMappings": [p.to_cni() for p in self.ports]}
            if self.ports
            else {},
        )

    def replace(self, **changes: Any) -> Record:
        fields = {k: getattr(self, k) for k in self.__slots__}
        fields.update(changes)
        return Record(**fields)

    def to_dict(self) -> dict[str, Any]:
        return {
            "info": self.info.to_dict(),
            "cni_name": self.cni_name,
            "ifname": self.ifname,
            "args": [list(a) for a in self.args],
            "attached": self.attached,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        name = data.get("cni_name")
        return cls(
            info=NetworkInfo.from_dict(data["info"]),
            cni_name=valid_network_name(name) if name is not None else None,
            ifname=str(data.get("ifname") or "eth0"),
            args=tuple((str(k), str(v)) for k, v in data.get("args") or ()),
            attached=bool(data.get("attached")),
        )


class Records:
    """The ``containers/`` directory: one ``<id>.json`` per container.
    ``bridge`` names the default network, what an unreadable record is
    taken to have been on."""

    def __init__(self, directory: Path, bridge: str) -> None:
        self.directory = directory
        self.bridge = bridge

    def path(self, cid: str) -> Path:
        return self.directory / f"{cid}.json"

    def save(self, record: Record) -> None:
        write_new(self.path(record.container_id), json.dumps(record.to_dict()).encode())

    def load(self, cid: str) -> Record | None:
        try:
            return Record.from_dict(json.loads(read_small(self.path(cid), 1 << 20)))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, errors.SupervisorError) as exc:
            log.warning("network.record_unreadable", container_id=cid, error=str(exc))
            # Unreadable: still ours to release, with what the name tells.
            return Record(NetworkInfo(cid, "bridge", None), self.bridge, "eth0", (), False)

    def all(self) -> list[Record]:
        out = []
        for entry in listdir(self.directory):
            if entry.endswith(".json") and not entry.startswith("."):
                record = self.load(entry[: -len(".json")])
                if record is not None:
                    out.append(record)
        return out


async def reachable(rt: RuntimeConf) -> RuntimeConf:
    """``rt`` for a DEL: without its namespace if that is gone (unmounted
    behind our back, or a reboot left only the empty file).  Plugins must
    then still free what they hold outside it (the IPAM lease), while a path
    that is not a namespace would make them fail."""
    if rt.netns is None or await anyio.to_thread.run_sync(is_netns_mount, Path(rt.netns)):
        return rt
    return RuntimeConf(rt.container_id, None, rt.ifname, rt.args, rt.capability_args)


def has_capability(conflist: ConfList, capability: str) -> bool:
    return any((p.get("capabilities") or {}).get(capability) is True for p in conflist.plugins)


def listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []
