"""Releasing what attachments left behind (:meth:`NetworkManager.release_stale`):
containers no longer live, and the remains of an attach a crash interrupted."""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

from .. import errors
from .._log import get_logger
from ._bridge import DefaultNetwork, host_local_leases
from ._cni import CNI
from ._container_lock import container_locked, drop_lock
from ._netns import remove_netns
from ._record import listdir, reachable
from ._runtime import RuntimeConf

__all__ = ["Sweep", "release_orphans"]

log = get_logger("network")


class Sweep:
    """One :meth:`NetworkManager.release_stale` pass.  One container's
    failure must not strand the others': each step is tried, and the first
    failure raised once everything was."""

    def __init__(self) -> None:
        self.released: set[str] = set()
        self.failures: list[errors.SupervisorError] = []

    async def release(self, cid: str, step: Callable[[], Awaitable[None]]) -> None:
        try:
            await step()
            self.released.add(cid)
        except errors.SupervisorError as exc:
            log.warning("network.release_failed", container_id=cid, error=str(exc))
            self.failures.append(exc)

    def finish(self) -> list[str]:
        if self.released:
            log.info("network.release_stale", released=",".join(sorted(self.released)))
        if self.failures:
            raise self.failures[0]
        return sorted(self.released)


async def release_orphans(
    sweep: Sweep,
    orphan: Callable[[str], bool],
    *,
    cni: CNI,
    root: Path,
    default: DefaultNetwork,
    bound: float,
) -> None:
    """Release what no record names: the remains of an attach a crash
    interrupted between its steps.  Each under the container's lock, so
    that plugins the crash left running finish first."""
    locks = root / "locks"

    def locked(cid: str, step: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            async with container_locked(locks, cid, bound):
                await step()

        return run

    # ADD results without a record (a crash between the two writes).
    for cached in cni.cache.all():
        cid = cached.runtime.container_id
        if orphan(cid):
            rt = await reachable(cached.runtime)
            await sweep.release(cid, locked(cid, partial(cni.delete, cached.network, rt)))
    # host-local leases nobody's cache knows of.
    subnet = default.subnet or await default.known_subnet()
    for cid, ifname in host_local_leases(root / "ipam", default.name):
        if orphan(cid) and subnet is not None:
            rt = RuntimeConf(container_id=cid, netns=None, ifname=ifname)
            conf = default.conflist(subnet)
            await sweep.release(cid, locked(cid, partial(cni.delete, conf, rt)))
    for entry in listdir(root / "netns"):
        if orphan(entry):
            await sweep.release(entry, locked(entry, partial(remove_netns, root / "netns" / entry)))
    for entry in listdir(root / "files"):
        if orphan(entry):
            shutil.rmtree(root / "files" / entry, ignore_errors=True)
    # Last, the locks of containers nothing else is left of.
    for entry in listdir(locks):
        if orphan(entry):

            async def drop(cid: str = entry) -> None:
                drop_lock(locks, cid)

            await sweep.release(entry, locked(entry, drop))
