"""The connection to containerd for one namespace, and the objects made through it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from . import errors
from ._background import Background
from ._bundle import (
    BUNDLE_LABEL,
    bundle_path,
    prepare_bundle,
    remapped_root,
    remove_bundle,
    remove_namespace_level,
)
from ._cleanup import undo_if_cancelled
from ._config import Timeouts
from ._container import Container
from ._ids import validate_id
from ._log import get_logger
from ._runtimes import DEFAULT_RUNTIME
from ._spec import checked_spec
from ._task import Task
from .backends.base import Transport
from .events._ledger import ExitLedger
from .events._monitor import EventMonitor
from .events._queue import Queue
from .events._tracker import ExitTracker
from .events._types import Backend

if TYPE_CHECKING:
    from .backends.containerd import ContainerdTransport

__all__ = ["Client", "connect", "default_state_dir", "DEFAULT_RUNTIME"]


_log = get_logger("client")


def default_state_dir() -> Path:
    """Where the library keeps bundles and FIFOs unless told otherwise."""
    if os.geteuid() == 0:
        return Path("/run/containerd-supervisor")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "containerd-supervisor"
    return Path(tempfile.gettempdir()) / f"containerd-supervisor-{os.geteuid()}"


class Client:
    """A connection to containerd bound to one namespace; made by :func:`connect`.

    Containers made or loaded through it are :class:`Container` objects that
    the caller keeps; the client itself holds no per-container state beyond
    what waiting for exits needs.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        state_dir: Path,
        tracker: ExitTracker | None,
        timeouts: Timeouts,
        monitor: EventMonitor | None = None,
        ledger: ExitLedger | None = None,
    ) -> None:
        self._transport = transport
        self._state_dir = state_dir
        self._tracker = tracker
        self._timeouts = timeouts
        self._monitor = monitor
        self._ledger = ledger

    @property
    def namespace(self) -> str:
        """The containerd namespace every call of this client acts in."""
        return self._transport.namespace

    @property
    def state_dir(self) -> Path:
        """The directory holding this library's bundles and FIFOs."""
        return self._state_dir

    async def version(self) -> str:
        """containerd's version string, e.g. ``"1.6.20~ds1"``."""
        return await self._transport.version()

    async def new_container(
        self,
        id: str,
        spec: Mapping[str, Any],
        *,
        runtime: str = DEFAULT_RUNTIME,
        runtime_options: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        replace: bool = False,
    ) -> Container:
        """Create a container in containerd.

        Args:
            id: the container id (letters, digits, ``._-``; at most 76 chars).
            spec: the OCI runtime spec as a mapping (see :func:`supervisor.default_spec`).
                ``linux.cgroupsPath`` defaults to ``/<namespace>/<id>``.
            runtime: the containerd shim, e.g. ``io.containerd.runc.v2``.
            runtime_options: the shim's options as a mapping of its options
                message's fields, e.g. ``{"binary_name": "/usr/bin/crun"}``.
            labels: containerd labels.
            replace: if a container with this id exists, force-delete its
                task (SIGKILL to every process) and delete it first, as
                dockerd does for a leftover of a crash (moby#38346).

        Raises:
            InvalidArgument: bad id, spec, labels or options; nothing was created.
            AlreadyExists: a container with this id exists (and ``replace`` is
                false); it is left untouched.

        Example::

            spec = supervisor.default_spec(["sh", "-c", "echo hi"], rootfs)
            container = await client.new_container("web-1", spec)
        """
        validate_id(id, kind="container id")
        body = checked_spec(spec)
        if not isinstance(runtime, str) or not runtime:
            raise errors.InvalidArgument("runtime must be a non-empty string", container_id=id)
        label_map = dict(labels or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in label_map.items()):
            raise errors.InvalidArgument("labels must map strings to strings", container_id=id)
        if runtime_options is not None and not isinstance(runtime_options, Mapping):
            raise errors.InvalidArgument("runtime_options must be a mapping", container_id=id)
        owner = remapped_root(body)
        linux = body.setdefault("linux", {})
        if isinstance(linux, dict):
            linux.setdefault("cgroupsPath", f"/{self.namespace}/{id}")
        bundle = bundle_path(self._state_dir, self.namespace, id, owner)
        label_map[BUNDLE_LABEL] = str(bundle)
        # containerd first, the directory after: until containerd has said the
        # id is ours, a directory of that name may be a live container's.
        with anyio.CancelScope(shield=True):
            try:
                await self._transport.create_container(
                    id, body, runtime=runtime, runtime_options=runtime_options, labels=label_map
                )
            except errors.AlreadyExists:
                if not replace:
                    raise
                await self._replace(id)
                await self._transport.create_container(
                    id, body, runtime=runtime, runtime_options=runtime_options, labels=label_map
                )
            try:
                prepare_bundle(bundle, owner)
            except BaseException:
                with anyio.move_on_after(self._timeouts.cleanup):
                    await self._transport.delete_container(id)
                remove_bundle(bundle)
                raise
        container = Container(
            self,
            id,
            spec=body,
            runtime=runtime,
            labels=label_map,
            bundle_dir=bundle,
            task_known=False,
        )
        _log.info("container.create", container_id=id, runtime=runtime)
        await undo_if_cancelled(container.delete, limit=self._timeouts.cleanup, what="container")
        return container

    async def _replace(self, id: str) -> None:
        old = await self.load_container(id)
        try:
            task = await old.task()
        except errors.NotFound:
            pass
        else:
            with contextlib.suppress(errors.NotFound):
                await task.delete(force=True)
        with contextlib.suppress(errors.NotFound):
            await old.delete()
        _log.info("container.replaced", container_id=id)

    async def load_container(self, id: str) -> Container:
        """A container that exists in containerd (made by this or another client).

        Raises:
            NotFound: no such container.
        """
        validate_id(id, kind="container id")
        record = await self._transport.get_container(id)
        return self._from_record(record.id, record.spec, record.runtime, record.labels)

    async def containers(self) -> list[Container]:
        """Every container in the client's namespace."""
        return [
            self._from_record(r.id, r.spec, r.runtime, r.labels)
            for r in await self._transport.list_containers()
        ]

    async def restore(self) -> list[tuple[Container, Task | None]]:
        """Every container of the namespace with its task (``None`` if it has
        none), in two RPCs however many there are: what an application calls
        after its own restart, where loading each would cost one more RPC per
        container.

        A task that stopped while nobody listened is reported to the backend
        now (once, and not at all if an earlier run's backend handled it; see
        the ledger in the README); its ``wait()`` returns at once.
        """
        records = await self._transport.list_containers()
        tasks = {t.container_id: t for t in await self._transport.list_tasks()}
        restored: list[tuple[Container, Task | None]] = []
        for r in records:
            container = self._from_record(r.id, r.spec, r.runtime, r.labels)
            record = tasks.get(r.id)
            if record is None:
                container._task_known = False
                restored.append((container, None))
            else:
                restored.append((container, container._adopt_task(record)))
        _log.info("client.restored", namespace=self.namespace, containers=len(restored))
        return restored

    def _from_record(
        self, cid: str, spec: dict[str, Any], runtime: str, labels: dict[str, str]
    ) -> Container:
        recorded = labels.get(BUNDLE_LABEL)
        if recorded:
            bundle = Path(recorded)
        else:
            try:
                owner = remapped_root(spec)
            except errors.InvalidArgument:
                owner = None
            bundle = bundle_path(self._state_dir, self.namespace, cid, owner)
        return Container(
            self, cid, spec=spec, runtime=runtime, labels=labels, bundle_dir=bundle, task_known=None
        )

    def _forget_container(self, container: Container) -> None:
        remove_bundle(container.bundle_dir)
        if self._ledger is not None:
            self._ledger.prune_container(container.id)
        if self._tracker is not None:
            self._tracker.forget_container(container.id)


class _Connection:
    """What :func:`connect` returns: an async context manager yielding a Client.

    The event machinery (subscription, keyed queue) runs in a
    :class:`~supervisor._background.Background` task, so the client can be
    opened and closed from different tasks (pytest-asyncio fixtures do).
    """

    def __init__(
        self,
        address: str,
        namespace: str,
        backend: Backend | None,
        state_dir: Path,
        timeouts: Timeouts,
        events: bool,
    ) -> None:
        self._address = address
        self._namespace = namespace
        self._backend = backend
        self._state_dir = state_dir
        self._timeouts = timeouts
        self._events = events
        self._transport: ContainerdTransport | None = None
        self._background = Background(f"supervisor-events:{namespace}")
        self._client: Client | None = None

    async def __aenter__(self) -> Client:
        from .backends.containerd import ContainerdTransport

        transport = ContainerdTransport.open(
            self._address, self._namespace, rpc_timeout=self._timeouts.rpc
        )
        self._transport = transport
        try:
            if not self._events:
                await transport.version()  # fail early, as the subscription would
                self._client = Client(
                    transport, state_dir=self._state_dir, tracker=None, timeouts=self._timeouts
                )
            else:
                await self._background.start(lambda: self._run(transport))
        except BaseException:
            await self._shutdown()
            raise
        assert self._client is not None
        _log.info("client.connected", address=self._address, namespace=self._namespace)
        return self._client

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown()
        _log.info("client.closed", address=self._address, namespace=self._namespace)
        error = self._background.error
        if error is not None and exc is None:
            raise error

    async def _run(self, transport: ContainerdTransport) -> None:
        try:
            tracker = ExitTracker()
            async with Queue() as queue, anyio.create_task_group() as tg:
                ledger = None
                if self._backend is not None:
                    ledger = ExitLedger(self._state_dir / ".exits" / self._namespace)
                monitor = EventMonitor(
                    transport,
                    tracker,
                    backend=self._backend,
                    queue=queue,
                    timeouts=self._timeouts,
                    ledger=ledger,
                )
                await tg.start(monitor.run)
                if ledger is not None and ledger.has_records():
                    live = {c.id for c in await transport.list_containers()}
                    ledger.prune(live)
                self._client = Client(
                    transport,
                    state_dir=self._state_dir,
                    tracker=tracker,
                    timeouts=self._timeouts,
                    monitor=monitor,
                    ledger=ledger,
                )
                self._background.ready()
                await self._background.until_stopped()
                tg.cancel_scope.cancel()
        except Exception as exc:
            if self._background.up:  # before that, connect() itself raises it
                _log.error(
                    "events.monitor_failed",
                    namespace=self._namespace,
                    exc_info=errors.unwrap_group(exc),
                )
            raise

    async def _shutdown(self) -> None:
        await self._background.stop()
        with anyio.CancelScope(shield=True):
            if self._transport is not None:
                await self._transport.aclose()
            remove_namespace_level(self._state_dir, self._namespace)


def connect(
    address: str,
    *,
    namespace: str,
    backend: Backend | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    timeouts: Timeouts | None = None,
    events: bool = True,
) -> AbstractAsyncContextManager[Client]:
    """Connect to containerd; use as ``async with connect(...) as client``.

    The :class:`Client` is bound to ``namespace``.  One grpclib channel carries
    every call; one event subscription (kept alive through containerd
    restarts) resolves every :meth:`Process.wait` and feeds ``backend``.
    Leaving the context, also by cancellation, closes both and waits for the
    backend's pending events.  Safe to enter and leave from different tasks
    (as pytest-asyncio fixtures do).

    Args:
        address: containerd's socket path (a named pipe path on Windows).
        namespace: the containerd namespace to act in.
        backend: hears the namespace's task events (see :class:`supervisor.Backend`).
        state_dir: where bundles and FIFOs go (default :func:`default_state_dir`).
        timeouts: see :class:`supervisor.Timeouts`.
        events: subscribe to events (default).  Without, waits use containerd's
            Wait call and ``backend`` must be ``None``.

    Raises:
        InvalidArgument: bad namespace, or a backend without events.
        Unavailable: containerd does not answer.

    Example::

        async with supervisor.connect("/run/containerd/containerd.sock",
                                      namespace="example") as client:
            print(await client.version())
    """
    validate_id(namespace, kind="namespace")
    if backend is not None and not events:
        raise errors.InvalidArgument("a backend needs events=True")
    return _Connection(
        address,
        namespace,
        backend,
        Path(state_dir) if state_dir is not None else default_state_dir(),
        timeouts or Timeouts(),
        events,
    )
