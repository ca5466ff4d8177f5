"""containerd over gRPC (grpclib + betterproto2): the production :class:`Transport`.

This is the only module (with :mod:`.health`) that imports grpclib or the
generated bindings.  Everything leaving it is a :mod:`supervisor._types` value
or a :mod:`supervisor.errors` exception: ``map_grpc_errors`` is the one place
where grpclib's failures are translated.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Collection, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any

import grpclib.exceptions
from grpclib.client import Channel
from grpclib.const import Status

from .. import errors
from .._proto.containerd import events as pb_events
from .._proto.containerd.linux import runc as pb_runc_v1
from .._proto.containerd.runc import v1 as pb_runc
from .._proto.containerd.services.containers import v1 as pb_containers
from .._proto.containerd.services.events import v1 as pb_eventsvc
from .._proto.containerd.services.tasks import v1 as pb_tasks
from .._proto.containerd.services.version import v1 as pb_version
from .._proto.containerd.v1 import types as pb_types
from .._proto.google.protobuf import Any as PbAny
from .._proto.io.containerd.cgroups import v1 as pb_cg1
from .._proto.io.containerd.cgroups import v2 as pb_cg2
from .._types import (
    ContainerRecord,
    CpuStats,
    ExitStatus,
    MemoryStats,
    PidsStats,
    ProcessInfo,
    ProcessState,
    Stats,
    StdioPaths,
    TaskEvent,
    TaskRecord,
    Topic,
)
from .base import EventStream, Sync

__all__ = ["ContainerdTransport", "map_grpc_errors", "open_channel"]

NAMESPACE_HEADER = "containerd-namespace"
SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
RESOURCES_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
SYNC_TOPIC = "/supervisor/sync"
SYNC_TYPE_URL = "containerd-supervisor.Sync"

_STATUS_TO_ERROR: dict[Status, type[errors.SupervisorError]] = {
    Status.NOT_FOUND: errors.NotFound,
    Status.ALREADY_EXISTS: errors.AlreadyExists,
    Status.INVALID_ARGUMENT: errors.InvalidArgument,
    Status.OUT_OF_RANGE: errors.InvalidArgument,
    Status.FAILED_PRECONDITION: errors.FailedPrecondition,
    Status.ABORTED: errors.FailedPrecondition,
    Status.UNAVAILABLE: errors.Unavailable,
    Status.CANCELLED: errors.Cancelled,
    Status.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
}

_STATES = {
    pb_types.Status.UNKNOWN: ProcessState.UNKNOWN,
    pb_types.Status.CREATED: ProcessState.CREATED,
    pb_types.Status.RUNNING: ProcessState.RUNNING,
    pb_types.Status.STOPPED: ProcessState.STOPPED,
    pb_types.Status.PAUSED: ProcessState.PAUSED,
    pb_types.Status.PAUSING: ProcessState.PAUSING,
}

# containerd names event payloads by their bare proto name; the topic alone
# does not say which message the bytes are.
_EVENT_TYPES: dict[str, tuple[Topic, type[Any]]] = {
    "containerd.events.TaskCreate": (Topic.CREATE, pb_events.TaskCreate),
    "containerd.events.TaskStart": (Topic.START, pb_events.TaskStart),
    "containerd.events.TaskExit": (Topic.EXIT, pb_events.TaskExit),
    "containerd.events.TaskDelete": (Topic.DELETE, pb_events.TaskDelete),
    "containerd.events.TaskOOM": (Topic.OOM, pb_events.TaskOom),
    "containerd.events.TaskExecAdded": (Topic.EXEC_ADDED, pb_events.TaskExecAdded),
    "containerd.events.TaskExecStarted": (Topic.EXEC_STARTED, pb_events.TaskExecStarted),
    "containerd.events.TaskPaused": (Topic.PAUSED, pb_events.TaskPaused),
    "containerd.events.TaskResumed": (Topic.RESUMED, pb_events.TaskResumed),
}


# containerd 1.6 reports some state conflicts as UNKNOWN, with only the words
# to tell them apart.
_UNKNOWN_REFINED: tuple[tuple[str, type[errors.SupervisorError]], ...] = (
    ("cannot delete a running process", errors.FailedPrecondition),
    ("cannot delete running task", errors.FailedPrecondition),
    ("is not running", errors.FailedPrecondition),
    # pause/resume of a created task; pause/resume/update of a stopped one;
    # exec into a stopped task; a second start ("cannot ... stopped process")
    ("in created state", errors.FailedPrecondition),
    ("a stopped container", errors.FailedPrecondition),
    ("in a stopped state", errors.FailedPrecondition),
    ("a stopped process", errors.FailedPrecondition),
    ("process already finished", errors.NotFound),
)


@contextmanager
def map_grpc_errors(
    container_id: str | None = None, process_id: str | None = None
) -> Iterator[None]:
    """Translate grpclib and socket failures into :mod:`supervisor.errors`."""
    try:
        yield
    except grpclib.exceptions.GRPCError as exc:
        cls = _STATUS_TO_ERROR.get(exc.status, errors.Unknown)
        if cls is errors.Unknown and exc.message:
            for words, refined in _UNKNOWN_REFINED:
                if words in exc.message:
                    cls = refined
                    break
        raise cls(
            exc.message or exc.status.name, container_id=container_id, process_id=process_id
        ) from exc
    except (grpclib.exceptions.StreamTerminatedError, ConnectionError, OSError, EOFError) as exc:
        raise errors.Unavailable(
            f"containerd connection failed: {exc or type(exc).__name__}",
            container_id=container_id,
            process_id=process_id,
        ) from exc
    except TimeoutError as exc:
        raise errors.DeadlineExceeded(
            "containerd did not answer in time", container_id=container_id, process_id=process_id
        ) from exc


def open_channel(address: str) -> Channel:
    """A grpclib channel to containerd's socket (or named pipe on Windows).

    Nothing is connected yet: grpclib connects on the first call and again on
    the first call after the connection broke, which is what lets a client ride
    through a containerd restart.
    """
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        from ._named_pipe import NamedPipeChannel

        return NamedPipeChannel(address)
    return Channel(path=address)


def _json_any(type_url: str, value: Mapping[str, Any]) -> PbAny:
    return PbAny(type_url=type_url, value=json.dumps(value, separators=(",", ":")).encode())


def _runtime_options_any(runtime: str, options: Mapping[str, Any]) -> PbAny:
    # The shim decodes options by the bare proto name, as containerd's typeurl
    # registry writes it; betterproto's own Any.pack would add a googleapis prefix.
    if runtime == "io.containerd.runtime.v1.linux":
        return PbAny(
            type_url="containerd.linux.runc.RuncOptions",
            value=bytes(pb_runc_v1.RuncOptions(**options)),
        )
    return PbAny(type_url="containerd.runc.v1.Options", value=bytes(pb_runc.Options(**options)))


def _exit(code: int, at: datetime | None) -> ExitStatus:
    return ExitStatus(exit_code=code, exited_at=at)


def _task_record(p: pb_types.Process, container_id: str = "", exec_id: str = "") -> TaskRecord:
    # containerd 1.6 leaves container_id empty in List and puts the container
    # id in `id` (the exec id for an exec's Get): trust what the call asked for.
    state = _STATES.get(p.status, ProcessState.UNKNOWN)
    cid = container_id or p.container_id or p.id
    return TaskRecord(
        container_id=cid,
        process_id=exec_id or cid,
        pid=p.pid,
        state=state,
        stdio=StdioPaths(p.stdin, p.stdout, p.stderr, p.terminal),
        exit_status=_exit(p.exit_status, p.exited_at) if state is ProcessState.STOPPED else None,
    )


def _container_record(c: pb_containers.Container) -> ContainerRecord:
    spec: dict[str, Any] = {}
    if c.spec is not None and c.spec.value:
        spec = json.loads(c.spec.value)
    return ContainerRecord(
        id=c.id,
        spec=spec,
        runtime=c.runtime.name if c.runtime is not None else "",
        labels=dict(c.labels),
        created_at=c.created_at,
    )


def decode_stats(data: PbAny) -> Stats:
    """A cgroup v1 or v2 metrics payload as :class:`Stats`."""
    name = data.type_url.rsplit("/", 1)[-1]
    if name == "io.containerd.cgroups.v1.Metrics":
        m1 = pb_cg1.Metrics.parse(data.value)
        mem = m1.memory.usage if m1.memory is not None else None
        cpu = m1.cpu.usage if m1.cpu is not None else None
        thr = m1.cpu.throttling if m1.cpu is not None else None
        blk = m1.blkio.io_service_bytes_recursive if m1.blkio is not None else []
        return Stats(
            memory=MemoryStats(
                usage=mem.usage if mem else 0,
                limit=mem.limit if mem else 0,
                max_usage=mem.max if mem else 0,
                failcnt=mem.failcnt if mem else 0,
                cache=m1.memory.cache if m1.memory is not None else 0,
                rss=m1.memory.rss if m1.memory is not None else 0,
            ),
            cpu=CpuStats(
                total_usage=cpu.total if cpu else 0,
                kernel_usage=cpu.kernel if cpu else 0,
                user_usage=cpu.user if cpu else 0,
                per_cpu_usage=tuple(cpu.per_cpu) if cpu else (),
                throttled_periods=thr.throttled_periods if thr else 0,
                throttled_time=thr.throttled_time if thr else 0,
            ),
            pids=PidsStats(
                current=m1.pids.current if m1.pids else 0, limit=m1.pids.limit if m1.pids else 0
            ),
            cgroup_version=1,
            blkio_service_bytes=tuple((f"{e.major}:{e.minor}:{e.op}", e.value) for e in blk),
        )
    if name == "io.containerd.cgroups.v2.Metrics":
        m2 = pb_cg2.Metrics.parse(data.value)
        mem2 = m2.memory
        cpu2 = m2.cpu
        io = m2.io.usage if m2.io is not None else []
        return Stats(
            memory=MemoryStats(
                usage=mem2.usage if mem2 else 0,
                limit=mem2.usage_limit if mem2 else 0,
                failcnt=m2.memory_events.oom if m2.memory_events is not None else 0,
                cache=mem2.file if mem2 else 0,
                rss=mem2.anon if mem2 else 0,
            ),
            cpu=CpuStats(
                total_usage=cpu2.usage_usec * 1000 if cpu2 else 0,
                kernel_usage=cpu2.system_usec * 1000 if cpu2 else 0,
                user_usage=cpu2.user_usec * 1000 if cpu2 else 0,
                throttled_periods=cpu2.nr_throttled if cpu2 else 0,
                throttled_time=cpu2.throttled_usec * 1000 if cpu2 else 0,
            ),
            pids=PidsStats(
                current=m2.pids.current if m2.pids else 0, limit=m2.pids.limit if m2.pids else 0
            ),
            cgroup_version=2,
            blkio_service_bytes=tuple(
                item
                for e in io
                for item in (
                    (f"{e.major}:{e.minor}:Read", e.rbytes),
                    (f"{e.major}:{e.minor}:Write", e.wbytes),
                )
            ),
        )
    raise errors.Unknown(f"unexpected metrics type {data.type_url!r}")


def decode_event(envelope: pb_eventsvc.Envelope) -> TaskEvent | Sync | None:
    """One envelope off the stream; ``None`` for types this library ignores."""
    event = envelope.event
    if event is None:
        return None
    if event.type_url == SYNC_TYPE_URL:
        return Sync(event.value.decode())
    known = _EVENT_TYPES.get(event.type_url)
    if known is None:
        return None
    topic, cls = known
    msg = cls.parse(event.value)
    cid: str = msg.container_id
    if topic is Topic.EXIT:
        return TaskEvent(
            envelope.namespace,
            topic,
            cid,
            msg.id or cid,
            msg.pid,
            msg.exit_status,
            msg.exited_at,
            envelope.timestamp,
        )
    if topic is Topic.DELETE:
        return TaskEvent(
            envelope.namespace,
            topic,
            cid,
            msg.id or cid,
            msg.pid,
            msg.exit_status,
            msg.exited_at,
            envelope.timestamp,
        )
    if topic in (Topic.EXEC_ADDED, Topic.EXEC_STARTED):
        return TaskEvent(
            envelope.namespace,
            topic,
            cid,
            msg.exec_id,
            getattr(msg, "pid", 0),
            timestamp=envelope.timestamp,
        )
    return TaskEvent(
        envelope.namespace, topic, cid, cid, getattr(msg, "pid", 0), timestamp=envelope.timestamp
    )


class ContainerdTransport:
    """containerd's gRPC API for one namespace over one grpclib channel.

    Built by :meth:`open`; the caller owns it and must :meth:`aclose` it.
    """

    def __init__(self, channel: Channel, namespace: str, *, rpc_timeout: float | None) -> None:
        self._channel = channel
        self._namespace = namespace
        metadata = {NAMESPACE_HEADER: namespace}
        self._metadata = metadata
        self._containers = pb_containers.ContainersStub(
            channel, metadata=metadata, timeout=rpc_timeout
        )
        self._tasks = pb_tasks.TasksStub(channel, metadata=metadata, timeout=rpc_timeout)
        # Wait blocks until the process exits: it must not inherit a deadline.
        self._tasks_nodeadline = pb_tasks.TasksStub(channel, metadata=metadata)
        self._events = pb_eventsvc.EventsStub(channel, metadata=metadata)
        self._version = pb_version.VersionStub(channel, timeout=rpc_timeout)

    @classmethod
    def open(
        cls, address: str, namespace: str, *, rpc_timeout: float | None = 30.0
    ) -> ContainerdTransport:
        return cls(open_channel(address), namespace, rpc_timeout=rpc_timeout)

    @property
    def namespace(self) -> str:
        return self._namespace

    async def aclose(self) -> None:
        self._channel.close()

    async def version(self) -> str:
        with map_grpc_errors():
            reply = await self._version.version()
        return str(reply.version)

    # -- containers ---------------------------------------------------------

    async def create_container(
        self,
        container_id: str,
        spec: Mapping[str, Any],
        *,
        runtime: str,
        runtime_options: Mapping[str, Any] | None,
        labels: Mapping[str, str],
    ) -> None:
        rt = pb_containers.ContainerRuntime(name=runtime)
        if runtime_options is not None:
            try:
                rt.options = _runtime_options_any(runtime, runtime_options)
            except (TypeError, ValueError) as exc:
                raise errors.InvalidArgument(
                    f"bad runtime options: {exc}", container_id=container_id
                ) from exc
        container = pb_containers.Container(
            id=container_id,
            labels=dict(labels),
            runtime=rt,
            spec=_json_any(SPEC_TYPE_URL, spec),
        )
        with map_grpc_errors(container_id):
            await self._containers.create(pb_containers.CreateContainerRequest(container=container))

    async def get_container(self, container_id: str) -> ContainerRecord:
        with map_grpc_errors(container_id):
            reply = await self._containers.get(pb_containers.GetContainerRequest(id=container_id))
        assert reply.container is not None
        return _container_record(reply.container)

    async def list_containers(self) -> list[ContainerRecord]:
        with map_grpc_errors():
            reply = await self._containers.list(pb_containers.ListContainersRequest())
        return [_container_record(c) for c in reply.containers]

    async def delete_container(self, container_id: str) -> None:
        with map_grpc_errors(container_id):
            await self._containers.delete(pb_containers.DeleteContainerRequest(id=container_id))

    # -- tasks and processes -----------------------------------------------

    async def create_task(self, container_id: str, stdio: StdioPaths) -> int:
        request = pb_tasks.CreateTaskRequest(
            container_id=container_id,
            stdin=stdio.stdin,
            stdout=stdio.stdout,
            stderr=stdio.stderr,
            terminal=stdio.terminal,
        )
        with map_grpc_errors(container_id, container_id):
            reply = await self._tasks.create(request)
        return int(reply.pid)

    async def exec(
        self, container_id: str, exec_id: str, spec: Mapping[str, Any], stdio: StdioPaths
    ) -> None:
        request = pb_tasks.ExecProcessRequest(
            container_id=container_id,
            exec_id=exec_id,
            stdin=stdio.stdin,
            stdout=stdio.stdout,
            stderr=stdio.stderr,
            terminal=stdio.terminal,
            spec=_json_any(PROCESS_TYPE_URL, spec),
        )
        with map_grpc_errors(container_id, exec_id):
            await self._tasks.exec(request)

    async def start(self, container_id: str, exec_id: str) -> int:
        with map_grpc_errors(container_id, exec_id or container_id):
            reply = await self._tasks.start(
                pb_tasks.StartRequest(container_id=container_id, exec_id=exec_id)
            )
        return int(reply.pid)

    async def kill(self, container_id: str, exec_id: str, signal: int, all: bool) -> None:
        with map_grpc_errors(container_id, exec_id or container_id):
            await self._tasks.kill(
                pb_tasks.KillRequest(
                    container_id=container_id, exec_id=exec_id, signal=signal, all=all
                )
            )

    async def wait(self, container_id: str, exec_id: str) -> ExitStatus:
        with map_grpc_errors(container_id, exec_id or container_id):
            reply = await self._tasks_nodeadline.wait(
                pb_tasks.WaitRequest(container_id=container_id, exec_id=exec_id)
            )
        return _exit(reply.exit_status, reply.exited_at)

    async def delete_task(self, container_id: str) -> ExitStatus:
        with map_grpc_errors(container_id, container_id):
            reply = await self._tasks.delete(pb_tasks.DeleteTaskRequest(container_id=container_id))
        return _exit(reply.exit_status, reply.exited_at)

    async def delete_process(self, container_id: str, exec_id: str) -> ExitStatus:
        with map_grpc_errors(container_id, exec_id):
            reply = await self._tasks.delete_process(
                pb_tasks.DeleteProcessRequest(container_id=container_id, exec_id=exec_id)
            )
        return _exit(reply.exit_status, reply.exited_at)

    async def get_task(self, container_id: str, exec_id: str = "") -> TaskRecord:
        with map_grpc_errors(container_id, exec_id or container_id):
            reply = await self._tasks.get(
                pb_tasks.GetRequest(container_id=container_id, exec_id=exec_id)
            )
        assert reply.process is not None
        record = _task_record(reply.process)
        if exec_id and record.process_id != exec_id:
            # containerd 1.6 fills `id` with the exec id, but be explicit.
            record = TaskRecord(
                container_id, exec_id, record.pid, record.state, record.stdio, record.exit_status
            )
        return record

    async def list_tasks(self) -> list[TaskRecord]:
        with map_grpc_errors():
            reply = await self._tasks.list(pb_tasks.ListTasksRequest())
        return [_task_record(p) for p in reply.tasks]

    async def pause(self, container_id: str) -> None:
        with map_grpc_errors(container_id):
            await self._tasks.pause(pb_tasks.PauseTaskRequest(container_id=container_id))

    async def resume(self, container_id: str) -> None:
        with map_grpc_errors(container_id):
            await self._tasks.resume(pb_tasks.ResumeTaskRequest(container_id=container_id))

    async def pids(self, container_id: str) -> list[ProcessInfo]:
        with map_grpc_errors(container_id):
            reply = await self._tasks.list_pids(pb_tasks.ListPidsRequest(container_id=container_id))
        return [ProcessInfo(pid=p.pid) for p in reply.processes]

    async def stats(self, container_id: str) -> Stats:
        with map_grpc_errors(container_id):
            reply = await self._tasks.metrics(
                pb_tasks.MetricsRequest(filters=[f"id=={container_id}"])
            )
        for metric in reply.metrics:
            if metric.id == container_id and metric.data is not None:
                stats = decode_stats(metric.data)
                if metric.timestamp is not None:
                    stats = Stats(
                        stats.memory,
                        stats.cpu,
                        stats.pids,
                        metric.timestamp,
                        stats.cgroup_version,
                        stats.blkio_service_bytes,
                    )
                return stats
        raise errors.NotFound("no metrics for the task", container_id=container_id)

    async def update_resources(self, container_id: str, resources: Mapping[str, Any]) -> None:
        with map_grpc_errors(container_id):
            await self._tasks.update(
                pb_tasks.UpdateTaskRequest(
                    container_id=container_id, resources=_json_any(RESOURCES_TYPE_URL, resources)
                )
            )

    async def resize(self, container_id: str, exec_id: str, width: int, height: int) -> None:
        with map_grpc_errors(container_id, exec_id or container_id):
            await self._tasks.resize_pty(
                pb_tasks.ResizePtyRequest(
                    container_id=container_id, exec_id=exec_id, width=width, height=height
                )
            )

    async def close_stdin(self, container_id: str, exec_id: str) -> None:
        with map_grpc_errors(container_id, exec_id or container_id):
            await self._tasks.close_io(
                pb_tasks.CloseIoRequest(container_id=container_id, exec_id=exec_id, stdin=True)
            )

    # -- events ---------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(
        self, topics: Collection[Topic] | None = None
    ) -> AsyncIterator[EventStream]:
        ns = self._namespace
        # containerd delivers every namespace's events unless filtered; filters
        # in one request are OR-ed, the comma inside one is an AND.
        if topics is None:
            wanted = [f'namespace=="{ns}",topic~="^/tasks/"']
        else:
            wanted = [f'namespace=="{ns}",topic=="{t.value}"' for t in topics]
        request = pb_eventsvc.SubscribeRequest(
            filters=[*wanted, f'namespace=="{ns}",topic=="{SYNC_TOPIC}"']
        )
        stream = self._decoded(request)
        try:
            yield stream
        finally:
            await stream.aclose()

    async def _decoded(self, request: pb_eventsvc.SubscribeRequest) -> EventStream:
        ns = self._namespace
        messages = self._events.subscribe(request)
        try:
            with map_grpc_errors():
                async for envelope in messages:
                    if envelope.namespace != ns:
                        continue
                    decoded = decode_event(envelope)
                    if decoded is not None:
                        yield decoded
        finally:
            # `async for` does not close what it iterates; leaving grpclib's
            # stream to the garbage collector would leak an HTTP/2 stream.
            await messages.aclose()

    async def sync(self, token: str) -> None:
        with map_grpc_errors():
            await self._events.publish(
                pb_eventsvc.PublishRequest(
                    topic=SYNC_TOPIC, event=PbAny(type_url=SYNC_TYPE_URL, value=token.encode())
                )
            )
