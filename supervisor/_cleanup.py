"""Shielded, bounded clean-up for calls that create something in containerd."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from . import errors
from ._log import get_logger

_log = get_logger("cleanup")


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
