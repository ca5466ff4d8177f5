"""``connect()``: a transport, the event machinery and a Client, owned together."""

from __future__ import annotations

import os
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType

import anyio
from anyio.abc import TaskStatus

from .. import _paths, _platform, errors
from .._background import Background
from .._ids import validate_id
from .._log import get_logger
from .._timeouts import Timeouts
from ..backends.base import Transport
from ..domain._session import Session
from ..events._ledger import ExitLedger, NullLedger
from ..events._monitor import EventMonitor
from ..events._queue import Queue
from ..events._tracker import ExitTracker
from ..events._types import Backend
from ..spec._bundle import remove_namespace_level
from ..supervision import close_supervision
from ._client import Client

__all__ = ["connect", "default_state_dir"]

_log = get_logger("client")


def default_state_dir() -> Path:
    """Where the library keeps bundles and FIFOs unless told otherwise:
    ``/run/containerd-supervisor`` for root, ``$XDG_RUNTIME_DIR/containerd-supervisor``
    for other users when set, else a per-user directory under the temporary
    directory (whose owner and mode are checked before use)."""
    return _platform.default_state_dir()


def _open_transport(address: str, namespace: str, timeouts: Timeouts) -> Transport:
    # grpclib and the generated bindings load here, on first use, not with
    # `import supervisor`.
    from ..backends.containerd import ContainerdTransport

    return ContainerdTransport.open(
        address, namespace, rpc_timeout=timeouts.rpc, failure_yield=timeouts.failure_yield
    )


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
        state_dir: str | os.PathLike[str] | None,
        timeouts: Timeouts | None,
        events: bool,
        transport: Transport | None,
    ) -> None:
        self._address = address
        self._namespace = namespace
        self._backend = backend
        self._given_state_dir = state_dir is not None
        self._state_dir = (
            Path(state_dir).absolute()
            if state_dir is not None
            # Bundles are <state>/<ns>/<id>: clients of two containerds must
            # not share them (see _platform.instance_of).
            else _platform.default_state_dir(address=address if transport is None else None)
        )
        self._timeouts = timeouts or Timeouts()
        self._events = events
        self._given_transport = transport
        # A given transport's address is only a name in messages.
        self._instance = (
            _platform.instance_of(address) if transport is None else _platform.SYSTEM_INSTANCE
        )
        self._transport: Transport | None = None
        self._background = Background(f"supervisor-events:{namespace}", on_failure=self._failed)
        self._session: Session | None = None
        # What the event machinery died of, as the callers see it.
        self._failure: errors.SupervisorError | None = None
        self._entered = False
        self._client: Client | None = None

    def _new_session(self, transport: Transport, monitor: EventMonitor | None = None) -> Session:
        tracker = monitor.tracker if monitor is not None else ExitTracker()
        ledger = monitor.ledger if monitor is not None else NullLedger()
        if monitor is None:
            monitor = EventMonitor(
                transport, tracker, backend=None, queue=None, timeouts=self._timeouts, ledger=ledger
            )
        return Session(
            raw_transport=transport,
            tracker=tracker,
            monitor=monitor,
            ledger=ledger,
            timeouts=self._timeouts,
            state_dir=self._state_dir,
            events=self._events,
            instance=self._instance,
        )

    async def __aenter__(self) -> Client:
        if self._entered:
            raise errors.FailedPrecondition("a connection can be entered once")
        self._entered = True
        try:
            _paths.private_dir(self._state_dir, 0o711)
        except OSError as exc:
            raise errors.from_os_error(
                exc, f"cannot use state directory {self._state_dir}", given=self._given_state_dir
            ) from exc
        transport = self._given_transport or _open_transport(
            self._address, self._namespace, self._timeouts
        )
        self._transport = transport
        try:
            with anyio.fail_after(self._timeouts.connect):
                if not self._events:
                    await transport.version()  # fail early, as the subscription would
                    self._session = self._new_session(transport)
                else:
                    await self._background.start(lambda: self._run(transport))
        except TimeoutError:
            await self._shutdown()
            raise errors.Unavailable(
                f"containerd at {self._address} did not answer within "
                f"{self._timeouts.connect}s; is it running?"
            ) from None
        except errors.SupervisorError:
            await self._shutdown()
            raise
        except Exception as exc:
            await self._shutdown()
            raise self._as_error(exc) from exc
        except BaseException:
            await self._shutdown()
            raise
        assert self._session is not None
        _log.info("client.connected", address=self._address, namespace=self._namespace)
        self._client = Client(self._session)
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
            # As a task group reports a failed task on exit, also to a
            # caller that swallowed the error its calls raised meanwhile.
            raise self._failure or self._as_error(error)

    def _as_error(self, exc: BaseException) -> errors.SupervisorError:
        return errors.as_library_error(exc, f"the event monitor of namespace {self._namespace!r}")

    def _failed(self, exc: BaseException) -> None:
        # Called at once when the event machinery dies (Background.fail):
        # without it no wait would ever return.
        self._failure = self._as_error(exc)
        _log.error(
            "events.monitor_failed",
            namespace=self._namespace,
            error=str(self._failure),
            exc_info=exc,
        )
        if self._session is not None:
            self._session.fail(self._failure)

    async def _run(self, transport: Transport) -> None:
        try:
            tracker = ExitTracker()
            queue = Queue(drain_timeout=self._timeouts.handler)
            async with queue, anyio.create_task_group() as tg:
                ledger: ExitLedger = NullLedger()
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
                await tg.start(self._monitor, monitor)
                if ledger.has_records():
                    live = {c.id for c in await transport.list_containers()}
                    ledger.prune(live)
                self._session = self._new_session(transport, monitor)
                self._background.ready()
                await self._background.until_stopped()
                tg.cancel_scope.cancel()
        except Exception as exc:
            if self._background.up:  # before that, connect() itself raises it
                self._background.fail(exc)
            raise

    async def _monitor(
        self, monitor: EventMonitor, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await monitor.run(task_status=task_status)
        except Exception as exc:
            # Fail the callers now, not once the queue has wound down
            # (pending backend handlers get up to Timeouts.handler for that).
            if self._background.up:
                self._background.fail(exc)
            raise

    async def _shutdown(self) -> None:
        if self._session is not None:
            # Supervision loops end before the session does (bounded inside).
            await close_supervision(self._session)
            self._session.close()
        if self._client is not None:
            # Its network's port sockets; an idle bridge (bounded inside).
            await self._client._network.aclose()
        # The body winds down within the handler bound (the queue cancels a
        # stuck handler) plus the clean-up of the subscription.
        await self._background.stop(self._timeouts.handler + self._timeouts.cleanup)
        with anyio.CancelScope(shield=True):
            if self._transport is not None:
                await self._transport.aclose()
            remove_namespace_level(self._state_dir, self._namespace)


def connect(
    address: str,
    *,
    namespace: str,
    backend: Backend | None = None,
    transport: Transport | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    timeouts: Timeouts | None = None,
    events: bool = True,
) -> AbstractAsyncContextManager[Client]:
    """Connect to containerd; use as ``async with connect(...) as client``.

    The :class:`Client` is bound to ``namespace``.  One grpclib channel carries
    every call; one event subscription (kept alive through containerd
    restarts) resolves every :meth:`Process.wait` and feeds ``backend``.
    Leaving the context, also by cancellation, closes both and waits (at most
    ``timeouts.handler``) for the backend's pending events; every call made
    through the client afterwards raises :class:`~supervisor.errors.Closed`.
    Safe to enter and leave from different tasks (as pytest-asyncio fixtures do).
    Should the event machinery fail with anything but a broken connection
    (which it rides out), the client fails at once, as a task group would:
    pending waits, later calls and leaving the context raise that error
    (``Unknown`` for an unexpected exception, chained to it) and
    ``client.closed`` turns true (see ``docs/events.md``).

    Args:
        address: containerd's socket path (a named pipe path on Windows).
        namespace: the containerd namespace to act in.
        backend: hears the namespace's task events (see :class:`supervisor.Backend`).
        transport: use this :class:`~supervisor.backends.base.Transport` instead
            of grpclib (e.g. :class:`supervisor.backends.fake.FakeTransport` in
            unit tests); it must be bound to ``namespace``. ``address`` is then
            only used in messages. The connection closes it on exit.
        state_dir: where bundles and FIFOs go (default :func:`default_state_dir`,
            with a directory of its own for a containerd other than the
            default one); it must belong to this user and not be writable by others.
        timeouts: see :class:`supervisor.Timeouts`.
        events: subscribe to events (default).  Without, waits use containerd's
            Wait call and ``backend`` must be ``None``.

    Raises:
        InvalidArgument: bad namespace, or a backend without events.
        FailedPrecondition: the state directory is not this user's own.
        Unavailable: containerd does not answer (within ``timeouts.connect``).
        Unknown: an unexpected failure while connecting (chained to it).

    Example::

        async with supervisor.connect("/run/containerd/containerd.sock",
                                      namespace="example") as client:
            print(await client.version())
    """
    validate_id(namespace, kind="namespace")
    if backend is not None and not events:
        raise errors.InvalidArgument("a backend needs events=True")
    if transport is not None:
        transport.bind(namespace)  # InvalidArgument: bound to another one
    return _Connection(address, namespace, backend, state_dir, timeouts, events, transport)
