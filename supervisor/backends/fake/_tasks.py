"""The fake's tasks service: tasks, their execs, and what runc does to
their processes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ... import errors
from ..._ids import validate_id
from ..._types import ExitStatus, ProcessState, StdioPaths, TaskRecord, Topic
from ._connection import Connection
from ._rules import process_refusal, resources_refusal, runc_refusal
from ._state import _LIVE, _SIGKILL, _SIGKILL_EXIT, ZERO_TIME, _json, _Process, _Task

if TYPE_CHECKING:
    from ...oci._types import Mount

__all__ = ["TaskCalls"]


class TaskCalls:
    """The Transport's task and process calls, for :class:`FakeTransport`."""

    _conn: Connection

    async def create_task(
        self, container_id: str, stdio: StdioPaths, *, rootfs: Sequence[Mount] = ()
    ) -> int:
        await self._conn.before("create_task", container_id, container_id)
        record = self._conn.container(container_id)
        ns = self._conn.ns
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
        pid = next(self._conn.daemon.pids)
        ns.tasks[container_id] = _Task(
            _Process(container_id, container_id, stdio, None, pid, init=True)
        )
        self._conn.daemon.event(self._conn.name, Topic.CREATE, container_id, pid=pid)
        await self._conn.after("create_task")
        return pid

    async def exec(
        self, container_id: str, exec_id: str, spec: Mapping[str, Any], stdio: StdioPaths
    ) -> None:
        await self._conn.before("exec", container_id, exec_id)
        task = self._conn.task(container_id)
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
        self._conn.daemon.event(self._conn.name, Topic.EXEC_ADDED, container_id, exec_id)
        await self._conn.after("exec")

    async def start(self, container_id: str, exec_id: str) -> int:
        await self._conn.before("start", container_id, exec_id or container_id)
        task, proc = self._conn.process(container_id, exec_id)
        if proc.state is not ProcessState.CREATED:
            raise errors.FailedPrecondition(
                f"cannot start a {proc.state.value} process",
                container_id=container_id,
                process_id=proc.process_id,
            )
        if proc.is_init:
            proc.state = ProcessState.RUNNING
            self._conn.daemon.event(self._conn.name, Topic.START, container_id, pid=proc.pid)
        else:
            if task.init.state is ProcessState.STOPPED:
                raise errors.FailedPrecondition(
                    "OCI runtime exec failed: exec failed: cannot exec in a stopped container",
                    container_id=container_id,
                    process_id=exec_id,
                )
            refusal = runc_refusal(self._conn.container(container_id), proc.spec, proc.stdio)
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
            proc.pid = next(self._conn.daemon.pids)
            proc.state = ProcessState.RUNNING
            self._conn.daemon.event(
                self._conn.name, Topic.EXEC_STARTED, container_id, exec_id, pid=proc.pid
            )
        await self._conn.after("start")
        return proc.pid

    async def kill(self, container_id: str, exec_id: str, signal: int, all: bool) -> None:
        await self._conn.before("kill", container_id, exec_id or container_id)
        task, proc = self._conn.process(container_id, exec_id)
        self._conn.signals.append((container_id, proc.process_id, signal, all))
        if proc.is_init and all and proc.state is not ProcessState.STOPPED:
            if task.paused and not task.thawed:
                # runc freezes the cgroup, signals and thaws it, paused or not.
                task.thawed = True
                self._deliver_pending(task)
            # Every process of the container gets the signal, each as it
            # takes it (the init process's SIGKILL takes the execs anyway).
            for e in list(task.execs.values()):
                if e.state in _LIVE and signal not in (0, _SIGKILL, *e.ignored):
                    self._conn.daemon.stop(self._conn.name, e, 128 + signal)
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
            self._conn.daemon.exit(self._conn.name, task, proc, 128 + signal)
        await self._conn.after("kill")

    async def wait(self, container_id: str, exec_id: str) -> ExitStatus:
        process_id = exec_id or container_id
        await self._conn.before("wait", container_id, process_id)
        _, proc = self._conn.process(container_id, exec_id)
        generation = self._conn.daemon.generation
        while proc.state is not ProcessState.STOPPED:
            if self._conn.closed or self._conn.daemon.generation != generation:
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
        await self._conn.after("wait")
        return proc.status()

    async def delete_task(self, container_id: str) -> ExitStatus:
        await self._conn.before("delete_task", container_id, container_id)
        task = self._conn.task(container_id)
        init = task.init
        if init.state in _LIVE:
            raise errors.FailedPrecondition(
                f"cannot delete a {init.state.value} process",
                container_id=container_id,
                process_id=container_id,
            )
        daemon, ns = self._conn.daemon, self._conn.ns
        if init.state is ProcessState.CREATED:
            # runc kills the waiting init on delete: its exit is published,
            # yet it (like the reply and TaskDelete) carries "never exited".
            status = init.status()
            daemon.exit(self._conn.name, task, init, _SIGKILL_EXIT, ZERO_TIME)
        else:
            status = init.status()
        del ns.tasks[container_id]
        for proc in task.processes():
            proc.deleted = proc.shim_gone = True
            proc.notify()
        daemon.event(
            self._conn.name,
            Topic.DELETE,
            container_id,
            pid=init.pid,
            exit_code=status.exit_code,
            exited_at=status.exited_at,
        )
        await self._conn.after("delete_task")
        return status

    async def delete_process(self, container_id: str, exec_id: str) -> ExitStatus:
        await self._conn.before("delete_process", container_id, exec_id)
        task, proc = self._conn.process(container_id, exec_id)
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
        await self._conn.after("delete_process")
        return proc.status()

    async def get_task(self, container_id: str, exec_id: str = "") -> TaskRecord:
        await self._conn.before("get_task", container_id, exec_id or container_id)
        task, proc = self._conn.process(container_id, exec_id)
        await self._conn.after("get_task")
        return task.record(proc)

    async def list_tasks(self) -> list[TaskRecord]:
        await self._conn.before("list_tasks")
        tasks = self._conn.ns.tasks
        records = [tasks[c].record(tasks[c].init) for c in sorted(tasks)]
        await self._conn.after("list_tasks")
        return records

    async def pause(self, container_id: str) -> None:
        await self._conn.before("pause", container_id)
        task = self._conn.task(container_id)
        state = task.init.state
        if state is not ProcessState.RUNNING:
            raise errors.FailedPrecondition(
                "cannot pause task in created state"
                if state is ProcessState.CREATED
                else f"cannot pause a {state.value} container",
                container_id=container_id,
            )
        task.init.state = ProcessState.PAUSED
        self._conn.daemon.event(self._conn.name, Topic.PAUSED, container_id)
        await self._conn.after("pause")

    async def resume(self, container_id: str) -> None:
        await self._conn.before("resume", container_id)
        task = self._conn.task(container_id)
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
        self._conn.daemon.event(self._conn.name, Topic.RESUMED, container_id)
        self._deliver_pending(task)
        await self._conn.after("resume")

    def _deliver_pending(self, task: _Task) -> None:
        # A thawed cgroup's processes take the signals they were sent frozen.
        pending, task.pending = task.pending, []
        for proc, signal in pending:
            if proc.state in _LIVE and (signal == _SIGKILL or signal not in proc.ignored):
                self._conn.daemon.exit(self._conn.name, task, proc, 128 + signal)

    async def update_resources(self, container_id: str, resources: Mapping[str, Any]) -> None:
        await self._conn.before("update_resources", container_id)
        task = self._conn.task(container_id)
        body = _json(resources, "LinuxResources", container_id)
        if task.init.state is ProcessState.STOPPED:
            raise errors.FailedPrecondition(
                "cannot update a stopped container", container_id=container_id
            )
        refusal = resources_refusal(body)
        if refusal is not None:
            raise errors.Unknown(f"{refusal}: unknown", container_id=container_id)
        task.resources = body
        await self._conn.after("update_resources")

    async def resize(self, container_id: str, exec_id: str, width: int, height: int) -> None:
        await self._conn.before("resize", container_id, exec_id or container_id)
        _, proc = self._conn.process(container_id, exec_id)
        if not proc.is_init and proc.state is ProcessState.STOPPED:
            raise errors.FailedPrecondition(
                "cannot resize a stopped container", container_id=container_id, process_id=exec_id
            )
        proc.size = (width, height)
        await self._conn.after("resize")

    async def close_stdin(self, container_id: str, exec_id: str) -> None:
        await self._conn.before("close_stdin", container_id, exec_id or container_id)
        _, proc = self._conn.process(container_id, exec_id)
        proc.stdin_closed = True
        await self._conn.after("close_stdin")
