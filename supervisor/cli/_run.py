"""``supervisor run``: a new container from a root filesystem directory, its
command in the foreground (or detached with ``-d``); the exit code is the
container's."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from typing import Any

import anyio

from .. import default_spec, errors
from .._types import DEFAULT_RUNTIME
from ..domain._task import Task
from ._connection import open_client
from ._errors import CliError
from ._logfile import check_log_path, forget_log_path, record_log_path
from ._network import network_options
from ._options import (
    LOG_PATH_LABEL,
    bind_mounts,
    container_path,
    environment,
    user_ids,
)
from ._supervision import check_restart
from ._terminal import attach

__all__ = ["build_spec", "check_stdio", "cleanup", "foreground", "run"]

_CLEANUP = 10.0


def check_stdio(args: argparse.Namespace) -> None:
    """What docker refuses before anything is made."""
    if args.tty and args.interactive and not os.isatty(0):
        raise CliError("the input device is not a TTY")
    if args.detach and (args.interactive or args.tty):
        raise CliError("-d cannot be combined with -i or -t: nothing stays to attach to it")


def build_spec(args: argparse.Namespace, container_id: str) -> dict[str, Any]:
    """The OCI spec run's flags describe (the library's own builder: the
    flags are checked here only where their syntax is the command's)."""
    user = None
    if args.user is not None:
        user = "{}:{}".format(*user_ids(args.user, args.rootfs))
    spec = default_spec(
        args.command,
        args.rootfs,
        terminal=args.tty,
        hostname=args.hostname or container_id[:63],
        read_only=not args.writable,
        env=environment([], args.env_file, args.env),
        cwd=container_path(args.workdir, "-w") if args.workdir is not None else "/",
        user=user,
        mounts=bind_mounts(args.volume, args.mount),
        memory=args.memory,
        cpus=args.cpus,
        pids_limit=args.pids_limit,
    )
    if args.network == "host":
        linux = spec["linux"]
        linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
    return spec


def _check(args: argparse.Namespace) -> str | None:
    if not args.command:
        raise CliError(
            "run needs a command: supervisor run --rootfs DIR [OPTIONS] -- CMD [ARG...]"
            " (or supervisor run [OPTIONS] IMAGE [CMD...])"
        )
    if args.rootfs is not None and not os.path.isdir(args.rootfs):
        raise CliError(f"--rootfs {args.rootfs}: no such directory")
    check_stdio(args)
    if args.detach and args.rm:
        raise CliError("--rm cannot be combined with -d: nothing stays to remove it when it exits")
    check_restart(args)
    if args.log_path is None:
        return None
    if args.interactive:
        raise CliError("-i cannot be combined with --log-path: the output goes to the file")
    return check_log_path(args.log_path)


async def foreground(task: Task, *, interactive: bool, tty: bool, log_path: str | None) -> int:
    """Start ``task`` joined to our terminal and stdio (or following its log
    file), wait for its exit; its exit code."""
    raw_fd = 0 if tty and interactive and os.isatty(0) else None
    size_fd = next((fd for fd in (0, 1) if os.isatty(fd)), None) if tty else None
    if log_path is None:
        status = await attach(
            task, start=task.start, stdin=interactive, raw_fd=raw_fd, size_fd=size_fd
        )
    else:
        # The logger writes the file; show this run's lines as they come (the
        # task's wait() returns once the logger has written them all).
        from ._logs import show_log_while

        status = await show_log_while(
            task,
            lambda: attach(
                task, start=task.start, stdin=False, raw_fd=None, size_fd=size_fd, outputs=False
            ),
        )
    if status.oom_killed:
        print(f"supervisor: {task.container.id} was killed for lack of memory", file=sys.stderr)
    return status.exit_code


async def cleanup(action: Any, what: str) -> None:
    """Await a clean-up step, shielded and bounded; a failure is reported
    and does not replace the container's exit code."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP) as scope:
        try:
            await action
        except errors.NotFound:
            pass
        except errors.SupervisorError as exc:
            print(f"supervisor: could not {what}: {exc}", file=sys.stderr)
    if scope.cancelled_caught:
        print(f"supervisor: could not {what} within {_CLEANUP:g}s", file=sys.stderr)


async def run(args: argparse.Namespace) -> int:
    log_path = _check(args)
    cid = args.id or f"run-{secrets.token_hex(6)}"
    spec = build_spec(args, cid) if args.rootfs is not None else None
    labels = {LOG_PATH_LABEL: log_path} if log_path is not None else None
    # Without events there is no OOM report; a detached run waits for nothing.
    async with open_client(args, events=not args.detach) as client:
        if spec is None:
            from ._images import new_image_container

            container = await new_image_container(client, args, cid, labels)
        else:
            container = await client.new_container(
                cid, spec, runtime=args.runtime or DEFAULT_RUNTIME, labels=labels,
                **network_options(args), restart=args.restart,
            )  # fmt: skip
        if log_path is not None:
            # Where `logs` and `start` find it again: our state dir, not the
            # label (which any client of containerd could rewrite).
            record_log_path(args, cid, log_path)
        try:
            # A logger that the shim runs appends to --log-path (the command
            # does not stay to copy it); with -d and no log file the output
            # is dropped (nobody stays to read a pipe).
            task = await container.new_task(
                stdin=args.interactive,
                terminal=args.tty,
                log_path=log_path,
                output="null" if args.detach else "pipe",
                log_writer="logger" if log_path is not None else "client",
                log_format="cri" if log_path is not None else "raw",
            )
            keep = False
            try:
                if args.detach:
                    await task.start()
                    keep = True
                    print(cid, flush=True)
                    return 0
                return await foreground(
                    task, interactive=args.interactive, tty=args.tty, log_path=log_path
                )
            finally:
                if not keep:
                    await cleanup(task.delete(force=True), f"delete the task of {cid}")
        finally:
            if args.rm:
                await cleanup(container.delete(), f"remove container {cid}")
                forget_log_path(args, cid)
