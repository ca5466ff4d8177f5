"""``logs``: a container's log file read back through the library
(:meth:`Container.logs`), stdout lines on stdout and stderr lines on
stderr, as ``docker logs`` prints them; and the log shown while ``run`` or
``start -a`` waits for a container whose output goes to a file.

Files written by an older ``run --log-path`` (raw bytes, no times) are
still printed whole; ``--since``, ``--until``, ``--tail`` and ``-t`` need the
times and streams of the CRI format that ``run --log-path`` now writes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

from .. import errors
from ..domain._logs import container_log, task_log
from ..fifo._log_read import LogLine, check_log_query
from ._connection import open_client
from ._errors import CliError
from ._logfile import follow, open_log, print_available, recorded_log_path
from ._terminal import write_all

if TYPE_CHECKING:
    from .._types import ExitStatus
    from ..domain._container import Container
    from ..domain._task import Task

__all__ = ["logs", "show_log_while"]


def _print(line: LogLine) -> None:
    end = b"" if line.partial else b"\n"
    text = str(line).encode("utf-8", "replace") if line.timestamps else line.data
    write_all(2 if line.stream == "stderr" else 1, text + end)


async def _print_lines(lines: AsyncGenerator[LogLine, None]) -> None:
    async with contextlib.aclosing(lines):
        async for line in lines:
            _print(line)


async def _until_interrupted(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def logs(args: argparse.Namespace) -> int:
    # The state directory's own client: the container's log record is in
    # its bundle directory. Its task is only looked at (attach=False): the
    # logger writes the file, and a process's FIFOs stay with their reader.
    # Following hears the exit from events: the pauses between two looks at
    # the file then cost no call to containerd.
    async with open_client(args, events=args.follow) as client:
        container = await client.load_container(args.container)
        try:
            path = container_log(container.bundle_dir, container.id)
        except errors.FailedPrecondition:
            return await _raw(args, container)
        query = check_log_query(
            follow=args.follow,
            since=args.since,
            until=args.until,
            tail=None if args.tail < 0 else args.tail,
            timestamps=args.timestamps,
        )
        task: Task | None = None
        if args.follow:
            try:
                task = await container.task(attach=False)
            except errors.NotFound:
                task = None
        lines = task_log(path, query, task)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_until_interrupted, tg.cancel_scope)
            try:
                await _print_lines(lines)
            except (errors.NotFound, errors.InvalidArgument) as exc:
                raise CliError(f"cannot read the log of {container.id}: {exc}") from None
            tg.cancel_scope.cancel()
    return 0


async def _raw(args: argparse.Namespace, container: Container) -> int:
    """A log file written before the CRI format (or by hand): printed whole."""
    path = recorded_log_path(args, container.id)
    if not path:
        raise CliError(
            f"container {container.id} has no log file recorded here (run it with --log-path FILE)"
        )
    if args.since or args.until or args.tail >= 0 or args.timestamps:
        raise CliError(
            f"the log file {path} holds raw output (no times, no streams): "
            "--since, --until, --tail and -t cannot apply to it"
        )
    fd = open_log(path)
    try:
        if not args.follow:
            print_available(fd, 1)
            return 0
        try:
            task: Task | None = await container.task(attach=False)
        except errors.NotFound:
            task = None
        done = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def until_exit() -> None:
                if task is not None:
                    await task.wait()
                done.set()

            tg.start_soon(until_exit)
            tg.start_soon(_until_interrupted, tg.cancel_scope)
            await follow(fd, 1, done)
            tg.cancel_scope.cancel()
    finally:
        os.close(fd)
    return 0


async def show_log_while(task: Task, attach: Callable[[], Awaitable[ExitStatus]]) -> ExitStatus:
    """Print the new lines of ``task``'s log as they come while ``attach()``
    starts it and waits for its exit; every line it wrote is printed before
    this returns (the task's wait() promises the whole file)."""
    container = task.container
    # Stamped when read, so every line of this run comes at or after now.
    query = check_log_query(follow=True, since=time.time_ns())
    lines = task_log(container_log(container.bundle_dir, container.id), query, task)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_print_lines, lines)
        status = await attach()
    return status
