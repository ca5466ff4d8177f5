"""FakeTransport: the Transport protocol over the fake containerd's state."""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from ... import errors
from ..._ids import validate_id
from ..._stats import CpuStats, MemoryStats, PidsStats, Stats
from ..._summary import ProcessSummary
from ..._types import (
    ContainerRecord,
    ExitStatus,
    ProcessInfo,
    ProcessState,
    StdioPaths,
    TaskEvent,
    TaskRecord,
    Topic,
)
from ..base import EventStream, Sync

if TYPE_CHECKING:
    from ...images._types import Mount

from ._state import (
    _LIVE,
    _METHODS,
    _SIGKILL,
    _SIGKILL_EXIT,
    Hold,
    _Containerd,
    _json,
    _Namespace,
    _now,
    _Process,
    _Subscription,
    _Task,
)

__all__ = ["FakeTransport"]

class FakeTransport:
    """An in-memory containerd 1.6 for one namespace (see the module docstring).

    Args:
        namespace: the containerd namespace this transport is bound to.
        version: what :meth:`version` answers.

    Attributes:
        calls: how many times each Transport method was called (failed and
            refused calls included), e.g. ``calls["create_task"]``.
        signals: every signal sent through :meth:`kill`, as
            ``(container_id, process_id, signal, all)``.
    """

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
        """The kernel OOM-killed a process of the task: a TaskOOM is published
        (it kills nothing by itself; follow with :meth:`exit`).

        Raises:
            NotFound: the container has no task.
        """
        self._lookup(container_id, None)
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

    def reopen(self, namespace: str | None = None) -> FakeTransport:
        """A new connection to the same fake containerd (another client, or
        the application after its own restart), with its own :attr:`calls`."""
        other = FakeTransport(namespace or self._namespace, version=self._daemon.version)
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
        return self._lookup(container_id, exec_id)

    # -- the Transport protocol -------------------------------------------------------

    async def version(self) -> str:
        await self._before("version")
        await self._after("version")
        return self._daemon.version

    async def create_container(
        self,
        container_id: str,
        spec: Mapping[str, Any],
        *,
        runtime: str,
        runtime_options: Mapping[str, Any] | None,
        labels: Mapping[str, str],
        snapshotter: str = "",
        snapshot_key: str = "",
        image: str = "",
    ) -> None:
        await self._before("create_container", container_id)
        validate_id(container_id, kind="container id")
        body = _json(spec, "Spec", container_id)
        options = (
            None if runtime_options is None else _json(runtime_options, "Options", container_id)
        )
        ns = self._ns
        if container_id in ns.containers:
            raise errors.AlreadyExists(
                f'container "{container_id}": already exists', container_id=container_id
            )
        ns.containers[container_id] = ContainerRecord(
            id=container_id, spec=body, runtime=runtime, labels=dict(labels), created_at=_now()
        )
        ns.runtime_options[container_id] = options
        await self._after("create_container")

    async def get_container(self, container_id: str) -> ContainerRecord:
        await self._before("get_container", container_id)
        record = self._container(container_id)
        await self._after("get_container")
        return _copy_record(record)

    async def list_containers(self) -> list[ContainerRecord]:
        await self._before("list_containers")
        records = [_copy_record(self._ns.containers[c]) for c in sorted(self._ns.containers)]
        await self._after("list_containers")
        return records

    async def delete_container(self, container_id: str) -> None:
        await self._before("delete_container", container_id)
        ns = self._ns
        if container_id not in ns.containers:
            raise errors.NotFound(f"container {container_id}: not found", container_id=container_id)
        # containerd does not look for a task here: one left behind is orphaned.
        del ns.containers[container_id]
        ns.runtime_options.pop(container_id, None)
        await self._after("delete_container")

    async def create_task(
        self, container_id: str, stdio: StdioPaths, *, rootfs: Sequence[Mount] = ()
    ) -> int:
        await self._before("create_task", container_id, container_id)
        self._container(container_id)
        ns = self._ns
        if container_id in ns.tasks:
            raise errors.AlreadyExists(
                f"task {container_id}: already exists",
                container_id=container_id,
                process_id=container_id,
            )
        pid = next(self._daemon.pids)
        ns.tasks[container_id] = _Task(_Process(container_id, container_id, stdio, None, pid))
        self._daemon.event(self._namespace, Topic.CREATE, container_id, pid=pid)
        await self._after("create_task")
        return pid

    async def exec(
        self, container_id: str, exec_id: str, spec: Mapping[str, Any], stdio: StdioPaths
    ) -> None:
        await self._before("exec", container_id, exec_id)
        task = self._task(container_id)
        validate_id(exec_id, kind="exec id")
        body = _json(spec, "Process", container_id)
        if exec_id in task.execs:
            raise errors.AlreadyExists(
                f"id {exec_id}: already exists", container_id=container_id, process_id=exec_id
            )
        state = task.init.state
        if state is ProcessState.STOPPED or state is ProcessState.PAUSED:
            raise errors.FailedPrecondition(
                f"cannot exec in a {state.value} state",
                container_id=container_id,
                process_id=exec_id,
            )
        task.execs[exec_id] = _Process(container_id, exec_id, stdio, body)
        self._daemon.event(self._namespace, Topic.EXEC_ADDED, container_id, exec_id)
        await self._after("exec")

    async def start(self, container_id: str, exec_id: str) -> int:
        await self._before("start", container_id, exec_id or container_id)
        task, proc = self._process(container_id, exec_id)
        if proc.state is not ProcessState.CREATED:
            raise errors.FailedPrecondition(
                f"cannot start a {proc.state.value} process",
                container_id=container_id,
                process_id=proc.process_id,
            )
        if proc.is_init:
            proc.state = ProcessState.RUNNING
            self._daemon.event(self._namespace, Topic.START, container_id, pid=proc.pid)
        else:
            if task.init.state is ProcessState.STOPPED:
                raise errors.FailedPrecondition(
                    "OCI runtime exec failed: exec failed: cannot exec in a stopped container",
                    container_id=container_id,
                    process_id=exec_id,
                )
            proc.pid = next(self._daemon.pids)
            proc.state = ProcessState.RUNNING
            self._daemon.event(
                self._namespace, Topic.EXEC_STARTED, container_id, exec_id, pid=proc.pid
            )
        await self._after("start")
        return proc.pid

    async def kill(self, container_id: str, exec_id: str, signal: int, all: bool) -> None:
        await self._before("kill", container_id, exec_id or container_id)
        task, proc = self._process(container_id, exec_id)
        self.signals.append((container_id, proc.process_id, signal, all))
        if proc.state is ProcessState.STOPPED:
            # containerd forgives a kill of every process of a finished task.
            if not (proc.is_init and all):
                raise errors.NotFound(
                    "process already finished",
                    container_id=container_id,
                    process_id=proc.process_id,
                )
        elif proc.state is ProcessState.CREATED and not proc.is_init:
            raise errors.FailedPrecondition(
                "process not created", container_id=container_id, process_id=exec_id
            )
        elif signal == 0 or (signal in proc.ignored and signal != _SIGKILL):
            pass
        elif task.paused and not (proc.is_init and (all or signal == _SIGKILL)):
            # A frozen process takes no signal until it is thawed (cgroup v1,
            # as on this project's hosts); killing the init process, or
            # every process (runc thaws the cgroup for that), goes through.
            task.pending.append((proc, signal))
        else:
            self._daemon.exit(self._namespace, task, proc, 128 + signal)
        await self._after("kill")

    async def wait(self, container_id: str, exec_id: str) -> ExitStatus:
        process_id = exec_id or container_id
        await self._before("wait", container_id, process_id)
        _, proc = self._process(container_id, exec_id)
        generation = self._daemon.generation
        while proc.state is not ProcessState.STOPPED:
            if self._closed or self._daemon.generation != generation:
                raise errors.Unavailable(
                    "containerd connection failed: stream reset",
                    container_id=container_id,
                    process_id=process_id,
                )
            if proc.shim_gone:
                # A process deleted unexited keeps its waits blocked until
                # the task goes, and with it the shim's connection.
                raise errors.Unknown(
                    "ttrpc: closed", container_id=container_id, process_id=process_id
                )
            await proc.changed().wait()
        await self._after("wait")
        return proc.status()

    async def delete_task(self, container_id: str) -> ExitStatus:
        await self._before("delete_task", container_id, container_id)
        task = self._task(container_id)
        init = task.init
        if init.state in _LIVE:
            raise errors.FailedPrecondition(
                f"cannot delete a {init.state.value} process",
                container_id=container_id,
                process_id=container_id,
            )
        daemon, ns = self._daemon, self._ns
        if init.state is ProcessState.CREATED:
            # runc kills the waiting init on delete: its exit is published,
            # yet the reply (and TaskDelete) carry "never exited".
            status = init.status()
            daemon.exit(self._namespace, task, init, _SIGKILL_EXIT)
        else:
            status = init.status()
        del ns.tasks[container_id]
        for proc in task.processes():
            proc.deleted = proc.shim_gone = True
            proc.notify()
        daemon.event(
            self._namespace,
            Topic.DELETE,
            container_id,
            pid=init.pid,
            exit_code=status.exit_code,
            exited_at=status.exited_at,
        )
        await self._after("delete_task")
        return status

    async def delete_process(self, container_id: str, exec_id: str) -> ExitStatus:
        await self._before("delete_process", container_id, exec_id)
        task, proc = self._process(container_id, exec_id)
        if proc.is_init:
            raise errors.InvalidArgument(
                "an exec id is required", container_id=container_id, process_id=exec_id
            )
        if task.record(proc).state in _LIVE:
            raise errors.FailedPrecondition(
                f"cannot delete a {task.record(proc).state.value} process",
                container_id=container_id,
                process_id=exec_id,
            )
        del task.execs[exec_id]
        proc.deleted = True
        proc.notify()
        await self._after("delete_process")
        return proc.status()

    async def get_task(self, container_id: str, exec_id: str = "") -> TaskRecord:
        await self._before("get_task", container_id, exec_id or container_id)
        task, proc = self._process(container_id, exec_id)
        await self._after("get_task")
        return task.record(proc)

    async def list_tasks(self) -> list[TaskRecord]:
        await self._before("list_tasks")
        tasks = self._ns.tasks
        records = [tasks[c].record(tasks[c].init) for c in sorted(tasks)]
        await self._after("list_tasks")
        return records

    async def pause(self, container_id: str) -> None:
        await self._before("pause", container_id)
        task = self._task(container_id)
        state = task.init.state
        if state is not ProcessState.RUNNING:
            raise errors.FailedPrecondition(
                "cannot pause task in created state"
                if state is ProcessState.CREATED
                else f"cannot pause a {state.value} container",
                container_id=container_id,
            )
        task.init.state = ProcessState.PAUSED
        self._daemon.event(self._namespace, Topic.PAUSED, container_id)
        await self._after("pause")

    async def resume(self, container_id: str) -> None:
        await self._before("resume", container_id)
        task = self._task(container_id)
        state = task.init.state
        if state is not ProcessState.PAUSED:
            raise errors.FailedPrecondition(
                "cannot resume task in created state"
                if state is ProcessState.CREATED
                else f"cannot resume a {state.value} "
                + ("container" if state is ProcessState.STOPPED else "process"),
                container_id=container_id,
            )
        task.init.state = ProcessState.RUNNING
        self._daemon.event(self._namespace, Topic.RESUMED, container_id)
        pending, task.pending = task.pending, []
        for proc, signal in pending:
            if proc.state in _LIVE and (signal == _SIGKILL or signal not in proc.ignored):
                self._daemon.exit(self._namespace, task, proc, 128 + signal)
        await self._after("resume")

    async def pids(self, container_id: str) -> list[ProcessInfo]:
        await self._before("pids", container_id)
        task = self._task(container_id)
        await self._after("pids")
        return [ProcessInfo(p.pid) for p in task.processes() if p.pid and _alive(p)]

    async def process_summaries(self, container_id: str) -> list[ProcessSummary]:
        await self._before("pids", container_id)
        task = self._task(container_id)
        await self._after("pids")
        return [
            ProcessSummary(pid=p.pid, exec_id="" if p.is_init else p.process_id)
            for p in task.processes()
            if p.pid and _alive(p)
        ]

    def _sample(self, task: _Task) -> Stats:
        task.cpu_ns += 1_000_000
        live = sum(1 for p in task.processes() if p.pid and _alive(p))
        memory = task.resources.get("memory")
        pids = task.resources.get("pids")
        limit = memory.get("limit") if isinstance(memory, dict) else None
        pid_limit = pids.get("limit") if isinstance(pids, dict) else None
        return Stats(
            memory=MemoryStats(
                usage=live << 20,
                limit=limit if isinstance(limit, int) and limit > 0 else None,
                working_set=live << 20,
                rss=live << 20,
                max_usage=live << 20,
                failcnt=0,
            ),
            cpu=CpuStats(total_usage=task.cpu_ns, user_usage=task.cpu_ns, per_cpu_usage=()),
            pids=PidsStats(
                current=live,
                limit=pid_limit if isinstance(pid_limit, int) and pid_limit > 0 else None,
            ),
            cgroup_version=1,
            read_at=_now(),
        )

    async def stats(self, container_id: str) -> Stats:
        await self._before("stats", container_id)
        # Metrics lists tasks directly: an orphaned task is still sampled.
        task = self._ns.tasks.get(container_id)
        if task is None:
            raise errors.NotFound("no metrics for the task", container_id=container_id)
        sample = self._sample(task)
        await self._after("stats")
        return sample

    async def metrics(self, container_ids: Collection[str]) -> dict[str, Stats]:
        await self._before("metrics")
        tasks = self._ns.tasks
        wanted = sorted(set(container_ids))
        samples = {cid: self._sample(tasks[cid]) for cid in wanted if cid in tasks}
        await self._after("metrics")
        return samples

    async def update_resources(self, container_id: str, resources: Mapping[str, Any]) -> None:
        await self._before("update_resources", container_id)
        task = self._task(container_id)
        body = _json(resources, "LinuxResources", container_id)
        if task.init.state is ProcessState.STOPPED:
            raise errors.FailedPrecondition(
                "cannot update a stopped container", container_id=container_id
            )
        task.resources = body
        await self._after("update_resources")

    async def resize(self, container_id: str, exec_id: str, width: int, height: int) -> None:
        await self._before("resize", container_id, exec_id or container_id)
        _, proc = self._process(container_id, exec_id)
        if not proc.is_init and proc.state is ProcessState.STOPPED:
            raise errors.FailedPrecondition(
                "cannot resize a stopped container", container_id=container_id, process_id=exec_id
            )
        proc.size = (width, height)
        await self._after("resize")

    async def close_stdin(self, container_id: str, exec_id: str) -> None:
        await self._before("close_stdin", container_id, exec_id or container_id)
        _, proc = self._process(container_id, exec_id)
        proc.stdin_closed = True
        await self._after("close_stdin")

    # -- events ---------------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(
        self, topics: Collection[Topic] | None = None
    ) -> AsyncIterator[EventStream]:
        await self._before("subscribe")
        sub = _Subscription(self, self._namespace, None if topics is None else frozenset(topics))
        self._daemon.subscriptions.append(sub)
        stream = self._stream(sub)
        try:
            yield stream
        finally:
            if sub in self._daemon.subscriptions:
                self._daemon.subscriptions.remove(sub)
            await stream.aclose()

    @staticmethod
    async def _stream(sub: _Subscription) -> EventStream:
        while True:
            if sub.items:
                yield sub.items.popleft()
            elif sub.error is not None:
                raise errors.Unavailable(sub.error)
            else:
                await sub.changed().wait()

    async def sync(self, token: str) -> None:
        await self._before("sync")
        marker = Sync(token)
        for sub in self._daemon.subscriptions:
            if sub.namespace == self._namespace:
                sub.push(marker)
        await self._after("sync")


def _alive(proc: _Process) -> bool:
    return proc.state is not ProcessState.STOPPED and not (
        not proc.is_init and proc.state is ProcessState.CREATED
    )


def _copy_record(record: ContainerRecord) -> ContainerRecord:
    # Each reply is decoded afresh from containerd's bytes: callers never
    # share (and never alter) what the fake stores.
    return ContainerRecord(
        id=record.id,
        spec=json.loads(json.dumps(record.spec)),
        runtime=record.runtime,
        labels=dict(record.labels),
        created_at=record.created_at,
    )
