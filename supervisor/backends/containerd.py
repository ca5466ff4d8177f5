"""containerd over gRPC (grpclib + betterproto2): the production :class:`Transport`.

This is the only module (with :mod:`.containerd_images`, :mod:`.health` and
the modules they use: :mod:`._channel`, :mod:`._grpc_errors`,
:mod:`._runtime_options`, :mod:`._decode`) that imports grpclib or the
generated bindings.  Everything leaving it is a :mod:`supervisor._types`
value or a :mod:`supervisor.errors` exception: :func:`map_grpc_errors` is
the one place where failures are translated, and every call goes through
:meth:`ContainerdTransport._call`, which also makes a failed call yield to
the event loop.
"""

from __future__ import annotations

import json
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from grpclib.client import Channel

from .. import errors
from .._proto.containerd.services.containers import v1 as pb_containers
from .._proto.containerd.services.events import v1 as pb_eventsvc
from .._proto.containerd.services.tasks import v1 as pb_tasks
from .._proto.containerd.services.version import v1 as pb_version
from .._proto.google.protobuf import Any as PbAny
from .._proto.google.protobuf import FieldMask
from .._types import (
    ContainerRecord,
    ExitStatus,
    ProcessInfo,
    StdioPaths,
    TaskRecord,
    Topic,
)
from ..stats._summary import ProcessSummary
from ._channel import NAMESPACE_HEADER, channel_address, open_channel
from ._decode import (
    SYNC_TYPE_URL,
    container_record,
    decode_event,
    decode_stats,
    exit_status,
    task_record,
)
from ._grpc_errors import map_grpc_errors
from ._label_filter import label_filter
from ._leftover import raise_if_leftover
from .base import EventStream

if TYPE_CHECKING:
    from ..oci._types import Mount
    from ..stats._model import Stats

__all__ = [
    "ContainerdTransport",
    "decode_event",
    "decode_stats",
    "map_grpc_errors",
    "open_channel",
]

SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
RESOURCES_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
SYNC_TOPIC = "/supervisor/sync"

_T = TypeVar("_T")


def _json_any(type_url: str, value: Mapping[str, Any]) -> PbAny:
    try:
        # NaN and the infinities are no JSON: containerd would store them and
        # the shim fail on them only when the task is created.
        data = json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError) as exc:
        raise errors.InvalidArgument(f"cannot encode {type_url.rsplit('/', 1)[-1]}: {exc}") from exc
    return PbAny(type_url=type_url, value=data)


class ContainerdTransport:
    """containerd's gRPC API for one namespace over one grpclib channel.

    Built by :meth:`open`; the caller owns it and must :meth:`aclose` it.
    """

    def __init__(
        self,
        channel: Channel,
        namespace: str,
        *,
        rpc_timeout: float | None,
        failure_yield: float = 0.001,
    ) -> None:
        self._channel = channel
        self._where = channel_address(channel)
        self._closed = False
        self._namespace = namespace
        self._failure_yield = failure_yield
        metadata = {NAMESPACE_HEADER: namespace}
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
        cls,
        address: str,
        namespace: str,
        *,
        rpc_timeout: float | None = 30.0,
        failure_yield: float = 0.001,
    ) -> ContainerdTransport:
        return cls(
            open_channel(address), namespace, rpc_timeout=rpc_timeout, failure_yield=failure_yield
        )

    @property
    def namespace(self) -> str:
        return self._namespace

    def bind(self, namespace: str) -> None:
        """Accept ``namespace`` if it is the one this transport was opened
        for: a ContainerdTransport is bound from the start, every call
        carrying its namespace.

        Raises:
            InvalidArgument: ``namespace`` is another one.
        """
        if namespace != self._namespace:
            raise errors.InvalidArgument(
                f"the transport is bound to namespace {self._namespace}, not {namespace}"
            )

    async def aclose(self) -> None:
        self._closed = True
        self._channel.close()

    def _check_open(self, container_id: str | None, process_id: str | None) -> None:
        # grpclib would reconnect a closed channel on its next call, opening
        # a connection nobody closes.
        if self._closed:
            raise errors.Unavailable(
                "the transport was closed", container_id=container_id, process_id=process_id
            )

    async def _call(
        self,
        rpc: Callable[[], Awaitable[_T]],
        container_id: str | None = None,
        process_id: str | None = None,
    ) -> _T:
        self._check_open(container_id, process_id)
        try:
            with map_grpc_errors(container_id, process_id, where=self._where):
                return await rpc()
        except errors.Unavailable:
            # A refused unix socket fails without ever suspending: a caller
            # retrying at once would starve every other task of the loop (the
            # embedded containerd's watchdog among them).
            await anyio.sleep(self._failure_yield)
            raise

    async def version(self) -> str:
        reply = await self._call(lambda: self._version.version())
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
        snapshotter: str = "",
        snapshot_key: str = "",
        image: str = "",
    ) -> None:
        # Loaded here: only creates need the shims' option messages.
        from ._runtime_options import container_runtime

        rt = container_runtime(runtime, runtime_options, spec, container_id=container_id)
        container = pb_containers.Container(
            id=container_id,
            labels=dict(labels),
            runtime=rt,
            spec=_json_any(SPEC_TYPE_URL, spec),
            snapshotter=snapshotter,
            snapshot_key=snapshot_key,
            image=image,
        )
        request = pb_containers.CreateContainerRequest(container=container)
        await self._call(lambda: self._containers.create(request), container_id)

    async def get_container(self, container_id: str) -> ContainerRecord:
        request = pb_containers.GetContainerRequest(id=container_id)
        reply = await self._call(lambda: self._containers.get(request), container_id)
        if reply.container is None:
            raise errors.NotFound("containerd returned no container", container_id=container_id)
        return container_record(reply.container)

    async def list_containers(
        self, labels: Mapping[str, str | None] | None = None
    ) -> list[ContainerRecord]:
        filters = [label_filter(labels)] if labels else []
        request = pb_containers.ListContainersRequest(filters=filters)
        reply = await self._call(lambda: self._containers.list(request))
        return [container_record(c) for c in reply.containers]

    async def update_container_labels(
        self, container_id: str, labels: Mapping[str, str | None]
    ) -> dict[str, str]:
        # A key in the mask whose value is absent (or empty) is removed:
        # containerd stores no empty label.
        container = pb_containers.Container(
            id=container_id, labels={k: v for k, v in labels.items() if v}
        )
        request = pb_containers.UpdateContainerRequest(
            container=container, update_mask=FieldMask(paths=[f"labels.{k}" for k in labels])
        )
        reply = await self._call(lambda: self._containers.update(request), container_id)
        if reply.container is None:
            raise errors.NotFound("containerd returned no container", container_id=container_id)
        return dict(reply.container.labels)

    async def delete_container(self, container_id: str) -> None:
        request = pb_containers.DeleteContainerRequest(id=container_id)
        await self._call(lambda: self._containers.delete(request), container_id)

    # -- tasks and processes -----------------------------------------------

    async def create_task(
        self, container_id: str, stdio: StdioPaths, *, rootfs: Sequence[Mount] = ()
    ) -> int:
        from ._task_request import create_task_request

        request = create_task_request(container_id, stdio, rootfs)
        create = self._tasks.create
        try:
            reply = await self._call(lambda: create(request), container_id, container_id)
        except errors.AlreadyExists as exc:
            await raise_if_leftover(exc, container_id, self._where, self.get_task)
            raise
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
        await self._call(lambda: self._tasks.exec(request), container_id, exec_id)

    async def start(self, container_id: str, exec_id: str) -> int:
        request = pb_tasks.StartRequest(container_id=container_id, exec_id=exec_id)
        reply = await self._call(
            lambda: self._tasks.start(request), container_id, exec_id or container_id
        )
        return int(reply.pid)

    async def kill(self, container_id: str, exec_id: str, signal: int, all: bool) -> None:
        request = pb_tasks.KillRequest(
            container_id=container_id, exec_id=exec_id, signal=signal, all=all
        )
        await self._call(lambda: self._tasks.kill(request), container_id, exec_id or container_id)

    async def wait(self, container_id: str, exec_id: str) -> ExitStatus:
        request = pb_tasks.WaitRequest(container_id=container_id, exec_id=exec_id)
        reply = await self._call(
            lambda: self._tasks_nodeadline.wait(request), container_id, exec_id or container_id
        )
        return exit_status(reply.exit_status, reply.exited_at)

    async def delete_task(self, container_id: str) -> ExitStatus:
        request = pb_tasks.DeleteTaskRequest(container_id=container_id)
        reply = await self._call(lambda: self._tasks.delete(request), container_id, container_id)
        return exit_status(reply.exit_status, reply.exited_at)

    async def delete_process(self, container_id: str, exec_id: str) -> ExitStatus:
        if not exec_id:
            # containerd 1.6 would take it as a delete of the init process
            # under its own task record (a created task's shim then stays).
            raise errors.InvalidArgument("deleting an exec needs its id", container_id=container_id)
        request = pb_tasks.DeleteProcessRequest(container_id=container_id, exec_id=exec_id)
        reply = await self._call(lambda: self._tasks.delete_process(request), container_id, exec_id)
        return exit_status(reply.exit_status, reply.exited_at)

    async def get_task(self, container_id: str, exec_id: str = "") -> TaskRecord:
        request = pb_tasks.GetRequest(container_id=container_id, exec_id=exec_id)
        reply = await self._call(
            lambda: self._tasks.get(request), container_id, exec_id or container_id
        )
        if reply.process is None:
            raise errors.NotFound(
                "containerd returned no process",
                container_id=container_id,
                process_id=exec_id or container_id,
            )
        return task_record(reply.process, container_id, exec_id)

    async def list_tasks(self) -> list[TaskRecord]:
        request = pb_tasks.ListTasksRequest()
        reply = await self._call(lambda: self._tasks.list(request))
        return [task_record(p) for p in reply.tasks]

    async def pause(self, container_id: str) -> None:
        request = pb_tasks.PauseTaskRequest(container_id=container_id)
        await self._call(lambda: self._tasks.pause(request), container_id)

    async def resume(self, container_id: str) -> None:
        request = pb_tasks.ResumeTaskRequest(container_id=container_id)
        await self._call(lambda: self._tasks.resume(request), container_id)

    async def process_summaries(self, container_id: str) -> list[ProcessSummary]:
        request = pb_tasks.ListPidsRequest(container_id=container_id)
        reply = await self._call(lambda: self._tasks.list_pids(request), container_id)
        from ._decode_windows import process_summary

        return [process_summary(p.pid, p.info) for p in reply.processes]

    async def pids(self, container_id: str) -> list[ProcessInfo]:
        request = pb_tasks.ListPidsRequest(container_id=container_id)
        reply = await self._call(lambda: self._tasks.list_pids(request), container_id)
        return [ProcessInfo(pid=p.pid) for p in reply.processes]

    async def stats(self, container_id: str) -> Stats:
        request = pb_tasks.MetricsRequest(filters=[f"id=={container_id}"])
        reply = await self._call(lambda: self._tasks.metrics(request), container_id)
        for metric in reply.metrics:
            if metric.id == container_id and metric.data is not None:
                with map_grpc_errors(container_id):
                    return decode_stats(metric.data, metric.timestamp)
        raise errors.NotFound("no metrics for the task", container_id=container_id)

    async def metrics(self, container_ids: Collection[str]) -> dict[str, Stats]:
        wanted = set(container_ids)
        if not wanted:
            return {}
        request = pb_tasks.MetricsRequest(filters=[f"id=={cid}" for cid in sorted(wanted)])
        reply = await self._call(lambda: self._tasks.metrics(request))
        samples: dict[str, Stats] = {}
        for metric in reply.metrics:
            if metric.id in wanted and metric.data is not None:
                with map_grpc_errors(metric.id):
                    samples[metric.id] = decode_stats(metric.data, metric.timestamp)
        return samples

    async def update_resources(self, container_id: str, resources: Mapping[str, Any]) -> None:
        request = pb_tasks.UpdateTaskRequest(
            container_id=container_id, resources=_json_any(RESOURCES_TYPE_URL, resources)
        )
        await self._call(lambda: self._tasks.update(request), container_id)

    async def resize(self, container_id: str, exec_id: str, width: int, height: int) -> None:
        request = pb_tasks.ResizePtyRequest(
            container_id=container_id, exec_id=exec_id, width=width, height=height
        )
        await self._call(
            lambda: self._tasks.resize_pty(request), container_id, exec_id or container_id
        )

    async def close_stdin(self, container_id: str, exec_id: str) -> None:
        request = pb_tasks.CloseIoRequest(container_id=container_id, exec_id=exec_id, stdin=True)
        await self._call(
            lambda: self._tasks.close_io(request), container_id, exec_id or container_id
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
        self._check_open(None, None)
        messages = self._events.subscribe(request)
        try:
            with map_grpc_errors(where=self._where):
                async for envelope in messages:
                    if envelope.namespace != ns:
                        continue
                    decoded = decode_event(envelope)
                    if decoded is not None:
                        yield decoded
        finally:
            # `async for` does not close what it iterates; leaving grpclib's
            # stream to the garbage collector would leak an HTTP/2 stream.
            with map_grpc_errors():
                await messages.aclose()

    async def sync(self, token: str) -> None:
        request = pb_eventsvc.PublishRequest(
            topic=SYNC_TOPIC, event=PbAny(type_url=SYNC_TYPE_URL, value=token.encode())
        )
        await self._call(lambda: self._events.publish(request))
