"""FakeTransport: the Transport protocol over the fake containerd's state,
one service per module (containers, tasks, metrics, events)."""

from __future__ import annotations

from ._connection import Connection
from ._containers import ContainerCalls
from ._controls import FakeControls
from ._events import EventCalls
from ._metrics import MetricsCalls
from ._state import _Containerd
from ._tasks import TaskCalls

__all__ = ["FakeTransport"]


class FakeTransport(ContainerCalls, TaskCalls, MetricsCalls, EventCalls):
    """An in-memory containerd 1.6 (see the module docstring).

    Args:
        namespace: the containerd namespace to bind to now; by default
            :func:`supervisor.connect` binds it to its own (see :meth:`bind`).
        version: what :meth:`version` answers.
    """

    def __init__(self, namespace: str | None = None, *, version: str = "1.6.20-fake") -> None:
        self._make(Connection(_Containerd(version), namespace))

    def _make(self, connection: Connection) -> None:
        self._conn = connection
        self._controls = FakeControls(connection, _reopened)

    @property
    def controls(self) -> FakeControls[FakeTransport]:
        """What a test does to the fake besides calling it (see :class:`FakeControls`)."""
        return self._controls

    @property
    def namespace(self) -> str:
        """The namespace this transport is bound to.

        Raises:
            FailedPrecondition: it is bound to none yet.
        """
        return self._conn.name

    def bind(self, namespace: str) -> None:
        """Bind an unbound transport to ``namespace`` (as :func:`supervisor.connect`
        does with its own); a bound one accepts only the same namespace.

        Raises:
            InvalidArgument: bound to another namespace, or not a valid one.
        """
        self._conn.bind(namespace)

    async def aclose(self) -> None:
        """Close this connection: its subscriptions end, its pending waits fail."""
        await self._conn.aclose()

    async def version(self) -> str:
        await self._conn.before("version")
        await self._conn.after("version")
        return self._conn.daemon.version


def _reopened(connection: Connection) -> FakeTransport:
    transport = FakeTransport.__new__(FakeTransport)
    transport._make(connection)
    return transport
