"""``checkpoint create|ls|rm`` and ``start --checkpoint``: docker's checkpoint
verbs over :meth:`Task.checkpoint` and the client's checkpoint calls
(docs/checkpoint.md)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from .. import errors
from .._types import ProcessState
from ._connection import open_client
from ._each import each_named
from ._errors import CliError
from ._format import rfc3339, table

if TYPE_CHECKING:
    from ..client._client import Client

__all__ = ["checkpoint", "start"]

_LIVE = (ProcessState.RUNNING, ProcessState.PAUSED, ProcessState.PAUSING)


async def checkpoint(args: argparse.Namespace) -> int:
    if args.verb == "create":
        return await _create(args)
    if args.verb == "ls":
        return await _ls(args)
    return await _rm(args)


async def _create(args: argparse.Namespace) -> int:
    async with open_client(args, events=True) as client:
        container = await client.load_container(args.container)
        try:
            task = await container.task(attach=False)
        except errors.NotFound:
            raise CliError(f"container {container.id} is not running") from None
        await task.checkpoint(args.name, exit=not args.leave_running, rw=args.rw)
        if not args.leave_running:
            # As docker's: the container is stopped, ready for start --checkpoint.
            await task.wait()
            await task.delete()
    print(args.name)
    return 0


async def _ls(args: argparse.Namespace) -> int:
    async with open_client(args, observe=True) as client:
        found = await client.checkpoints()
    if args.format == "json" or args.json:
        for c in found:
            record = {
                "name": c.name,
                "container": c.container_id,
                "digest": c.digest,
                "exited": c.exited,
                "created": rfc3339(c.created_at),
            }
            print(json.dumps(record))
        return 0
    rows = [(c.name, c.container_id, rfc3339(c.created_at) or "") for c in found]
    print(table(["CHECKPOINT NAME", "CONTAINER", "CREATED"], rows))
    return 0


async def _rm(args: argparse.Namespace) -> int:
    async def one(client: Client, name: str) -> str:
        await client.remove_checkpoint(name)
        return name

    return await each_named(args, args.names, one, observe=True)


async def start(args: argparse.Namespace) -> int:
    """``start``; with ``--checkpoint NAME``, the container's processes
    restored from it, detached (their output in the recorded log file)."""
    from ._lifecycle import _recorded_log_path
    from ._lifecycle import start as plain_start

    if args.checkpoint is None:
        return await plain_start(args)
    if args.attach or args.interactive:
        raise CliError("start --checkpoint restores in the background: -a and -i cannot be used")
    if len(args.containers) != 1:
        raise CliError("start --checkpoint takes one container")
    cid = args.containers[0]
    async with open_client(args, observe=True) as client:
        container = await client.load_container(cid)
        try:
            old = await container.task(attach=False)
        except errors.NotFound:
            old = None
        if old is not None:
            if await old.status() in _LIVE:
                raise CliError(f"container {cid} is running already")
            await old.delete(force=True)
        # Its output goes where start's would: the recorded log file, else nowhere.
        log_path = _recorded_log_path(args, container)
        await client.restore_checkpoint(
            args.checkpoint, cid, output="null", log_path=log_path,
            log_writer="logger" if log_path is not None else "client",
            log_format="cri" if log_path is not None else "raw",
        )  # fmt: skip
    print(cid)
    return 0
