"""What the pytest plugin adds for networks: releasing what a test's
containers held on a network when its namespace is emptied behind the
library's back."""

from __future__ import annotations

from pathlib import Path

__all__ = ["release_networks"]


async def release_networks(state_dir: Path, namespace: str) -> list[str]:
    """After the namespace was emptied: release every network attachment of
    its containers (leases, iptables rules, veths, namespace mounts) that no
    delete through the library released, and the bridge. Returns the ids."""
    from ..client._network import NETWORKS_DIR
    from ..network import NetworkManager

    directory = state_dir / NETWORKS_DIR / namespace
    if not directory.is_dir():
        return []
    async with NetworkManager(directory) as manager:
        return await manager.release_stale([])
