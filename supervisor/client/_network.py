"""The client's networks: ``network=`` and ``ports=`` of ``new_container``.

One :class:`~supervisor.network.NetworkManager` per client, made at first
use under ``<state_dir>/.network/<namespace>`` (namespaces never share
records, so a sweep in one cannot release another's containers), closed
with the client.  A container is attached before containerd creates it (its
spec then names the namespace's path, so every task of it, and a task
started again after a restart of the application or of containerd, joins
the same network) and released when it is deleted.

Whatever a crash left (leases, rules, veths and namespace mounts of
containers containerd no longer has) is released at the first use after
connecting and by :meth:`Client.restore`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from .. import errors
from .._log import get_logger
from ..network._info import NetworkInfo
from ..network._ports import PortMapping, parse_port
from ..network._record import Records, listdir
from ._pending import Pending

if TYPE_CHECKING:
    from ..domain._session import Session
    from ..network._manager import NetworkManager

__all__ = [
    "NETWORK_LABEL",
    "PORTS_LABEL",
    "ClientNetwork",
    "NetworkRequest",
    "checked_network",
    "network_labels",
]

_log = get_logger("client")

NETWORKS_DIR = ".network"
# What `supervisor ps` shows without reading our state directory: the
# network's name and address, and the published ports (for display only:
# any client of containerd can write labels).
NETWORK_LABEL = "supervisor.network"
PORTS_LABEL = "supervisor.ports"


@dataclass(frozen=True, slots=True)
class NetworkRequest:
    """``new_container``'s network arguments, checked."""

    network: str
    ports: tuple[PortMapping, ...]
    conf_dir: str | None


def checked_network(
    container_id: str,
    network: str,
    ports: Sequence[str | PortMapping] | None,
    conf_dir: str | os.PathLike[str] | None,
) -> NetworkRequest | None:
    """The network arguments checked before anything is made; ``None`` for
    ``"none"``, the private loopback namespace runc makes (no CNI at all)."""
    if not isinstance(network, str) or not network:
        raise errors.InvalidArgument(
            "network must be a non-empty string", container_id=container_id
        )
    if isinstance(ports, (str, bytes)):
        raise errors.InvalidArgument(
            "ports must be a list of port specs, not one string", container_id=container_id
        )
    mappings = tuple(p if isinstance(p, PortMapping) else parse_port(p) for p in ports or ())
    if network == "none":
        if mappings:
            raise errors.InvalidArgument(
                "ports need a network that publishes them (network='bridge', say)",
                container_id=container_id,
            )
        return None
    return NetworkRequest(network, mappings, os.fspath(conf_dir) if conf_dir else None)


def format_port(p: PortMapping) -> str:
    """``127.0.0.1:18080->80/tcp``, as docker ps shows a published port."""
    host = f"[{p.host_ip}]" if ":" in p.host_ip else p.host_ip
    return f"{host}:{p.host_port}->{p.container_port}/{p.protocol}"


def network_labels(info: NetworkInfo) -> dict[str, str]:
    """The labels a container on a network gets (see ``PORTS_LABEL``)."""
    labels = {NETWORK_LABEL: f"{info.network} {info.ip}" if info.ip else info.network}
    if info.ports:
        labels[PORTS_LABEL] = ",".join(format_port(p) for p in info.ports)
    return labels


@dataclass(frozen=True, slots=True)
class _Attachment:
    """A container's place on the client's network (the domain's
    :class:`~supervisor.domain._network.NetworkAttachment`)."""

    owner: ClientNetwork
    info: NetworkInfo

    async def release(self) -> None:
        await self.owner.release(self.info.container_id)


class ClientNetwork:
    """The client's :class:`NetworkManager`, made at first use."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._manager: NetworkManager | None = None
        self._swept = False
        self._lock = anyio.Lock()
        self._pending = Pending(self.state_dir / "pending")

    @property
    def state_dir(self) -> Path:
        return self._session.state_dir / NETWORKS_DIR / self._session.namespace

    async def manager(self, live: Collection[str] | None = None) -> NetworkManager:
        """The manager; made (and what a crash left released) at first use."""
        self._session.check_open()
        async with self._lock:
            if self._manager is None:
                from ..network._manager import NetworkManager

                manager = NetworkManager(self.state_dir)
                await manager.__aenter__()
                self._manager = manager
            if not self._swept:
                await self._sweep(self._manager, live)
                self._swept = True
            return self._manager

    async def _sweep(self, manager: NetworkManager, live: Collection[str] | None) -> None:
        # Records seen now, then the creates in flight (any client's), then
        # containerd's list: a record whose create was not in flight then
        # and whose container is not in a list taken after is stale. A record
        # made after the first look is not this sweep's business.
        records = manager._records
        seen = {e[: -len(".json")] for e in listdir(records.directory) if e.endswith(".json")}
        creating = {cid for cid in seen if self._pending.held(cid)}
        if live is None or not seen <= set(live) | creating:
            live = [c.id for c in await self._session.transport.list_containers()]
        stale = seen - creating - set(live)

        def keep(cid: str) -> bool:
            made_since = cid not in stale and records.path(cid).exists()
            return made_since or self._pending.held(cid)

        try:
            released = await manager.release_stale(live, keep=keep)
        except errors.SupervisorError as exc:
            # What failed stays for the next sweep; new containers need not wait.
            _log.warning("network.sweep_failed", namespace=self._session.namespace, error=str(exc))
            return
        if released:
            _log.info("network.released_stale", containers=released)

    async def sweep(self, live: Collection[str]) -> None:
        """Release what containers not in ``live`` left (restore calls it)."""
        if self._manager is None and not self.state_dir.is_dir():
            return  # this namespace never had a network here
        if self._manager is None or not self._swept:
            await self.manager(live)  # sweeps as it is made
            return
        await self._sweep(self._manager, live)

    async def attach(
        self, container_id: str, request: NetworkRequest, hostname: str | None
    ) -> tuple[_Attachment, int]:
        """Attach; the second value is the in-flight mark, for :meth:`created`."""
        manager = await self.manager()
        mark = await self._pending.hold(container_id)
        try:
            info = await manager.attach(
                container_id,
                network=request.network,
                ports=request.ports,
                hostname=hostname,
                conf_dir=request.conf_dir,
            )
        except BaseException:
            self._pending.drop(container_id, mark)
            raise
        return _Attachment(self, info), mark

    def created(self, container_id: str, mark: int) -> None:
        """The create ended (made, or undone): no more in flight."""
        self._pending.drop(container_id, mark)

    async def undo(self, container_id: str) -> None:
        """Detach a container whose create failed (shielded, bounded)."""
        limit = self._session.timeouts.cleanup
        with anyio.CancelScope(shield=True), anyio.move_on_after(limit):
            try:
                await self.release(container_id)
            except errors.SupervisorError as exc:
                _log.warning("network.undo_failed", container_id=container_id, error=str(exc))

    async def release(self, container_id: str) -> None:
        """Detach ``container_id`` (idempotent).  A plugin's failed DEL is
        logged: the container is gone already, and the next sweep retries."""
        try:
            manager = await self.manager()
            await manager.detach(container_id)
        except (errors.SupervisorError, OSError) as exc:
            if isinstance(exc, errors.Closed):
                raise
            _log.warning("network.release_failed", container_id=container_id, error=str(exc))

    def attachment(self, container_id: str) -> _Attachment | None:
        """The attachment of a container loaded from containerd, read from
        its record (no manager needed until it is released)."""
        directory = self.state_dir / "network" / "containers"
        if not (directory / f"{container_id}.json").exists():
            return None
        record = Records(directory, "").load(container_id)
        if record is None or not record.attached:
            return None
        return _Attachment(self, record.info)

    async def aclose(self) -> None:
        """Close the manager (its port sockets; an idle bridge goes)."""
        manager, self._manager = self._manager, None
        if manager is not None:
            await manager.aclose()
