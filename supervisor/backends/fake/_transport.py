"""FakeTransport: the Transport protocol over the fake containerd's state."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from ... import errors
from ..._ids import validate_id
from ..._types import (
    ContainerRecord,
    ExitStatus,
    ProcessInfo,
    ProcessState,
    StdioPaths,
    TaskRecord,
    Topic,
)
from ...stats._model import CpuStats, MemoryStats, PidsStats, Stats
from ...stats._summary import ProcessSummary
from ..base import EventStream, Sync

if TYPE_CHECKING:
    from ...images._types import Mount

from ._controls import FakeControls
from ._rules import (
    check_container,
    check_runtime_options,
    process_refusal,
    resources_refusal,
    runc_refusal,
)
from ._state import (
    _LIVE,
    _SIGKILL,
    _SIGKILL_EXIT,
    ZERO_TIME,
    _json,
    _now,
    _Process,
    _Subscription,
    _Task,
)

__all__ = ["FakeTransport"]


class FakeTransport(FakeControls):
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
        check_container(container_id, runtime, labels, snapshotter, snapshot_key)
        check_runtime_options(container_id, runtime, runtime_options, spec)
        ns = self._ns
        if container_id in ns.containers:
            raise errors.AlreadyExists(
                f'container "{container_id}": already exists', container_id=container_id
            )
        ns.containers[container_id] = ContainerRecord(
            id=container_id,
            spec=body,
            runtime=runtime,
            # containerd stores no label whose value is empty.
            labels={k: v for k, v in labels.items() if v},
            created_at=_now(),
            snapshotter=snapshotter,
            snapshot_key=snapshot_key,
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
        record = self._container(container_id)
        ns = self._ns
        if container_id in ns.tasks:
            raise errors.AlreadyExists(
                f"task {container_id}: already exists",
                container_id=container_id,
                process_id=container_id,
            )
        process = record.spec.get("process")
        refusal = process_refusal(process) or runc_refusal(record, process, stdio, init=True)
        if refusal is not None:
            raise errors.Unknown(
                f"failed to create shim task: {refusal}: unknown", container_id=container_id
            )
        pid = next(self._daemon.pids)
        ns.tasks[container_id] = _Task(
            _Process(container_id, container_id, stdio, None, pid, init=True)
        )
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
        # The shim decodes the spec last, with Go's JSON decoder.
        refusal = process_refusal(body)
        if refusal is not None:
            raise errors.Unknown(
                f"{refusal}: unknown", container_id=container_id, process_id=exec_id
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
            refusal = runc_refusal(self._container(container_id), proc.spec, proc.stdio)
            if task.paused and not task.thawed:
                # gRPC UNKNOWN from containerd, refined by its words as the
                # real transport does (backends._status).
                raise errors.FailedPrecondition(
                    "OCI runtime exec failed: exec failed: cannot exec in a paused container "
                    "(use --ignore-paused to override): unknown",
                    container_id=container_id,
                    process_id=exec_id,
                )
            if refusal is not None:
                # Without stderr (or stdout) runc has started the process by
                # then; the shim forgets it and the exec stays created.
                raise errors.Unknown(
                    f"{refusal}: unknown", container_id=container_id, process_id=exec_id
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
        if proc.is_init and all and proc.state is not ProcessState.STOPPED:
            if task.paused and not task.thawed:
                # runc freezes the cgroup, signals and thaws it, paused or not.
                task.thawed = True
                self._deliver_pending(task)
            # Every process of the container gets the signal, each as it
            # takes it (the init process's SIGKILL takes the execs anyway).
            for e in list(task.execs.values()):
                if e.state in _LIVE and signal not in (0, _SIGKILL, *e.ignored):
                    self._daemon.stop(self._namespace, e, 128 + signal)
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
        elif task.paused and not task.thawed and not (proc.is_init and (all or signal == _SIGKILL)):
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
            # yet it (like the reply and TaskDelete) carries "never exited".
            status = init.status()
            daemon.exit(self._namespace, task, init, _SIGKILL_EXIT, ZERO_TIME)
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
        if task.thawed:
            raise errors.Unknown(
                "OCI runtime resume failed: container not paused: unknown",
                container_id=container_id,
            )
        task.init.state = ProcessState.RUNNING
        self._daemon.event(self._namespace, Topic.RESUMED, container_id)
        self._deliver_pending(task)
        await self._after("resume")

    def _deliver_pending(self, task: _Task) -> None:
        # A thawed cgroup's processes take the signals they were sent frozen.
        pending, task.pending = task.pending, []
        for proc, signal in pending:
            if proc.state in _LIVE and (signal == _SIGKILL or signal not in proc.ignored):
                self._daemon.exit(self._namespace, task, proc, 128 + signal)

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
                oom_kills=task.oom_kills,
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
        refusal = resources_refusal(body)
        if refusal is not None:
            raise errors.Unknown(f"{refusal}: unknown", container_id=container_id)
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
        snapshotter=record.snapshotter,
        snapshot_key=record.snapshot_key,
    )
