"""What a runtime tells a CNI plugin about one attachment: the container,
its namespace and interface (``CNI_CONTAINERID``, ``CNI_NETNS``,
``CNI_IFNAME``, ``CNI_ARGS``), and the capability arguments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import errors

__all__ = ["RuntimeConf", "valid_ifname"]

_IFNAME_MAX = 15


def valid_ifname(name: object) -> str:
    """An interface name the kernel accepts (at most 15 bytes, no '/', ':' or space)."""
    if (
        not isinstance(name, str)
        or not name
        or len(name.encode()) > _IFNAME_MAX
        or name in (".", "..")
        or any(c in name for c in "/: \t\n")
    ):
        raise errors.InvalidArgument(f"interface name {name!r} is invalid")
    return name


@dataclass(frozen=True, slots=True)
class RuntimeConf:
    """What a runtime tells a plugin about one attachment.

    Attributes:
        container_id: ``CNI_CONTAINERID``.
        netns: ``CNI_NETNS``, the network namespace's path (``None`` for
            VERSION/STATUS, or for a DEL after the namespace is gone).
        ifname: ``CNI_IFNAME``, the interface to make inside the namespace.
        args: ``CNI_ARGS`` pairs (``K=V;K2=V2``).
        capability_args: values for the capabilities plugins declare
            (``portMappings``, ``dns``...), passed as ``runtimeConfig``.
    """

    container_id: str
    netns: str | None
    ifname: str = "eth0"
    args: tuple[tuple[str, str], ...] = ()
    capability_args: Mapping[str, Any] = field(default_factory=dict)
