"""Shielded, bounded clean-up for calls that create something in containerd,
and the task groups of the core, which never let a group out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio
from anyio.abc import TaskGroup

from . import errors
from ._log import get_logger

_log = get_logger("cleanup")


@contextmanager
def shielded(limit: float, what: str) -> Iterator[None]:
    """Shield a step that must complete once begun (a create whose outcome we
    must learn, a delete containerd may already have done), with a bound of
    its own: past ``limit`` seconds it is abandoned as DeadlineExceeded."""
    with anyio.CancelScope(shield=True):
        try:
            with anyio.fail_after(limit):
                yield
        except TimeoutError:
            raise errors.DeadlineExceeded(f"{what} did not finish within {limit}s") from None


async def undo_if_cancelled(
    undo: Callable[[], Awaitable[object]], *, limit: float, what: str
) -> None:
    """Raise the pending cancellation, if any, after running ``undo``.

    A create call shields its RPC so that it always learns whether containerd
    made the object; if the caller was cancelled meanwhile, the object would
    reach nobody, so it is removed again here before the cancellation goes on.
    """
    try:
        await anyio.lowlevel.checkpoint_if_cancelled()
    except BaseException:
        with anyio.CancelScope(shield=True), anyio.move_on_after(limit):
            try:
                await undo()
            except errors.SupervisorError as exc:
                _log.warning("cleanup.failed", what=what, error=str(exc))
        raise


@asynccontextmanager
async def task_group() -> AsyncIterator[TaskGroup]:
    """``anyio.create_task_group()`` for the library's own concurrency: what
    its tasks raise leaves as the error itself, never wrapped in an
    ``ExceptionGroup`` the caller would have to unpack. Several different
    failures at once leave as :class:`~supervisor.errors.Unknown` with the
    group chained; a group holding anything but ``Exception`` (a
    ``KeyboardInterrupt``) is left as it is."""
    try:
        async with anyio.create_task_group() as tg:
            yield tg
    except BaseExceptionGroup as group:
        error = errors.unwrap_group(group)
        if not isinstance(error, BaseExceptionGroup):
            raise error from None
        if group.subgroup(lambda e: not isinstance(e, Exception)) is not None:
            raise
        raise errors.Unknown(f"several failures at once: {group}") from group
