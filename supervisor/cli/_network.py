"""``run``'s network flags (``--network``, ``-p``, ``--cni-conf-dir``) as
``new_container``'s arguments, and the ports ``ps`` shows."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_network_options", "network_options", "ports_of"]

PORTS_LABEL = "supervisor.ports"  # as supervisor.client._network writes it


def add_network_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--network",
        default="none",
        metavar="NAME",
        help="none: a network namespace of its own with loopback only (default); "
        "host: the host's network; bridge: an address on the library's bridge, "
        "ports published with -p, DNS files; any other NAME: the CNI conflist "
        "of that name in --cni-conf-dir",
    )
    p.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        metavar="[IP:][HOST:]PORT[/udp]",
        help="publish a container port on the host, as docker run -p "
        "(HOST 0 or left out: any free port); needs --network bridge or a "
        "network with portmap",
    )
    p.add_argument(
        "--cni-conf-dir",
        metavar="DIR",
        help="where --network NAME's conflist is looked up (/etc/cni/net.d by convention)",
    )


def network_options(args: argparse.Namespace) -> dict[str, Any]:
    """``new_container``'s keywords for the flags.  ``host`` stays the spec
    edit ``run`` always made (no copies of the host's DNS files are mounted
    into a rootfs directory nobody asked to change)."""
    if args.network == "host" and not args.publish:
        return {}
    return {"network": args.network, "ports": args.publish, "cni_conf_dir": args.cni_conf_dir}


def ports_of(labels: dict[str, str]) -> str:
    """A container's published ports for ``ps``: ``127.0.0.1:18080->80/tcp, ...``."""
    return ", ".join(p for p in labels.get(PORTS_LABEL, "").split(",") if p)
