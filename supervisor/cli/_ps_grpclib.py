"""``supervisor ps``'s two List calls through grpclib, loading as little as it can.

A measuring prototype, not wired into the command: :func:`listing` returns
what :func:`supervisor.cli._ps._listing` returns, so the two ways to
containerd can be timed as whole commands side by side
(:mod:`benchmarks.ps_paths`). Nothing is imported until :func:`listing`
runs, and then only asyncio, grpclib and the generated modules of the
containers and tasks services (with what they import themselves): no anyio,
no :class:`~supervisor.backends.containerd.ContainerdTransport` (which loads
the events, version and image bindings), one bare event loop.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .. import errors
from ._timeouts import cli_timeouts

if TYPE_CHECKING:
    from .._proto.containerd.services.containers import v1 as pb_containers
    from .._proto.containerd.services.tasks import v1 as pb_tasks
    from .._types import ContainerRecord, TaskRecord

__all__ = ["listing"]

_NAMESPACE_HEADER = "containerd-namespace"


def listing(args: argparse.Namespace) -> tuple[list[ContainerRecord], list[TaskRecord]]:
    """The namespace's containers and tasks, as ``_ps._listing`` gives them."""
    import asyncio

    # The loop's own set-up and tear-down only: asyncio.run would also wait
    # on a default executor and async generators this never creates.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_listing(args))
    finally:
        loop.close()


async def _listing(
    args: argparse.Namespace,
) -> tuple[list[ContainerRecord], list[TaskRecord]]:
    import asyncio

    import grpclib.exceptions
    from grpclib.client import Channel

    from .._proto.containerd.services.containers import v1 as pb_containers
    from .._proto.containerd.services.tasks import v1 as pb_tasks
    from ..backends._status import error_for

    timeouts = cli_timeouts(args)
    metadata = {_NAMESPACE_HEADER: args.namespace}
    channel = Channel(path=args.address)
    containers = pb_containers.ContainersStub(channel, metadata=metadata, timeout=timeouts.rpc)
    tasks = pb_tasks.TasksStub(channel, metadata=metadata, timeout=timeouts.rpc)
    try:
        async with asyncio.timeout(timeouts.connect):
            listed = await containers.list(pb_containers.ListContainersRequest())
            running = await tasks.list(pb_tasks.ListTasksRequest())
    except grpclib.exceptions.GRPCError as exc:
        raise error_for(exc.status.value, exc.message or "")(
            exc.message or exc.status.name
        ) from None
    except TimeoutError:
        raise errors.Unavailable(
            f"containerd at {args.address} did not answer within {args.timeout}s; is it running?"
        ) from None
    except (grpclib.exceptions.StreamTerminatedError, OSError) as exc:
        raise errors.Unavailable(f"cannot reach containerd at {args.address}: {exc}") from None
    finally:
        channel.close()
    return _records_of(listed, running)


def _records_of(
    listed: pb_containers.ListContainersResponse, running: pb_tasks.ListTasksResponse
) -> tuple[list[ContainerRecord], list[TaskRecord]]:
    """The two List replies as the library's records."""
    from .._types import StdioPaths
    from ..backends import _records

    return (
        [
            _records.container_record(
                id=c.id,
                spec=c.spec.value if c.spec is not None else b"",
                runtime=c.runtime.name if c.runtime is not None else "",
                labels=c.labels,
                created_at=c.created_at,
                snapshotter=c.snapshotter,
                snapshot_key=c.snapshot_key,
            )
            for c in listed.containers
        ],
        [
            _records.task_record(
                container_id=p.container_id,
                id=p.id,
                pid=p.pid,
                status=int(p.status),
                stdio=StdioPaths(p.stdin, p.stdout, p.stderr, p.terminal),
                exit_code=p.exit_status,
                exited_at=p.exited_at,
            )
            for p in running.tasks
        ],
    )
