"""``supervisor ps``: the containers of a namespace and what their tasks do.

Straight over the transport, in two calls (containers, tasks): a listing
needs none of the client objects, and a command people run in loops should
not pay for loading them.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import anyio

from .. import errors
from .._types import ContainerRecord, ProcessState, TaskRecord
from ._format import command_line, rfc3339, spec_args, table
from ._timeouts import cli_timeouts

__all__ = ["ps"]

def _status(task: TaskRecord | None) -> str:
    if task is None:
        return "stopped"  # no task: created, or stopped and its task deleted
    if task.state is ProcessState.STOPPED:
        code = task.exit_status.exit_code if task.exit_status is not None else None
        return "exited" if code is None else f"exited ({code})"
    return str(task.state.value)


def _pid(task: TaskRecord | None) -> int | None:
    if task is None or task.state is ProcessState.STOPPED:
        return None
    return task.pid or None


def _record(c: ContainerRecord, task: TaskRecord | None) -> dict[str, Any]:
    stopped = task is not None and task.state is ProcessState.STOPPED
    status = task.exit_status if stopped and task is not None else None
    return {
        "id": c.id,
        "status": task.state.value if task is not None else "stopped",
        "pid": _pid(task),
        "exit_code": status.exit_code if status is not None else None,
        "exited_at": rfc3339(status.exited_at if status is not None else None),
        "command": spec_args(c.spec),
        "runtime": c.runtime,
        "labels": c.labels,
    }


async def ps(args: argparse.Namespace) -> int:
    from ..backends.containerd import ContainerdTransport

    timeouts = cli_timeouts(args)
    transport = ContainerdTransport.open(args.address, args.namespace, rpc_timeout=timeouts.rpc)
    try:
        with anyio.fail_after(timeouts.connect):
            containers = await transport.list_containers()
            tasks = {t.container_id: t for t in await transport.list_tasks()}
    except TimeoutError:
        raise errors.Unavailable(
            f"containerd at {args.address} did not answer within {args.timeout}s; "
            "is it running?"
        ) from None
    finally:
        await transport.aclose()
    containers.sort(key=lambda c: c.id)
    if args.quiet:
        for c in containers:
            print(c.id)
    elif args.format == "json":
        for c in containers:
            print(json.dumps(_record(c, tasks.get(c.id))))
    else:
        rows = [
            (
                c.id,
                _status(tasks.get(c.id)),
                _pid(tasks.get(c.id)),
                command_line(spec_args(c.spec), 40),
                c.runtime,
            )
            for c in containers
        ]
        print(table(("CONTAINER", "STATUS", "PID", "COMMAND", "RUNTIME"), rows))
    return 0
