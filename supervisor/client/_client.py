"""The client of one namespace: :class:`Client`, whose calls live by concept
in ``_containers`` (new/load/replace), ``_running`` (run/running) and
``_images`` (the image façade); restoring after a restart is here."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .._log import get_logger
from ..domain._container import Container, restore_tasks
from ..domain._labels import checked_label_selector
from ..domain._session import Session
from ..domain._task import Task
from ._checkpoints import CheckpointCalls
from ._images import ImageCalls
from ._network import ClientNetwork
from ._running import RunCalls
from ._supervision import restored_supervision

__all__ = ["Client"]

_log = get_logger("client")


class Client(RunCalls, ImageCalls, CheckpointCalls):
    """A connection to containerd bound to one namespace; made by :func:`connect`.

    Containers made or loaded through it are :class:`Container` objects that
    the caller keeps; the client itself holds no per-container state beyond
    what waiting for exits needs.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._network = ClientNetwork(session)

    @property
    def namespace(self) -> str:
        """The containerd namespace every call of this client acts in."""
        return self._session.namespace

    @property
    def state_dir(self) -> Path:
        """The directory holding this library's bundles and FIFOs."""
        return self._session.state_dir

    @property
    def closed(self) -> bool:
        """True once the client's ``async with`` block has been left, or once
        its event machinery failed (every call then raises that failure; see
        :func:`connect`)."""
        return self._session.closed

    async def version(self) -> str:
        """containerd's version string, e.g. ``"1.6.20~ds1"``."""
        return await self._session.transport.version()

    async def restore(
        self, *, attach: bool = True, labels: Mapping[str, str | None] | None = None
    ) -> list[tuple[Container, Task | None]]:
        """Every container of the namespace with its task (``None`` if it has
        none), in two RPCs however many there are: what an application calls
        after its own restart, where loading each would cost one more RPC per
        container.

        A task that stopped while nobody listened is reported to the backend
        now (once, and not at all if an earlier run's backend handled it; see
        ``docs/events.md``); its ``wait()`` returns at once. If its cgroup
        counted an OOM kill, an OOM event comes first and the exit carries
        ``oom_killed``, as live (one more RPC for all such tasks together).

        The stdio of live processes is reopened as :meth:`Container.task`
        does (not with ``attach=False``: see there); each exec made through
        the library costs one more RPC.

        Containers on a network (``network=``) get their
        :attr:`Container.network` back; what containers deleted while the
        application was down held on a network is released.

        ``labels``: only the containers with these labels, as
        :meth:`containers` selects them (in the same one List RPC). What
        deleted containers held on a network is then left for a restore
        without ``labels``, which alone sees every container.
        """
        transport = self._session.transport
        selector = None if labels is None else checked_label_selector(labels)
        records = await transport.list_containers(selector)
        tasks = {t.container_id: t for t in await transport.list_tasks()}
        containers = [self._from_record(r) for r in records]
        # What containers gone meanwhile held on a network (leases, rules,
        # veths, namespaces) is released now.
        if selector is None:
            await self._network.sweep([r.id for r in records])
        restored = await restore_tasks(self._session, containers, tasks, attach=attach)
        # Restart policies and health checks taken up again (docs/supervision.md).
        await restored_supervision(self._session, restored)
        _log.info("client.restored", namespace=self.namespace, containers=len(restored))
        return restored
