"""``supervisor exec``: a command in a running container, as ``docker exec``
runs it: with the container's own environment, working directory and user
unless ``-e``/``--env-file``/``-w``/``-u`` change them."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from .. import errors
from ._connection import open_client
from ._errors import CliError
from ._options import apply_process_options
from ._run import check_stdio, cleanup
from ._terminal import attach

__all__ = ["exec_", "exec_process"]


def exec_process(
    args: argparse.Namespace, container_spec: Mapping[str, Any]
) -> Sequence[str] | dict[str, Any]:
    """What to pass to ``Task.exec``: the bare args when nothing is changed
    (the library then inherits the container's process), else a copy of
    the container's process with the changes made."""
    changed = args.env or args.env_file or args.workdir is not None or args.user is not None
    if not changed:
        return list(args.command)
    base = container_spec.get("process")
    process: dict[str, Any] = json.loads(json.dumps(base if isinstance(base, Mapping) else {}))
    process["args"] = list(args.command)
    process.pop("consoleSize", None)
    process.setdefault("cwd", "/")
    # Names for -u are looked up only in a rootfs named on our own command
    # line (run's); here a numeric uid[:gid] (or root) is needed.
    apply_process_options(
        process,
        env=args.env,
        env_files=args.env_file,
        workdir=args.workdir,
        user=args.user,
        rootfs=None,
    )
    return process


async def exec_(args: argparse.Namespace) -> int:
    if not args.command:
        raise CliError("exec needs a command: supervisor exec CONTAINER [OPTIONS] -- CMD [ARG...]")
    check_stdio(args)
    async with open_client(args) as client:
        container = await client.load_container(args.container)
        try:
            task = await container.task()
        except errors.NotFound:
            raise CliError(f"container {args.container} is not running") from None
        process = exec_process(args, container.spec)
        proc = await task.exec(
            args.exec_id,
            process,
            stdin=args.interactive,
            terminal=args.tty,
            output="null" if args.detach else "pipe",
        )
        keep = False
        try:
            if args.detach:
                await proc.start()
                keep = True
                return 0
            raw_fd = 0 if args.tty and args.interactive and os.isatty(0) else None
            size_fd = next((fd for fd in (0, 1) if os.isatty(fd)), None) if args.tty else None
            status = await attach(
                proc, start=proc.start, stdin=args.interactive, raw_fd=raw_fd, size_fd=size_fd
            )
            return status.exit_code
        finally:
            if not keep:
                await cleanup(proc.delete(force=True), f"delete exec {proc.id}")
