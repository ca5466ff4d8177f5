"""``supervisor ps``: the containers of a namespace and what their tasks do.

Two calls (containers, tasks) and nothing of the client objects: a command
people run in loops should not pay for loading what it does not use. On a
unix socket the calls go through :mod:`supervisor.backends.blocking`, without
an event loop, grpclib or the generated bindings; a named pipe (Windows) goes
through the transport.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .. import _platform, errors
from .._types import ContainerRecord, ProcessState, TaskRecord
from ._format import command_line, rfc3339, spec_args, table
from ._network import ports_of
from ._supervision import ps_columns, supervision_json
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
        "ports": [p for p in ports_of(c.labels).split(", ") if p],
    }


def ps(args: argparse.Namespace) -> int:
    if _platform.IS_WINDOWS:  # pragma: no cover - exercised on Windows only
        import anyio

        containers, tasks = anyio.run(_listing_over_transport, args)
    else:
        containers, tasks = _listing(args)
    _show(args, containers, {t.container_id: t for t in tasks})
    return 0


def _with_supervision(args: argparse.Namespace, c: ContainerRecord) -> Any:
    # Read only for containers labelled with a policy, or with a record.
    from ._supervision import supervision_of

    return supervision_of(args, c.id)


def _listing(args: argparse.Namespace) -> tuple[list[ContainerRecord], list[TaskRecord]]:
    from ..backends.blocking import Channel, list_containers, list_tasks

    try:
        with Channel(args.address, args.namespace, timeout=args.timeout) as channel:
            return list_containers(channel), list_tasks(channel)
    except errors.DeadlineExceeded:
        raise _no_answer(args) from None


async def _listing_over_transport(
    args: argparse.Namespace,
) -> tuple[list[ContainerRecord], list[TaskRecord]]:
    import anyio

    from ..backends.containerd import ContainerdTransport

    timeouts = cli_timeouts(args)
    transport = ContainerdTransport.open(args.address, args.namespace, rpc_timeout=timeouts.rpc)
    try:
        with anyio.fail_after(timeouts.connect):
            return await transport.list_containers(), await transport.list_tasks()
    except TimeoutError:
        raise _no_answer(args) from None
    finally:
        await transport.aclose()


def _no_answer(args: argparse.Namespace) -> errors.Unavailable:
    return errors.Unavailable(
        f"containerd at {args.address} did not answer within {args.timeout}s; is it running?"
    )


def _show(
    args: argparse.Namespace, containers: list[ContainerRecord], tasks: dict[str, TaskRecord]
) -> None:
    containers.sort(key=lambda c: c.id)
    if args.quiet:
        for c in containers:
            print(c.id)
    elif args.format == "json":
        for c in containers:
            sup = supervision_json(_with_supervision(args, c))
            print(json.dumps({**_record(c, tasks.get(c.id)), "supervision": sup}))
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
        header: tuple[str, ...] = ("CONTAINER", "STATUS", "PID", "COMMAND", "RUNTIME")
        shown: list[tuple[object, ...]] = list(rows)
        if any(ports_of(c.labels) for c in containers):
            # A column of its own only when something is published.
            header += ("PORTS",)
            shown = [(*row, ports_of(c.labels)) for row, c in zip(rows, containers, strict=True)]
        records = [_with_supervision(args, c) for c in containers]
        if any(r is not None for r in records):
            header += ("RESTARTS", "HEALTH")
            shown = [(*row, *ps_columns(r)) for row, r in zip(shown, records, strict=True)]
        print(table(header, shown))
