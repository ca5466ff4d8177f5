"""The fake containerd's connection state, test controls and inspection:
what :class:`FakeTransport` adds to the Transport protocol for tests."""

from __future__ import annotations

import json
from collections import Counter, deque
from typing import Any, Self

import anyio
import anyio.lowlevel

from ... import errors
from ..._ids import validate_id
from ..._types import ContainerRecord, TaskEvent, TaskRecord, Topic
from ._state import (
    _LIVE,
    _METHODS,
    Hold,
    _Containerd,
    _Namespace,
    _Process,
    _Task,
)

__all__ = ["FakeControls"]


class FakeControls:
    """Everything of a fake connection but the Transport calls themselves."""

    def __init__(self, namespace: str, *, version: str = "1.6.20-fake") -> None:
        validate_id(namespace, kind="namespace")
        self._namespace = namespace
        self._daemon = _Containerd(version)
        self._closed = False
        self._failures: dict[str, deque[tuple[errors.SupervisorError, bool]]] = {}
        self._holds: dict[str, deque[Hold]] = {}
        self.calls: Counter[str] = Counter()
        self.signals: list[tuple[str, str, int, bool]] = []

    # -- the transport's own state ----------------------------------------------

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called; every call then raises Unavailable."""
        return self._closed

    @property
    def _ns(self) -> _Namespace:
        return self._daemon.namespace(self._namespace)

    async def aclose(self) -> None:
        """Close this connection: its subscriptions end, its pending waits fail."""
        if self._closed:
            return
        self._closed = True
        self._end_subscriptions("the transport was closed")
        for task in self._ns.tasks.values():
            for proc in task.processes():
                proc.notify()

    async def _before(
        self, method: str, container_id: str | None = None, process_id: str | None = None
    ) -> None:
        self.calls[method] += 1
        # Every real call suspends, so a caller can be cancelled at each one.
        await anyio.lowlevel.checkpoint()
        if self._closed:
            raise errors.Unavailable(
                "the transport was closed", container_id=container_id, process_id=process_id
            )
        if self._daemon.down:
            raise errors.Unavailable(
                "containerd connection failed: the fake containerd is down",
                container_id=container_id,
                process_id=process_id,
            )
        await self._gate(method, after=False)

    async def _after(self, method: str) -> None:
        await self._gate(method, after=True)
        # The reply travels too: a caller can be cancelled once containerd acted.
        await anyio.lowlevel.checkpoint()

    async def _gate(self, method: str, *, after: bool) -> None:
        holds = self._holds.get(method)
        if holds and holds[0].after is after:
            await holds.popleft()._pass()
        failures = self._failures.get(method)
        if failures and failures[0][1] is after:
            raise failures.popleft()[0]

    # -- test controls ------------------------------------------------------------

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
        self._failures.setdefault(method, deque()).append((error, after))

    def hold(self, method: str, *, after: bool = False) -> Hold:
        """Stop the next call of ``method`` at a gate until the returned
        :class:`Hold` is released: before it acts, or once it has acted with
        ``after=True`` (say, to cancel the caller at that point).

        Raises:
            InvalidArgument: not a Transport method.
        """
        self._check_method(method)
        gate = Hold(method, after=after)
        self._holds.setdefault(method, deque()).append(gate)
        return gate

    @staticmethod
    def _check_method(method: str) -> None:
        if method not in _METHODS:
            raise errors.InvalidArgument(f"{method!r} is not a Transport method")

    def exit(self, container_id: str, process_id: str | None = None, code: int = 0) -> None:
        """The process (the init process unless ``process_id`` names an exec)
        exits with ``code``: a TaskExit is published and its waits return.
        An init process takes its running execs with it (exit 137, reported
        first), as a container's pid namespace does.

        Raises:
            NotFound: no such task or exec.
            FailedPrecondition: the process is not running.
        """
        task, proc = self._lookup(container_id, process_id)
        if proc.state not in _LIVE:
            raise errors.FailedPrecondition(
                f"the process is {proc.state.value}, not running",
                container_id=container_id,
                process_id=proc.process_id,
            )
        self._daemon.exit(self._namespace, task, proc, code)

    def ignore(self, container_id: str, process_id: str | None, *signals: int) -> None:
        """From now on the process survives ``signals`` (as a container's
        pid 1 without a handler ignores SIGTERM); SIGKILL always kills.

        Raises:
            NotFound: no such task or exec.
        """
        proc = self._lookup(container_id, process_id)[1]
        proc.ignored = frozenset(signals)

    def oom(self, container_id: str) -> None:
        """The kernel OOM-killed a process of the task: the task's OOM-kill
        counter (``Stats.memory.oom_kills``) goes up and a TaskOOM is
        published (it kills nothing by itself; follow with :meth:`exit`).

        Raises:
            NotFound: the container has no task.
        """
        task, _ = self._lookup(container_id, None)
        task.oom_kills += 1
        self._daemon.event(self._namespace, Topic.OOM, container_id)

    def publish(self, event: TaskEvent) -> None:
        """Publish ``event`` as containerd would, e.g. one of :attr:`events`
        a second time (containerd re-sends exits after its own restart)."""
        self._daemon.publish(event)

    @property
    def events(self) -> list[TaskEvent]:
        """Every task event published in this namespace, delivered or not."""
        return list(self._ns.events)

    def drop_events(self, drop: bool = True) -> None:
        """While ``drop``, task events are not delivered to any subscription
        (as while the library was not subscribed); sync markers still are."""
        self._daemon.dropping = drop

    def break_stream(self) -> None:
        """End this transport's subscriptions with Unavailable (the
        connection broke); whatever they had not yet read is lost."""
        self._end_subscriptions("containerd connection failed: stream reset")

    def restart(self) -> None:
        """containerd restarts: every subscription (of every transport
        opened from this one) and every pending wait fails with
        Unavailable; containers, tasks and processes are kept, as the shims
        outlive containerd."""
        self._daemon.break_all("containerd connection failed: containerd restarted")

    def set_down(self, down: bool) -> None:
        """While ``down``, containerd does not answer: every call raises
        Unavailable.  Going down breaks what is live, as :meth:`restart` does."""
        if down and not self._daemon.down:
            self._daemon.break_all("containerd connection failed: containerd went away")
        self._daemon.down = down

    def reopen(self, namespace: str | None = None) -> Self:
        """A new connection to the same fake containerd (another client, or
        the application after its own restart), with its own :attr:`calls`."""
        other = type(self)(namespace or self._namespace, version=self._daemon.version)
        other._daemon = self._daemon
        return other

    # -- inspection (not calls: nothing is counted) ---------------------------------

    def container_ids(self) -> list[str]:
        """The containers of this namespace."""
        return sorted(self._ns.containers)

    def processes(self, container_id: str) -> dict[str, TaskRecord]:
        """The container's task's processes by id (the init process under
        the container id); empty if it has no task."""
        task = self._ns.tasks.get(container_id)
        if task is None:
            return {}
        return {p.process_id: task.record(p) for p in task.processes()}

    def is_empty(self) -> bool:
        """True when the namespace holds no container and no task."""
        return not self._ns.containers and not self._ns.tasks

    @property
    def subscriptions(self) -> int:
        """How many subscriptions of this transport are live."""
        return sum(1 for s in self._daemon.subscriptions if s.owner is self)

    def resources(self, container_id: str) -> dict[str, Any]:
        """What :meth:`update_resources` last set on the task."""
        task, _ = self._lookup(container_id, None)
        return dict(task.resources)

    def exec_spec(self, container_id: str, exec_id: str) -> dict[str, Any]:
        """The process spec the exec was created with, as containerd got it."""
        proc = self._lookup(container_id, exec_id)[1]
        copied: dict[str, Any] = json.loads(json.dumps(proc.spec or {}))
        return copied

    def terminal_size(
        self, container_id: str, process_id: str | None = None
    ) -> tuple[int, int] | None:
        """The last :meth:`resize` of the process, ``(width, height)``."""
        return self._lookup(container_id, process_id)[1].size

    def stdin_closed(self, container_id: str, process_id: str | None = None) -> bool:
        """True once :meth:`close_stdin` was called for the process."""
        return self._lookup(container_id, process_id)[1].stdin_closed

    def _lookup(self, container_id: str, process_id: str | None) -> tuple[_Task, _Process]:
        task = self._ns.tasks.get(container_id)
        if task is None:
            raise errors.NotFound(f"task {container_id} not found", container_id=container_id)
        if not process_id or process_id == container_id:
            return task, task.init
        proc = task.execs.get(process_id)
        if proc is None:
            raise errors.NotFound(
                f"process does not exist {process_id}",
                container_id=container_id,
                process_id=process_id,
            )
        return task, proc

    def _end_subscriptions(self, reason: str) -> None:
        daemon = self._daemon
        for sub in [s for s in daemon.subscriptions if s.owner is self]:
            sub.fail(reason)
            daemon.subscriptions.remove(sub)

    # -- containerd's state, as the tasks service finds it --------------------------

    def _container(self, container_id: str) -> ContainerRecord:
        record = self._ns.containers.get(container_id)
        if record is None:
            raise errors.NotFound(
                f'container "{container_id}" in namespace "{self._namespace}": not found',
                container_id=container_id,
            )
        return record

    def _task(self, container_id: str) -> _Task:
        # The tasks service looks the container up first: a task whose
        # container was deleted under it is listed but cannot be reached.
        self._container(container_id)
        return self._lookup(container_id, None)[0]

    def _process(self, container_id: str, exec_id: str) -> tuple[_Task, _Process]:
        self._container(container_id)
        if exec_id and exec_id == container_id:
            # Only an empty exec id names the init process: containerd
            # takes an exec named as its container, and finds it by that.
            task = self._lookup(container_id, None)[0]
            proc = task.execs.get(exec_id)
            if proc is None:
                raise errors.NotFound(
                    f"process does not exist {exec_id}",
                    container_id=container_id,
                    process_id=exec_id,
                )
            return task, proc
        return self._lookup(container_id, exec_id)
