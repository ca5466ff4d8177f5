"""One connection to the fake containerd: its namespace, what the tests
queued against its calls, and how its calls find containerd's state."""

from __future__ import annotations

from collections import Counter, deque

import anyio
import anyio.lowlevel

from ... import errors
from ..._ids import validate_id
from ..._types import ContainerRecord
from ._state import Hold, _Containerd, _Namespace, _Process, _Task

__all__ = ["Connection"]


class Connection:
    """What one FakeTransport holds of its own; the daemon is shared."""

    def __init__(self, daemon: _Containerd, namespace: str | None = None) -> None:
        if namespace is not None:
            validate_id(namespace, kind="namespace")
        self.namespace = namespace
        self.daemon = daemon
        self.closed = False
        self.failures: dict[str, deque[tuple[errors.SupervisorError, bool]]] = {}
        self.holds: dict[str, deque[Hold]] = {}
        self.calls: Counter[str] = Counter()
        self.signals: list[tuple[str, str, int, bool]] = []

    def bind(self, namespace: str) -> None:
        validate_id(namespace, kind="namespace")
        if self.namespace is None:
            self.namespace = namespace
        elif self.namespace != namespace:
            raise errors.InvalidArgument(
                f"the transport is bound to namespace {self.namespace}, not {namespace}"
            )

    @property
    def name(self) -> str:
        """The namespace, which every call and most controls need."""
        if self.namespace is None:
            raise _unbound()
        return self.namespace

    @property
    def ns(self) -> _Namespace:
        return self.daemon.namespace(self.name)

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.end_subscriptions("the transport was closed")
        if self.namespace is None:
            return
        for task in self.ns.tasks.values():
            for proc in task.processes():
                proc.notify()

    def end_subscriptions(self, reason: str) -> None:
        daemon = self.daemon
        for sub in [s for s in daemon.subscriptions if s.owner is self]:
            sub.fail(reason)
            daemon.subscriptions.remove(sub)

    # -- around every call ------------------------------------------------------------

    async def before(
        self, method: str, container_id: str | None = None, process_id: str | None = None
    ) -> None:
        self.calls[method] += 1
        # Every real call suspends, so a caller can be cancelled at each one.
        await anyio.lowlevel.checkpoint()
        if self.closed:
            raise errors.Unavailable(
                "the transport was closed", container_id=container_id, process_id=process_id
            )
        if self.daemon.down:
            raise errors.Unavailable(
                "containerd connection failed: the fake containerd is down",
                container_id=container_id,
                process_id=process_id,
            )
        if self.namespace is None:
            raise _unbound()
        await self._gate(method, after=False)

    async def after(self, method: str) -> None:
        await self._gate(method, after=True)
        # The reply travels too: a caller can be cancelled once containerd acted.
        await anyio.lowlevel.checkpoint()

    async def _gate(self, method: str, *, after: bool) -> None:
        holds = self.holds.get(method)
        if holds and holds[0].after is after:
            await holds.popleft()._pass()
        failures = self.failures.get(method)
        if failures and failures[0][1] is after:
            raise failures.popleft()[0]

    # -- containerd's state, as the tasks service finds it ----------------------------

    def lookup(self, container_id: str, process_id: str | None) -> tuple[_Task, _Process]:
        task = self.ns.tasks.get(container_id)
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

    def container(self, container_id: str) -> ContainerRecord:
        record = self.ns.containers.get(container_id)
        if record is None:
            raise errors.NotFound(
                f'container "{container_id}" in namespace "{self.name}": not found',
                container_id=container_id,
            )
        return record

    def task(self, container_id: str) -> _Task:
        # The tasks service looks the container up first: a task whose
        # container was deleted under it is listed but cannot be reached.
        self.container(container_id)
        return self.lookup(container_id, None)[0]

    def process(self, container_id: str, exec_id: str) -> tuple[_Task, _Process]:
        self.container(container_id)
        if exec_id and exec_id == container_id:
            # Only an empty exec id names the init process: containerd
            # takes an exec named as its container, and finds it by that.
            task = self.lookup(container_id, None)[0]
            proc = task.execs.get(exec_id)
            if proc is None:
                raise errors.NotFound(
                    f"process does not exist {exec_id}",
                    container_id=container_id,
                    process_id=exec_id,
                )
            return task, proc
        return self.lookup(container_id, exec_id)


def _unbound() -> errors.FailedPrecondition:
    return errors.FailedPrecondition(
        "the fake transport is bound to no namespace yet: "
        "connect() binds it (or FakeTransport.bind)"
    )
