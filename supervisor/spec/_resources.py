"""The checks on an OCI ``LinuxResources`` update, before any RPC.

containerd passes the JSON on to runc, which ignores keys it does not know:
a misspelt ``{"memroy": ...}`` would be accepted and do nothing. So the
update is checked against the runtime spec's schema here, and what cannot be
sent faithfully (unknown keys, wrong types, values out of range) is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import errors
from ._builder import json_copy

__all__ = ["checked_resources"]

_I64 = (-(1 << 63), (1 << 63) - 1)
_U64 = (0, (1 << 64) - 1)
_U16 = (0, 0xFFFF)
_U32 = (0, (1 << 32) - 1)

# field -> ("int", (lo, hi)) | "bool" | "str" | a nested schema | ["list", item schema]
_Schema = Mapping[str, Any]

_DEVICE_RATE: _Schema = {"major": ("int", _I64), "minor": ("int", _I64), "rate": ("int", _U64)}
_WEIGHT_DEVICE: _Schema = {
    "major": ("int", _I64),
    "minor": ("int", _I64),
    "weight": ("int", _U16),
    "leafWeight": ("int", _U16),
}

_SCHEMA: _Schema = {
    "devices": [
        "list",
        {
            "allow": "bool",
            "type": "str",
            "major": ("int", _I64),
            "minor": ("int", _I64),
            "access": "str",
        },
    ],
    "memory": {
        "limit": ("int", (-1, _I64[1])),
        "reservation": ("int", (-1, _I64[1])),
        "swap": ("int", (-1, _I64[1])),
        "kernel": ("int", (-1, _I64[1])),
        "kernelTCP": ("int", (-1, _I64[1])),
        "swappiness": ("int", (0, 100)),
        "disableOOMKiller": "bool",
        "useHierarchy": "bool",
        "checkBeforeUpdate": "bool",
    },
    "cpu": {
        "shares": ("int", (0, 262144)),
        "quota": ("int", (-1, _I64[1])),
        "burst": ("int", _U64),
        "period": ("int", (0, 1_000_000)),
        "realtimeRuntime": ("int", _I64),
        "realtimePeriod": ("int", _U64),
        "cpus": "str",
        "mems": "str",
        "idle": ("int", (0, 1)),
    },
    "pids": {"limit": ("int", (-1, _I64[1]))},
    "blockIO": {
        "weight": ("int", (10, 1000)),
        "leafWeight": ("int", (10, 1000)),
        "weightDevice": ["list", _WEIGHT_DEVICE],
        "throttleReadBpsDevice": ["list", _DEVICE_RATE],
        "throttleWriteBpsDevice": ["list", _DEVICE_RATE],
        "throttleReadIOPSDevice": ["list", _DEVICE_RATE],
        "throttleWriteIOPSDevice": ["list", _DEVICE_RATE],
    },
    "hugepageLimits": ["list", {"pageSize": "str", "limit": ("int", _U64)}],
    "network": {
        "classID": ("int", _U32),
        "priorities": ["list", {"name": "str", "priority": ("int", _U32)}],
    },
    "rdma": "map",
    "unified": "strmap",
}


def _check(value: Any, schema: Any, where: str) -> None:
    if isinstance(schema, tuple):
        lo, hi = schema[1]
        if isinstance(value, bool) or not isinstance(value, int):
            raise errors.InvalidArgument(f"{where} must be an integer, not {value!r}")
        if not lo <= value <= hi:
            raise errors.InvalidArgument(f"{where}={value} is out of range ({lo}..{hi})")
    elif schema == "bool":
        if not isinstance(value, bool):
            raise errors.InvalidArgument(f"{where} must be a boolean, not {value!r}")
    elif schema == "str":
        if not isinstance(value, str):
            raise errors.InvalidArgument(f"{where} must be a string, not {value!r}")
    elif schema == "map":
        if not isinstance(value, dict):
            raise errors.InvalidArgument(f"{where} must be a mapping")
    elif schema == "strmap":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise errors.InvalidArgument(f"{where} must map strings to strings")
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise errors.InvalidArgument(f"{where} must be a list")
        for i, item in enumerate(value):
            _check(item, schema[1], f"{where}[{i}]")
    else:
        if not isinstance(value, dict):
            raise errors.InvalidArgument(f"{where} must be a mapping, not {value!r}")
        for key, item in value.items():
            if key not in schema:
                known = ", ".join(sorted(schema))
                raise errors.InvalidArgument(f"{where}.{key} is not a known field ({known})")
            if item is not None:
                _check(item, schema[key], f"{where}.{key}")


def checked_resources(resources: object, *, container_id: str | None = None) -> dict[str, Any]:
    """A private copy of ``resources`` after the schema checks.

    Raises:
        InvalidArgument: not a mapping, not JSON, or not ``LinuxResources``.
    """
    if not isinstance(resources, Mapping):
        raise errors.InvalidArgument(
            f"resources must be a mapping, not {type(resources).__name__}",
            container_id=container_id,
        )
    body = json_copy(resources, "resources")
    try:
        _check(body, _SCHEMA, "resources")
    except errors.InvalidArgument as exc:
        exc.container_id = container_id
        raise
    return body
