"""Making a supervised container's task again, through a containerd that
may be restarting: every step retried until it answers, and a step whose
outcome stayed unknown undone first, so that a restart happens once."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import anyio

from .. import errors
from .._timeouts import backoff

if TYPE_CHECKING:
    from ..domain._container import Container
    from ..domain._task import Task

__all__ = ["delete_stopped", "discard", "new_started"]

_UNKNOWN = (errors.Unavailable, errors.DeadlineExceeded, errors.Cancelled)


async def delete_stopped(old: Task) -> None:
    """The exited task deleted (gone already is as good)."""
    for pause in backoff(0.05, 2.0):
        try:
            await old.delete()
            return
        except errors.NotFound:
            return
        except _UNKNOWN:
            await anyio.sleep(pause)


async def new_started(container: Container, settings: dict[str, Any]) -> Task:
    """The task made as ``settings`` say and started; a containerd that does
    not answer is waited for (cancellable)."""
    for pause in backoff(0.05, 2.0):
        task: Task | None = None
        try:
            task = await container.new_task(**settings)
            await task.start()
            return task
        except errors.AlreadyExists:
            # A task left by an earlier attempt whose answer was lost: ours,
            # or (rarely) one the caller made in that instant. Either way
            # the restart replaces it, so that one task runs.
            with contextlib.suppress(errors.NotFound):
                await discard(await container.task(attach=False))
        except _UNKNOWN:
            if task is not None:
                await discard(task)
        await anyio.sleep(pause)
    raise AssertionError("unreachable")


async def discard(task: Task) -> None:
    """The task killed and deleted, whatever its state."""
    for pause in backoff(0.05, 2.0):
        try:
            await task.delete(force=True)
            return
        except errors.NotFound:
            return
        except _UNKNOWN:
            await anyio.sleep(pause)
