"""The fake containerd's test controls and inspection: what a test does
to a :class:`FakeTransport` besides calling it, reached as its ``controls``."""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ... import errors
from ..._types import TaskEvent, TaskRecord, Topic
from ._connection import Connection
from ._state import _LIVE, _METHODS, Hold

__all__ = ["FakeControls"]

# The transport type reopen() makes: given, not imported, so that this
# module stays below the transport's.
T = TypeVar("T")


class FakeControls(Generic[T]):
    """A fake connection's controls: what its processes do (:meth:`exit`,
    :meth:`oom`), calls that fail or stop half-way (:meth:`fail_next`,
    :meth:`hold`), a disturbed event stream (:meth:`break_stream`,
    :meth:`drop_events`, :meth:`restart`), and what the library did
    (:attr:`calls`, :meth:`processes`, :meth:`is_empty`).

    Controls that look at a namespace's containers raise FailedPrecondition
    until the transport is bound to one (see ``FakeTransport.bind``).
    """

    def __init__(self, connection: Connection, open: Callable[[Connection], T]) -> None:
        self._conn = connection
        self._open = open

    # -- the connection ---------------------------------------------------------------

    @property
    def namespace(self) -> str | None:
        """The namespace the transport is bound to; None until it is."""
        return self._conn.namespace

    @property
    def closed(self) -> bool:
        """True once the transport was closed; every call then raises Unavailable."""
        return self._conn.closed

    @property
    def calls(self) -> Counter[str]:
        """How many times each Transport method was called (failed and
        refused calls included), e.g. ``calls["create_task"]``."""
        return self._conn.calls

    @property
    def signals(self) -> list[tuple[str, str, int, bool]]:
        """Every signal sent through ``kill``, as ``(container_id,
        process_id, signal, all)``."""
        return self._conn.signals

    # -- what the next calls meet -----------------------------------------------------

    def fail_next(self, method: str, error: errors.SupervisorError, *, after: bool = False) -> None:
        """Make the next call of ``method`` raise ``error``: before it acts
        (a refused call), or with ``after=True`` once it has acted (containerd
        did it, the reply was lost).  Several queue up in order.

        Raises:
            InvalidArgument: not a Transport method, or not a SupervisorError.
        """
        self._check_method(method)
        if not isinstance(error, errors.SupervisorError):
            raise errors.InvalidArgument(
                f"fail_next needs a supervisor.errors instance, not {type(error).__name__}"
            )
        self._conn.failures.setdefault(method, deque()).append((error, after))

    def hold(self, method: str, *, after: bool = False) -> Hold:
        """Stop the next call of ``method`` at a gate until the returned
        :class:`Hold` is released: before it acts, or once it has acted with
        ``after=True`` (say, to cancel the caller at that point).

        Raises:
            InvalidArgument: not a Transport method.
        """
        self._check_method(method)
        gate = Hold(method, after=after)
        self._conn.holds.setdefault(method, deque()).append(gate)
        return gate

    @staticmethod
    def _check_method(method: str) -> None:
        if method not in _METHODS:
            raise errors.InvalidArgument(f"{method!r} is not a Transport method")

    # -- what the processes do ---------------------------------------------------------

    def exit(self, container_id: str, process_id: str | None = None, code: int = 0) -> None:
        """The process (the init process unless ``process_id`` names an exec)
        exits with ``code``: a TaskExit is published and its waits return.
        An init process takes its running execs with it (exit 137, reported
        first), as a container's pid namespace does.

        Raises:
            NotFound: no such task or exec.
            FailedPrecondition: the process is not running.
        """
        task, proc = self._conn.lookup(container_id, process_id)
        if proc.state not in _LIVE:
            raise errors.FailedPrecondition(
                f"the process is {proc.state.value}, not running",
                container_id=container_id,
                process_id=proc.process_id,
            )
        self._conn.daemon.exit(self._conn.name, task, proc, code)

    def ignore(self, container_id: str, process_id: str | None, *signals: int) -> None:
        """From now on the process survives ``signals`` (as a container's
        pid 1 without a handler ignores SIGTERM); SIGKILL always kills.

        Raises:
            NotFound: no such task or exec.
        """
        proc = self._conn.lookup(container_id, process_id)[1]
        proc.ignored = frozenset(signals)

    def oom(self, container_id: str) -> None:
        """The kernel OOM-killed a process of the task: the task's OOM-kill
        counter (``Stats.memory.oom_kills``) goes up and a TaskOOM is
        published (it kills nothing by itself; follow with :meth:`exit`).

        Raises:
            NotFound: the container has no task.
        """
        task, _ = self._conn.lookup(container_id, None)
        task.oom_kills += 1
        self._conn.daemon.event(self._conn.name, Topic.OOM, container_id)

    # -- the event stream and containerd itself ---------------------------------------

    def publish(self, event: TaskEvent) -> None:
        """Publish ``event`` as containerd would, e.g. one of :attr:`events`
        a second time (containerd re-sends exits after its own restart)."""
        self._conn.daemon.publish(event)

    @property
    def events(self) -> list[TaskEvent]:
        """Every task event published in this namespace, delivered or not."""
        return list(self._conn.ns.events)

    def drop_events(self, drop: bool = True) -> None:
        """While ``drop``, task events are not delivered to any subscription
        (as while the library was not subscribed); sync markers still are."""
        self._conn.daemon.dropping = drop

    def break_stream(self) -> None:
        """End this transport's subscriptions with Unavailable (the
        connection broke); whatever they had not yet read is lost."""
        self._conn.end_subscriptions("containerd connection failed: stream reset")

    def restart(self) -> None:
        """containerd restarts: every subscription (of every transport
        opened from this one) and every pending wait fails with
        Unavailable; containers, tasks and processes are kept, as the shims
        outlive containerd."""
        self._conn.daemon.break_all("containerd connection failed: containerd restarted")

    def set_down(self, down: bool) -> None:
        """While ``down``, containerd does not answer: every call raises
        Unavailable.  Going down breaks what is live, as :meth:`restart` does."""
        if down and not self._conn.daemon.down:
            self._conn.daemon.break_all("containerd connection failed: containerd went away")
        self._conn.daemon.down = down

    def reopen(self, namespace: str | None = None) -> T:
        """A new connection to the same fake containerd (another client, or
        the application after its own restart), with its own :attr:`calls`,
        bound to ``namespace`` (by default this one's, if it is bound)."""
        return self._open(Connection(self._conn.daemon, namespace or self._conn.namespace))

    # -- inspection (not calls: nothing is counted) -----------------------------------

    def container_ids(self) -> list[str]:
        """The containers of this namespace."""
        return sorted(self._conn.ns.containers)

    def processes(self, container_id: str) -> dict[str, TaskRecord]:
        """The container's task's processes by id (the init process under
        the container id); empty if it has no task."""
        task = self._conn.ns.tasks.get(container_id)
        if task is None:
            return {}
        return {p.process_id: task.record(p) for p in task.processes()}

    def is_empty(self) -> bool:
        """True when the namespace holds no container and no task."""
        return not self._conn.ns.containers and not self._conn.ns.tasks

    @property
    def subscriptions(self) -> int:
        """How many subscriptions of this transport are live."""
        return sum(1 for s in self._conn.daemon.subscriptions if s.owner is self._conn)

    def resources(self, container_id: str) -> dict[str, Any]:
        """What ``update_resources`` last set on the task."""
        task, _ = self._conn.lookup(container_id, None)
        return dict(task.resources)

    def exec_spec(self, container_id: str, exec_id: str) -> dict[str, Any]:
        """The process spec the exec was created with, as containerd got it."""
        proc = self._conn.lookup(container_id, exec_id)[1]
        copied: dict[str, Any] = json.loads(json.dumps(proc.spec or {}))
        return copied

    def terminal_size(
        self, container_id: str, process_id: str | None = None
    ) -> tuple[int, int] | None:
        """The last ``resize`` of the process, ``(width, height)``."""
        return self._conn.lookup(container_id, process_id)[1].size

    def stdin_closed(self, container_id: str, process_id: str | None = None) -> bool:
        """True once ``close_stdin`` was called for the process."""
        return self._conn.lookup(container_id, process_id)[1].stdin_closed
