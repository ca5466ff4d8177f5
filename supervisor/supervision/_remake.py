"""Making a supervised container's task again, through a containerd that
may be restarting: every step retried until it answers, and a step whose
outcome stayed unknown undone first, so that a restart happens once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from .. import errors
from .._log import get_logger
from .._timeouts import backoff
from .._types import ProcessState

if TYPE_CHECKING:
    from ..domain._container import Container
    from ..domain._process import Process
    from ..domain._task import Task

__all__ = ["delete_stopped", "discard", "new_started"]

_log = get_logger("supervision")

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
    for attempt, pause in enumerate(backoff(0.05, 2.0)):
        try:
            task = await container.new_task(**settings)
        except errors.AlreadyExists as exc:
            # A task left by an earlier attempt whose answer was lost: ours,
            # or (rarely) one the caller made in that instant. Either way
            # the restart replaces it, so that one task runs.
            try:
                await discard(await container.task(attach=False))
            except errors.NotFound:
                # containerd says the task exists and that it does not: its
                # leftover of a task it lost (it is told again and again).
                if attempt % 20 == 0:
                    _log.warning(
                        "supervision.task_wedged", container_id=container.id, error=str(exc)
                    )
        except errors.FailedPrecondition as exc:
            if not isinstance(exc.__cause__, errors.AlreadyExists):
                raise
            # A task directory a killed containerd left behind refuses the
            # create until it is removed (the Daemon's next start of
            # containerd does, or an operator): waited out, so that the
            # restart is made once it can be, not lost.
            if attempt % 20 == 0:
                _log.warning("supervision.task_wedged", container_id=container.id, error=str(exc))
        except _UNKNOWN as exc:
            if attempt % 20 == 0:
                _log.info("supervision.waiting", container_id=container.id, error=str(exc))
        else:
            started = await _start(container, task)
            if started is not None:
                return started
        await anyio.sleep(pause)
    raise AssertionError("unreachable")


async def _start(container: Container, task: Task) -> Task | None:
    """``task`` started, or None if containerd lost it. A start whose answer
    was lost is asked about until containerd answers: started after all
    (the task is loaded as it is now) or not (started again), never made
    twice, since its process ran its first steps already."""
    try:
        await task.start()
        return task
    except _UNKNOWN:
        pass
    for pause in backoff(0.05, 2.0):
        await anyio.sleep(pause)
        try:
            state = await task.status()
            _log.info("supervision.start_unknown", container_id=container.id, state=state.value)
            if state is not ProcessState.CREATED:
                reloaded: Task = await container._reloaded_task(task)
                return reloaded
            await task.start()
            return task
        except errors.NotFound:
            return None
        except _UNKNOWN:
            continue
    raise AssertionError("unreachable")


async def discard(task: Process) -> None:
    """The task (or exec) killed and deleted, whatever its state."""
    for pause in backoff(0.05, 2.0):
        try:
            await task.delete(force=True)
            return
        except errors.NotFound:
            return
        except _UNKNOWN:
            await anyio.sleep(pause)
