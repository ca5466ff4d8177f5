"""NetworkManager: containers attached to networks, and everything that takes
owned under one state directory.

Layout under ``<state_dir>/network/``::

    containers/<id>.json   one record per attached container, written before
                           anything is made (so a crash leaves a record that
                           names what to release)
    netns/<id>             the container's network namespace (a bind mount)
    files/<id>/            its resolv.conf, hosts, hostname
    cni/                   cached ADD results (for DEL and CHECK)
    ipam/                  host-local's leases for the default network
    bridge.json            the default network's subnet
    lock                   shared by attach/detach, exclusive to remove the bridge
    locks/<id>             held by whoever runs the container's plugins, and
                           by those plugins (:mod:`._container_lock`)

The default network ``"bridge"`` is a Linux bridge named after the state
directory (``sv-<hash>``, see :func:`scoped_name`), so two state directories
never share a bridge, a CNI network name (which scopes portmap's and
bridge's per-container iptables chains), or IPAM data (:mod:`._bridge`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio

from .. import errors
from .._ids import validate_id
from .._log import get_logger
from .._paths import private_dir
from ._bridge import DefaultNetwork, host_local_leases, parse_subnet
from ._cni import CNI
from ._conflist import ConfList
from ._container_lock import container_locked, drop_lock
from ._dns import DnsConfig, write_files
from ._host import file_lock
from ._info import NetworkInfo, parse_result
from ._netns import create_netns, list_mounts_under, remove_netns
from ._ports import PortMapping, PortReservation, hold, reserve
from ._record import Record, Records, listdir, reachable
from ._request import Resolver, checked_request
from ._stale import Sweep, release_orphans

__all__ = ["DEFAULT_CNI_PATH", "NetworkManager", "NetworkTimeouts"]

log = get_logger("network")

DEFAULT_CNI_PATH = ("/usr/lib/cni", "/opt/cni/bin")


@dataclass(frozen=True, slots=True)
class NetworkTimeouts:
    """How long the network layer waits, in seconds.

    Attributes:
        plugin: bound on one plugin run (a hung plugin is killed then).
        lock: bound on waiting for the state directory's or the host's lock.
        cleanup: bound on each shielded undo (after a failure or cancellation).
    """

    plugin: float = 30.0
    lock: float = 60.0
    cleanup: float = 60.0


class NetworkManager:
    """Attaches containers to networks and releases what they held.

    Args:
        state_dir: the library's state directory; everything lives under
            ``state_dir/network``.
        conf_dir: where named networks' conflists are looked up
            (``/etc/cni/net.d`` by convention); ``None``: only the built-in
            ``"bridge"``, ``"none"`` and ``"host"``.
        cni_path: directories holding the plugin binaries.
        subnet: the default network's IPv4 subnet; ``None`` picks a free /24
            of 10.88.0.0/13, checked against the host's routes and addresses.
        timeouts: see :class:`NetworkTimeouts`.

    Example::

        async with NetworkManager(state_dir) as nm:
            info = await nm.attach("web", ports=["127.0.0.1:18080:80"])
            spec = apply_network(spec, info)   # then create the container
            ...
            await nm.detach("web")

    The manager is an async context manager: the sockets holding published
    ports are closed when it exits (the ports stay published: the rules stay
    until :meth:`detach` or :meth:`release_stale`).  Several managers may use
    one state directory at once; ``live_ids`` given to :meth:`release_stale`
    must then name every live container of all of them.
    """

    def __init__(
        self,
        state_dir: Path | str,
        *,
        conf_dir: Path | str | None = None,
        cni_path: Sequence[Path | str] = DEFAULT_CNI_PATH,
        subnet: str | None = None,
        timeouts: NetworkTimeouts = NetworkTimeouts(),
    ) -> None:
        self.state_dir = Path(state_dir)
        self.root = self.state_dir / "network"
        self.conf_dir = Path(conf_dir) if conf_dir is not None else None
        self.timeouts = timeouts
        fixed = parse_subnet(subnet) if subnet is not None else None
        self.cni = CNI(cni_path, self.root / "cni", timeout=timeouts.plugin)
        self._default = DefaultNetwork(self.state_dir, self.root, self.cni, fixed, timeouts.lock)
        self.bridge = self._default.name
        self._resolver = Resolver(self.conf_dir, self._default, self.cni)
        self._records = Records(self.root / "containers", self.bridge)
        self._reservations: dict[str, PortReservation] = {}
        self._busy: set[str] = set()
        self._entered = False

    # -- context -------------------------------------------------------------

    async def __aenter__(self) -> NetworkManager:
        for sub in ("", "containers", "netns", "files", "cni", "ipam", "locks"):
            private_dir(self.root / sub if sub else self.root)
        # Ports published by an earlier run stay held while we run.
        for record in self._records.all():
            with contextlib.suppress(errors.SupervisorError):
                self._reservations[record.container_id] = hold(record.ports, record.container_id)
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Let go of the held ports; remove the bridge if nothing uses it."""
        for reservation in self._reservations.values():
            reservation.close()
        self._reservations.clear()
        if self._entered:
            self._entered = False
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.timeouts.cleanup):
                with contextlib.suppress(errors.SupervisorError, OSError):
                    await self._remove_idle_bridge()

    # -- the API -------------------------------------------------------------

    async def attach(
        self,
        container_id: str,
        *,
        network: str = "bridge",
        ports: Iterable[str | PortMapping] = (),
        hostname: str | None = None,
        dns: DnsConfig | None = None,
        ifname: str = "eth0",
        args: Sequence[tuple[str, str]] = (),
        conf_dir: Path | str | None = None,
    ) -> NetworkInfo:
        """Give ``container_id`` a network namespace on ``network``, publish
        ``ports`` and write its DNS files.  Call before the container is
        created; put the result in its spec with :func:`apply_network`.

        Args:
            container_id: the container (a valid containerd id).
            network: ``"bridge"`` (the library's default network), ``"none"``
                (loopback only), ``"host"`` (the host's network) or the name of
                a conflist in ``conf_dir`` (this call's, else the manager's).
            ports: ``"18080:80"``, ``"127.0.0.1:18081:81/udp"``...; host port 0
                picks a free port.  Needs a network with portmap.
            hostname: the container's host name (default: from its id).
            dns: resolver settings (default: the host's minus loopback resolvers).
            ifname: the interface inside the namespace.
            args: extra ``CNI_ARGS`` pairs.

        Raises:
            InvalidArgument: a malformed id, port, hostname or conflist; a
                plugin missing; ports on a network without portmap.
            NotFound: no network of that name.
            AlreadyExists: the container is attached already, or a host port
                (or the given subnet) is taken.
            PluginError: a plugin failed (its class follows the CNI code).
            DeadlineExceeded: a plugin hung past ``timeouts.plugin``.

        On any failure, or cancellation, nothing is left: no namespace, lease,
        rule, file or record.
        """
        self._require_open()
        name, mappings, conflist = await checked_request(
            self._resolver, container_id, network, ports, hostname, ifname, conf_dir
        )
        if container_id in self._busy or self._records.path(container_id).exists():
            raise errors.AlreadyExists(
                "the container is attached to a network already", container_id=container_id
            )
        self._busy.add(container_id)
        reservation = PortReservation()
        try:
            mappings = reserve(mappings, reservation, container_id=container_id)
            return await self._attach(
                container_id, network, conflist, mappings, reservation, name, dns, ifname, args
            )
        except BaseException:
            reservation.close()
            raise
        finally:
            self._busy.discard(container_id)

    async def detach(self, container_id: str) -> None:
        """Undo :meth:`attach`: DEL through the plugins, remove the namespace,
        the files and the record.  Idempotent: a container never attached (or
        detached already) is fine.

        Raises:
            PluginError / DeadlineExceeded: a plugin's DEL failed; the
                namespace and the record stay, so a later call retries.
        """
        self._require_open()
        validate_id(container_id, kind="container id")
        async with file_lock(self.root / "lock", shared=True, bound=self.timeouts.lock):
            await self._release(container_id)

    async def info(self, container_id: str) -> NetworkInfo | None:
        """The container's network as attached, or ``None`` if it is not."""
        validate_id(container_id, kind="container id")
        record = self._records.load(container_id)
        return record.info if record is not None and record.attached else None

    async def check(self, container_id: str) -> None:
        """CNI CHECK: the plugins confirm the container's network is as made.

        Raises:
            NotFound: the container is not attached.
            PluginError: a plugin found it changed.
        """
        record = self._records.load(container_id)
        if record is None or not record.attached:
            raise errors.NotFound("the container is not attached", container_id=container_id)
        if record.cni_name is None:
            return
        cached = self.cni.cache.get(record.cni_name, container_id, record.ifname)
        if cached is None:
            raise errors.NotFound("no cached ADD result", container_id=container_id)
        await self.cni.check(cached.network, cached.runtime)

    async def release_stale(
        self, live_ids: Collection[str], *, keep: Callable[[str], bool] | None = None
    ) -> list[str]:
        """Release everything held for containers not in ``live_ids``: their
        plugins' state (leases, iptables rules, veths), namespaces, files and
        records, including the remains of an attach a crash interrupted.
        Removes the default network's bridge when nothing is attached.
        ``keep(id)``, asked as each is reached, spares more (an attach in
        flight in another process, say).

        Returns:
            The container ids released, sorted.

        Raises:
            SupervisorError: the first failure (a plugin's DEL, say), raised
                after everything else was released; what failed stays for
                the next call.
        """
        self._require_open()
        live = set(live_ids) | self._busy

        def stale(cid: str) -> bool:
            return cid not in live and not (keep is not None and keep(cid))

        sweep = Sweep()
        async with file_lock(self.root / "lock", shared=True, bound=self.timeouts.lock):
            for record in self._records.all():
                if stale(record.container_id):
                    cid = record.container_id
                    await sweep.release(cid, partial(self._release, cid))
            await release_orphans(
                sweep,
                lambda cid: stale(cid) and not self._records.path(cid).exists(),
                cni=self.cni,
                root=self.root,
                default=self._default,
                bound=self.timeouts.lock,
            )
        with contextlib.suppress(errors.SupervisorError, OSError):
            await self._remove_idle_bridge()
        return sweep.finish()

    async def status(self, network: str = "bridge") -> None:
        """Whether ``network`` can take attachments: its configuration is
        valid, its plugin binaries are there, and (CNI 1.1) each plugin's
        STATUS says it is ready.

        Raises:
            NotFound: no network of that name.
            InvalidArgument: a malformed conflist, or a plugin missing.
            PluginError: a plugin said it is not ready (``Unavailable``).
        """
        self._require_open()
        conflist = await self._resolver.resolve(network)
        if conflist is not None:
            await self.cni.status(conflist)

    def attached(self) -> list[NetworkInfo]:
        """Every attached container's network, by container id."""
        return [r.info for r in self._records.all() if r.attached]

    # -- the work ------------------------------------------------------------

    async def _attach(
        self,
        cid: str,
        network: str,
        conflist: ConfList | None,
        mappings: list[PortMapping],
        reservation: PortReservation,
        hostname: str,
        dns: DnsConfig | None,
        ifname: str,
        args: Sequence[tuple[str, str]],
    ) -> NetworkInfo:
        netns = None if network == "host" else str(self.root / "netns" / cid)
        files = self.root / "files" / cid
        record = Record(
            info=NetworkInfo(
                container_id=cid,
                network=network,
                netns=netns,
                ports=tuple(mappings),
                hostname=hostname,
            ),
            cni_name=conflist.name if conflist is not None else None,
            ifname=ifname,
            args=tuple((str(k), str(v)) for k, v in args),
            attached=False,
        )
        locks = self.root / "locks"
        async with (
            file_lock(self.root / "lock", shared=True, bound=self.timeouts.lock),
            container_locked(locks, cid, self.timeouts.lock),
        ):
            self._records.save(record)
            try:
                if netns is not None:
                    await create_netns(Path(netns))
                result: dict[str, Any] | None = None
                if conflist is not None:
                    rt = record.runtime()
                    if network == "bridge":
                        result = await self._default.add(rt)
                    else:
                        result = await self.cni.add(conflist, rt)
                got = parse_result(result, ifname)
                info = await anyio.to_thread.run_sync(write_files, record.info, files, got, dns)
                record = record.replace(info=info, attached=True)
                self._records.save(record)
            except BaseException:
                with anyio.CancelScope(shield=True), anyio.move_on_after(self.timeouts.cleanup):
                    try:
                        await self._teardown(cid)
                        drop_lock(locks, cid)
                    except (errors.SupervisorError, OSError) as exc:
                        log.warning("network.attach_undo_failed", container_id=cid, error=str(exc))
                raise
        self._reservations[cid] = reservation
        log.info("network.attach", container_id=cid, network=network, ip=record.info.ip)
        return record.info

    async def _release(self, cid: str) -> None:
        # Waits for plugins still running for the container, a killed
        # application's included: a DEL racing its ADD loses.
        locks = self.root / "locks"
        async with container_locked(locks, cid, self.timeouts.lock):
            await self._teardown(cid)
            drop_lock(locks, cid)

    async def _teardown(self, cid: str) -> None:
        record = self._records.load(cid)
        reservation = self._reservations.pop(cid, None)
        if reservation is not None:
            reservation.close()
        ifname = record.ifname if record is not None else "eth0"
        netns_path = self.root / "netns" / cid
        if record is not None and record.cni_name is not None:
            cached = self.cni.cache.get(record.cni_name, cid, ifname)
            if cached is not None:
                await self.cni.delete(cached.network, await reachable(cached.runtime))
        await remove_netns(netns_path)
        shutil.rmtree(self.root / "files" / cid, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._records.path(cid))
        log.info("network.detach", container_id=cid)

    async def _remove_idle_bridge(self) -> None:
        await self._default.remove_if_idle(lambda: bool(self._busy) or bool(self._records.all()))

    def _require_open(self) -> None:
        if not self._entered:
            raise errors.FailedPrecondition("the NetworkManager is not open (use `async with`)")

    def leftovers(self) -> dict[str, list[str]]:
        """What the state directory still holds (records, namespace mounts,
        cache entries, leases): for tests and diagnostics."""
        return {
            "records": sorted(e for e in listdir(self.root / "containers") if e.endswith(".json")),
            "mounts": sorted(str(p) for p in list_mounts_under(self.root)),
            "netns": listdir(self.root / "netns"),
            "cache": listdir(self.root / "cni"),
            "leases": sorted(cid for cid, _ in host_local_leases(self.root / "ipam")),
            "files": listdir(self.root / "files"),
            "locks": listdir(self.root / "locks"),
        }
