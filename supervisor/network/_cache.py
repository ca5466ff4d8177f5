"""The CNI result cache: what ADD returned, kept on disk for DEL and CHECK
(a DEL runs the plugins with the result ADD gave, even after the
application restarted or the configuration changed)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import errors
from .._log import get_logger
from .._paths import private_dir, read_small, write_new
from ._conflist import ConfList
from ._run import MAX_OUTPUT
from ._runtime import RuntimeConf

__all__ = ["CachedResult", "ResultCache"]

log = get_logger("network.cni")


@dataclass(frozen=True, slots=True)
class CachedResult:
    """What the cache holds about one attachment: enough to DEL it later,
    even after the application restarted or the configuration changed."""

    network: ConfList
    runtime: RuntimeConf
    result: Mapping[str, Any] | None  # None: ADD started but did not finish


class ResultCache:
    """Results of ADD on disk, one file per (network, container, interface),
    as libcni keeps them (``<dir>/<network>-<container>-<ifname>``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, network: str, container_id: str, ifname: str) -> Path:
        return self.directory / f"{network}-{container_id}-{ifname}"

    def put(self, network: ConfList, rt: RuntimeConf, result: Mapping[str, Any] | None) -> None:
        private_dir(self.directory)
        record = {
            "kind": "cniCacheV1",
            "containerId": rt.container_id,
            "ifName": rt.ifname,
            "networkName": network.name,
            "netns": rt.netns,
            "cniArgs": [list(a) for a in rt.args],
            "capabilityArgs": dict(rt.capability_args),
            "config": network.to_dict(),
            "result": result,
        }
        write_new(self._path(network.name, rt.container_id, rt.ifname), json.dumps(record).encode())

    def get(self, network: str, container_id: str, ifname: str) -> CachedResult | None:
        return self._load(self._path(network, container_id, ifname))

    def remove(self, network: str, container_id: str, ifname: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(network, container_id, ifname))

    def all(self) -> list[CachedResult]:
        """Every readable entry (a corrupt one is logged and skipped)."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name.startswith("."):
                continue
            entry = self._load(self.directory / name)
            if entry is not None:
                out.append(entry)
        return out

    def _load(self, path: Path) -> CachedResult | None:
        try:
            data = json.loads(read_small(path, MAX_OUTPUT))
            net = ConfList.from_dict(data["config"])
            rt = RuntimeConf(
                container_id=data["containerId"],
                netns=data.get("netns"),
                ifname=data["ifName"],
                args=tuple((str(k), str(v)) for k, v in data.get("cniArgs", [])),
                capability_args=data.get("capabilityArgs") or {},
            )
            result = data.get("result")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, errors.InvalidArgument) as exc:
            log.warning("cni.cache_unreadable", path=str(path), error=str(exc))
            return None
        return CachedResult(net, rt, result if isinstance(result, dict) else None)
