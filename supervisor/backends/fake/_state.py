"""The fake containerd's own state: containers, tasks, processes and
subscriptions, shared by every FakeTransport made from one (see
:meth:`FakeControls.reopen <supervisor.backends.fake.FakeControls.reopen>`)."""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.lowlevel

from ... import errors
from ..._types import (
    ContainerRecord,
    ExitStatus,
    ProcessState,
    StdioPaths,
    TaskEvent,
    TaskRecord,
    Topic,
)
from ..base import Sync, Transport

__all__ = ["ZERO_TIME", "Hold"]

# containerd reports "never exited" as Go's zero time, which decodes to this.
ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
_SIGKILL = 9
_SIGKILL_EXIT = 128 + _SIGKILL

# The calls fail_next() and hold() can aim at: the Transport protocol's methods.
_METHODS = frozenset(n for n in vars(Transport) if not n.startswith("_")) - {
    "namespace",
    "bind",
    "aclose",
}

_LIVE = (ProcessState.RUNNING, ProcessState.PAUSED)


def _now() -> datetime:
    return datetime.now(UTC)


def _json(value: Mapping[str, Any], what: str, container_id: str | None = None) -> dict[str, Any]:
    # containerd stores what it is sent as JSON bytes: keep exactly what a
    # round trip keeps, and refuse what the real transport could not encode.
    try:
        loaded = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
        raise errors.InvalidArgument(
            f"cannot encode {what}: {exc}", container_id=container_id
        ) from exc
    if not isinstance(loaded, dict):
        raise errors.InvalidArgument(f"{what} must be a mapping", container_id=container_id)
    return loaded


class Hold:
    """A gate for the next call of one method (see :meth:`FakeControls.hold`).

    The call stops at the gate (before acting, or after acting with
    ``after=True``) until :meth:`release`; :meth:`wait` returns once a call
    has reached it.
    """

    def __init__(self, method: str, *, after: bool) -> None:
        self.method = method
        self.after = after
        self._reached = anyio.Event()
        self._released = anyio.Event()

    @property
    def reached(self) -> bool:
        """True once a call stopped at the gate."""
        return self._reached.is_set()

    async def wait(self) -> None:
        """Until a call has reached the gate."""
        await self._reached.wait()

    def release(self) -> None:
        """Let the held call (or the next one to arrive) go on."""
        self._released.set()

    async def _pass(self) -> None:
        self._reached.set()
        await self._released.wait()


class _Process:
    """A task's init process or an exec, as the shim would keep it."""

    def __init__(
        self,
        container_id: str,
        process_id: str,
        stdio: StdioPaths,
        spec: dict[str, Any] | None,
        pid: int = 0,
        *,
        init: bool = False,
    ) -> None:
        self.container_id = container_id
        # Not told by the id: containerd takes an exec named as its container.
        self._init = init
        self.process_id = process_id
        self.stdio = stdio
        self.spec = spec
        self.pid = pid
        self.state = ProcessState.CREATED
        self.exit_code = 0
        self.exited_at: datetime | None = None
        self.deleted = False
        self.shim_gone = False
        self.stdin_closed = False
        self.size: tuple[int, int] | None = None
        self.ignored: frozenset[int] = frozenset()
        self._changed: anyio.Event | None = None

    @property
    def is_init(self) -> bool:
        return self._init

    def changed(self) -> anyio.Event:
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed

    def notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def status(self) -> ExitStatus:
        return ExitStatus(self.exit_code, self.exited_at if self.exited_at else ZERO_TIME)


class _Task:
    def __init__(self, init: _Process) -> None:
        self.init = init
        self.execs: dict[str, _Process] = {}
        self.resources: dict[str, Any] = {}
        self.cpu_ns = 0
        # Signals a frozen process has not received yet: delivered on resume.
        self.pending: list[tuple[_Process, int]] = []
        # The cgroup's OOM-kill counter: it lives as long as the task does.
        self.oom_kills = 0
        # runc thawed the cgroup under containerd's paused state (a signal
        # to all): the processes run, and containerd can no longer resume it.
        self.thawed = False

    def processes(self) -> list[_Process]:
        return [self.init, *self.execs.values()]

    def record(self, proc: _Process) -> TaskRecord:
        state = proc.state
        # Every exec of a paused task reports the task's state, as the shim
        # does, whether it started, ended or not.
        if not proc.is_init and self.paused:
            state = ProcessState.PAUSED
        return TaskRecord(
            container_id=proc.container_id,
            process_id=proc.process_id,
            pid=proc.pid,
            state=state,
            stdio=proc.stdio,
            exit_status=proc.status() if state is ProcessState.STOPPED else None,
        )

    @property
    def paused(self) -> bool:
        return self.init.state is ProcessState.PAUSED


class _Namespace:
    def __init__(self) -> None:
        self.containers: dict[str, ContainerRecord] = {}
        self.runtime_options: dict[str, dict[str, Any] | None] = {}
        # Keyed by container id; a task outlives its container when the
        # container is deleted under it, as in containerd.
        self.tasks: dict[str, _Task] = {}
        self.events: list[TaskEvent] = []


class _Subscription:
    def __init__(self, owner: object, namespace: str, topics: frozenset[Topic] | None) -> None:
        # The connection that subscribed: what ends with it.
        self.owner = owner
        self.namespace = namespace
        self.topics = topics
        self.items: deque[TaskEvent | Sync] = deque()
        self.error: str | None = None
        self._changed: anyio.Event | None = None

    def wants(self, event: TaskEvent) -> bool:
        return self.topics is None or event.topic in self.topics

    def push(self, item: TaskEvent | Sync) -> None:
        if self.error is None:
            self.items.append(item)
            self._wake()

    def fail(self, reason: str) -> None:
        # A broken connection loses what was still in flight.
        self.items.clear()
        self.error = reason
        self._wake()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def changed(self) -> anyio.Event:
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed


class _Containerd:
    """What every FakeTransport opened from one another shares: the daemon."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.namespaces: dict[str, _Namespace] = {}
        self.subscriptions: list[_Subscription] = []
        self.pids = itertools.count(1001)
        self.dropping = False
        self.down = False
        self.generation = 0

    def namespace(self, name: str) -> _Namespace:
        ns = self.namespaces.get(name)
        if ns is None:
            ns = self.namespaces[name] = _Namespace()
        return ns

    def publish(self, event: TaskEvent) -> None:
        self.namespace(event.namespace).events.append(event)
        if self.dropping:
            return
        for sub in self.subscriptions:
            if sub.namespace == event.namespace and sub.wants(event):
                sub.push(event)

    def event(
        self,
        namespace: str,
        topic: Topic,
        container_id: str,
        process_id: str | None = None,
        pid: int = 0,
        exit_code: int = 0,
        exited_at: datetime | None = None,
    ) -> None:
        self.publish(
            TaskEvent(
                namespace,
                topic,
                container_id,
                process_id or container_id,
                pid,
                exit_code,
                exited_at,
                _now(),
            )
        )

    def stop(
        self, namespace: str, proc: _Process, code: int, exited_at: datetime | None = None
    ) -> None:
        proc.state = ProcessState.STOPPED
        proc.exit_code = code
        proc.exited_at = _now() if exited_at is None else exited_at
        proc.notify()
        self.event(
            namespace,
            Topic.EXIT,
            proc.container_id,
            proc.process_id,
            proc.pid,
            code,
            proc.exited_at,
        )

    def exit(
        self,
        namespace: str,
        task: _Task,
        proc: _Process,
        code: int,
        exited_at: datetime | None = None,
    ) -> None:
        if proc.is_init:
            # The init process is the pid namespace's: its end takes every
            # exec with it, and the shim reports theirs first.
            task.pending.clear()
            for e in task.execs.values():
                if e.state in _LIVE:
                    self.stop(namespace, e, _SIGKILL_EXIT)
        self.stop(namespace, proc, code, exited_at)

    def break_all(self, reason: str) -> None:
        for sub in list(self.subscriptions):
            sub.fail(reason)
        self.subscriptions.clear()
        self.generation += 1
        for ns in self.namespaces.values():
            for task in ns.tasks.values():
                for proc in task.processes():
                    proc.notify()
