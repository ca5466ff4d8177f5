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
from ._format import command_line, rfc3339, table

__all__ = ["ps"]

# Each call's own deadline is never shorter than the library's default, as
# for every other subcommand: --timeout is about reaching containerd.
_MIN_RPC = 30.0


def _args(record: ContainerRecord) -> list[str]:
    process = record.spec.get("process")
    args = process.get("args") if isinstance(process, dict) else None
    return [str(a) for a in args] if isinstance(args, list) else []


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
        "command": _args(c),
        "runtime": c.runtime,
        "labels": c.labels,
    }


async def ps(args: argparse.Namespace) -> int:
    from ..backends.containerd import ContainerdTransport

    transport = ContainerdTransport.open(
        args.address, args.namespace, rpc_timeout=max(args.timeout, _MIN_RPC)
    )
    try:
        with anyio.fail_after(args.timeout):
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
                command_line(_args(c), 40),
                c.runtime,
            )
            for c in containers
        ]
        print(table(("CONTAINER", "STATUS", "PID", "COMMAND", "RUNTIME"), rows))
    return 0
