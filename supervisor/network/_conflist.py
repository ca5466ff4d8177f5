"""Network configuration lists (CNI spec, "Configuration format"), checked on load.

A conflist is JSON with a ``name``, a ``cniVersion`` and a list of
``plugins``, each an object with at least a ``type`` (the plugin binary's
name).  A single-plugin ``.conf`` file is read as a list of one.  Everything
is checked before any plugin runs, so a malformed file is an
:class:`~supervisor.errors.InvalidArgument` that changes nothing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import errors

__all__ = ["ConfList", "find_conflist", "valid_network_name", "version_tuple"]

# CNI spec: network names and plugin types are file-system safe names.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", re.ASCII)
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)", re.ASCII)
_MAX_FILE = 1 << 20
_EXTENSIONS = (".conflist", ".conf", ".json")


def valid_network_name(name: object, *, what: str = "network name") -> str:
    """``name`` if it is a valid CNI network name (also used as a file name)."""
    if not isinstance(name, str) or len(name) > 128 or _NAME.fullmatch(name) is None:
        raise errors.InvalidArgument(
            f"{what} {name!r} is invalid: use letters, digits, '_', '.' and '-', "
            "starting with a letter or digit"
        )
    return name


def version_tuple(version: str) -> tuple[int, int, int]:
    """``"1.0.0"`` as ``(1, 0, 0)``; InvalidArgument for anything else."""
    m = _VERSION.fullmatch(version) if isinstance(version, str) else None
    if m is None:
        raise errors.InvalidArgument(f"cniVersion {version!r} is not of the form X.Y.Z")
    return int(m[1]), int(m[2]), int(m[3])


@dataclass(frozen=True, slots=True)
class ConfList:
    """One checked network configuration list.

    Attributes:
        name: the network's name (``name``).
        cni_version: the version every plugin is called with (``cniVersion``).
        plugins: each plugin's configuration, in order, as given.
        disable_check: ``disableCheck``: CHECK is a no-op for this network.
        source: the file it was read from, if any (for messages).
    """

    name: str
    cni_version: str
    plugins: tuple[Mapping[str, Any], ...]
    disable_check: bool = False
    source: str | None = None

    @classmethod
    def from_dict(cls, data: object, *, source: str | None = None) -> ConfList:
        """Check a parsed conflist (or single-plugin conf).

        Raises:
            InvalidArgument: a missing or malformed field, named.
        """
        where = f" in {source}" if source else ""
        if not isinstance(data, dict):
            raise errors.InvalidArgument(f"network configuration{where} is not a JSON object")
        name = valid_network_name(data.get("name"), what=f"network name{where}")
        version = data.get("cniVersion")
        if not isinstance(version, str):
            raise errors.InvalidArgument(f"network {name!r}{where} has no cniVersion string")
        version_tuple(version)
        if "plugins" in data:
            plugins = data["plugins"]
            if not isinstance(plugins, list) or not plugins:
                raise errors.InvalidArgument(
                    f"network {name!r}{where}: 'plugins' must be a non-empty list"
                )
        elif "type" in data:
            # A single-plugin .conf: the file is the plugin's configuration.
            plugins = [{k: v for k, v in data.items() if k not in ("name", "cniVersion")}]
        else:
            raise errors.InvalidArgument(f"network {name!r}{where} has neither plugins nor type")
        checked = []
        for i, plugin in enumerate(plugins):
            if not isinstance(plugin, dict):
                raise errors.InvalidArgument(
                    f"network {name!r}{where}: plugin #{i} is not a JSON object"
                )
            valid_network_name(plugin.get("type"), what=f"plugin #{i} type{where}")
            caps = plugin.get("capabilities", {})
            if not isinstance(caps, dict):
                raise errors.InvalidArgument(
                    f"network {name!r}{where}: plugin #{i} capabilities is not an object"
                )
            checked.append(plugin)
        disable = data.get("disableCheck", False)
        if not isinstance(disable, bool):
            raise errors.InvalidArgument(f"network {name!r}{where}: disableCheck is not a boolean")
        return cls(name, version, tuple(checked), disable, source)

    @classmethod
    def from_bytes(cls, raw: bytes, *, source: str | None = None) -> ConfList:
        """Parse and check a conflist's JSON."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            where = f" {source}" if source else ""
            raise errors.InvalidArgument(
                f"network configuration{where} is not JSON: {exc}"
            ) from None
        return cls.from_dict(data, source=source)

    def to_dict(self) -> dict[str, Any]:
        """The conflist as JSON-ready data (what the result cache keeps)."""
        out: dict[str, Any] = {
            "cniVersion": self.cni_version,
            "name": self.name,
            "plugins": [dict(p) for p in self.plugins],
        }
        if self.disable_check:
            out["disableCheck"] = True
        return out

    def plugin_config(
        self,
        index: int,
        *,
        prev_result: Mapping[str, Any] | None,
        capability_args: Mapping[str, Any],
    ) -> bytes:
        """Plugin ``index``'s stdin: its configuration with the list's name and
        version, ``prevResult`` and the ``runtimeConfig`` for the capabilities
        it declares (and only those: CNI spec, "Deriving runtimeConfig")."""
        conf = dict(self.plugins[index])
        conf["name"] = self.name
        conf["cniVersion"] = self.cni_version
        caps = conf.get("capabilities") or {}
        runtime = {k: v for k, v in capability_args.items() if caps.get(k) is True}
        if runtime:
            conf["runtimeConfig"] = runtime
        else:
            conf.pop("runtimeConfig", None)
        if prev_result is not None:
            conf["prevResult"] = prev_result
        else:
            conf.pop("prevResult", None)
        return json.dumps(conf).encode()


def find_conflist(directory: Path, name: str) -> ConfList:
    """The network called ``name`` among the configuration files in
    ``directory`` (``*.conflist``, ``*.conf``, ``*.json``; as libcni, the
    first in lexical order whose ``name`` matches).

    Raises:
        InvalidArgument: ``name`` is malformed, or the matching file is.
        NotFound: no file in ``directory`` defines ``name``.
    """
    valid_network_name(name)
    try:
        entries = sorted(os.listdir(directory))
    except FileNotFoundError:
        raise errors.NotFound(
            f"network {name!r}: the configuration directory {directory} does not exist"
        ) from None
    except NotADirectoryError:
        raise errors.InvalidArgument(f"{directory} is not a directory") from None
    except OSError as exc:
        raise errors.from_os_error(
            exc, f"cannot read the configuration directory {directory}", given=True
        ) from exc
    for entry in entries:
        if not entry.endswith(_EXTENSIONS) or entry.startswith("."):
            continue
        path = directory / entry
        try:
            with open(path, "rb") as f:
                raw = f.read(_MAX_FILE + 1)
        except OSError:
            # Unreadable (a directory, a dangling or looping link): it names
            # no network, and only the file that claims the name may fail.
            continue
        if len(raw) > _MAX_FILE:
            continue
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            # Only the file that claims the name may fail the call: a
            # neighbour's broken JSON is not this network's business...
            if f'"{name}"'.encode() in raw:
                # ...unless it looks like ours: then say so rather than NotFound.
                return ConfList.from_bytes(raw, source=str(path))
            continue
        if isinstance(data, dict) and data.get("name") == name:
            return ConfList.from_dict(data, source=str(path))
    raise errors.NotFound(f"no network named {name!r} in {directory}")
