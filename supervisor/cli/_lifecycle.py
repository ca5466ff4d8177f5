"""``start``, ``stop``, ``restart``, ``rm``, ``kill``, ``pause``, ``unpause``, ``update``:
acting on existing containers, each named one in turn. One that fails is
reported and the others are still done; the exit code is then 125."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Awaitable, Callable

from .. import errors
from .._types import ProcessState
from ..client._client import Client
from ..domain._container import Container
from ..domain._task import Task
from ._connection import open_client
from ._each import each_named
from ._errors import CliError
from ._logfile import check_log_path, forget_log_path, recorded_log_path
from ._options import resources
from ._run import cleanup, foreground

__all__ = ["kill", "pause", "restart", "rm", "start", "stop", "unpause", "update"]

_LIVE = (ProcessState.RUNNING, ProcessState.PAUSED, ProcessState.PAUSING)


async def _each(
    args: argparse.Namespace,
    action: Callable[[Client, Container], Awaitable[None]],
    *,
    observe: bool,
    quiet: bool = False,
) -> int:
    """``action`` on every named container; the ids done are printed."""

    async def one(client: Client, cid: str) -> str | None:
        await action(client, await client.load_container(cid))
        return None if quiet else cid

    return await each_named(args, args.containers, one, observe=observe)


async def _task_or_none(container: Container) -> Task | None:
    try:
        return await container.task()
    except errors.NotFound:
        return None


async def _running_task(container: Container) -> Task:
    task = await _task_or_none(container)
    if task is None:
        raise CliError(f"container {container.id} is not running")
    return task


# -- start --------------------------------------------------------------------------


def _recorded_log_path(args: argparse.Namespace, container: Container) -> str | None:
    path = recorded_log_path(args, container.id)
    if path is None:
        return None
    try:
        return check_log_path(path)
    except CliError as exc:
        raise CliError(f"container {container.id}'s recorded log path: {exc.message}") from None


def _terminal(container: Container) -> bool:
    process = container.spec.get("process")
    return bool(process.get("terminal")) if isinstance(process, dict) else False


async def _new_task(
    args: argparse.Namespace, container: Container, *, attach: bool, interactive: bool
) -> Task:
    old = await _task_or_none(container)
    if old is not None:
        if await old.status() in _LIVE:
            raise CliError(f"container {container.id} is running already")
        await old.delete(force=True)  # stopped (or never started): make way for a new one
    log_path = _recorded_log_path(args, container)
    return await container.new_task(
        stdin=interactive,
        terminal=_terminal(container),
        log_path=log_path,
        output="pipe" if attach else "null",
        # The command does not stay to copy the output: the shim's logger does.
        log_writer="logger" if log_path is not None else "client",
        log_format="cri" if log_path is not None else "raw",
    )


async def _start_detached(args: argparse.Namespace, container: Container) -> None:
    """A new task, started, its output in the recorded log file (or nowhere)."""
    task = await _new_task(args, container, attach=False, interactive=False)
    try:
        await task.start()
    except BaseException:
        await cleanup(task.delete(force=True), f"delete the task of {container.id}")
        raise


async def start(args: argparse.Namespace) -> int:
    if not args.attach:
        if args.interactive:
            raise CliError("-i needs -a: nothing stays to feed stdin")

        async def detached(client: Client, container: Container) -> None:
            await _start_detached(args, container)

        return await _each(args, detached, observe=False)
    if len(args.containers) != 1:
        raise CliError("start -a takes one container")
    async with open_client(args, events=True) as client:
        container = await client.load_container(args.containers[0])
        tty = _terminal(container)
        log_path = _recorded_log_path(args, container)
        if args.interactive and log_path is not None:
            raise CliError("-i cannot be used: the container's output goes to its log file")
        if tty and args.interactive and not os.isatty(0):
            raise CliError("the input device is not a TTY")
        task = await _new_task(args, container, attach=True, interactive=args.interactive)
        try:
            return await foreground(task, interactive=args.interactive, tty=tty, log_path=log_path)
        finally:
            await cleanup(task.delete(force=True), f"delete the task of {container.id}")


# -- stop, restart, rm, kill -------------------------------------------------------


async def _stop(container: Container, signal: int | None, grace: float) -> None:
    """:meth:`Task.stop` (the signal, else the image's StopSignal or
    SIGTERM; up to ``grace`` seconds; then SIGKILL), then the task is
    deleted (the container stays)."""
    try:
        task = await container.task(attach=False)
    except errors.NotFound:
        return
    with contextlib.suppress(errors.NotFound):
        await task.stop(grace, signal)
        await task.delete(force=True)


async def stop(args: argparse.Namespace) -> int:
    async def action(client: Client, container: Container) -> None:
        await _stop(container, args.signal, args.time)

    return await _each(args, action, observe=False)


async def restart(args: argparse.Namespace) -> int:
    async def action(client: Client, container: Container) -> None:
        await _stop(container, args.signal, args.time)
        # As `start` makes it: output to the recorded log file, or nowhere.
        await _start_detached(args, container)

    return await _each(args, action, observe=False)


async def rm(args: argparse.Namespace) -> int:
    async def action(client: Client, container: Container) -> None:
        task = await _task_or_none(container)
        if task is not None:
            if not args.force and await task.status() in _LIVE:
                raise CliError(f"container {container.id} is running: stop it first, or use rm -f")
            with contextlib.suppress(errors.NotFound):
                await task.delete(force=True)
        await container.delete()
        forget_log_path(args, container.id)

    return await _each(args, action, observe=False)


async def kill(args: argparse.Namespace) -> int:
    async def action(client: Client, container: Container) -> None:
        await (await _running_task(container)).kill(args.signal, all=args.all)

    return await _each(args, action, observe=True)


# -- pause, unpause, update ---------------------------------------------------------


async def pause(args: argparse.Namespace) -> int:
    async def action(client: Client, container: Container) -> None:
        await (await _running_task(container)).pause()

    return await _each(args, action, observe=True)


async def unpause(args: argparse.Namespace) -> int:
    async def action(client: Client, container: Container) -> None:
        await (await _running_task(container)).resume()

    return await _each(args, action, observe=True)


async def update(args: argparse.Namespace) -> int:
    body = resources(memory=args.memory, cpus=args.cpus, pids_limit=args.pids_limit)
    if not body:
        raise CliError("update needs --memory, --cpus or --pids-limit")

    async def action(client: Client, container: Container) -> None:
        await (await _running_task(container)).update_resources(body)

    return await _each(args, action, observe=True)
