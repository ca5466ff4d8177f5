"""Background work owned by an async context manager that may be entered and
left from different tasks.

pytest-asyncio runs a fixture's setup and teardown in different tasks, and so
do some frameworks' lifespans. A cancel scope (an anyio task group) cannot be
left from another task than the one that entered it, so an owner cannot hold
a task group across its caller's block. Instead the owner's machinery runs in
one task of its own, started on entry and always awaited on exit; inside that
task it is ordinary structured concurrency.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

from . import errors

if TYPE_CHECKING:
    import asyncio

__all__ = ["Background"]


class Background:
    """One owned task: ``await start(body)`` on entry, ``await stop()`` on exit.

    ``body`` calls :meth:`ready` once it is up, then awaits
    :meth:`until_stopped`, then winds down. What it raises before
    :meth:`ready` comes out of :meth:`start`; what it raises after is kept in
    :attr:`error` for the owner to report, and handed at once to
    ``on_failure``: the owner fails its callers then, as a task group fails
    its other tasks, not only when its context is left.
    """

    def __init__(
        self, name: str, on_failure: Callable[[BaseException], None] | None = None
    ) -> None:
        self._name = name
        self._on_failure = on_failure
        self._task: asyncio.Task[None] | None = None
        # Made (and asyncio loaded) on first use, not with `import supervisor`.
        self._events: tuple[asyncio.Event, asyncio.Event] | None = None
        self._up = False
        self.error: BaseException | None = None

    def _ready_stop(self) -> tuple[asyncio.Event, asyncio.Event]:
        if self._events is None:
            import asyncio

            self._events = (asyncio.Event(), asyncio.Event())
        return self._events

    async def start(self, body: Callable[[], Awaitable[None]]) -> None:
        """Run ``body`` in its own task; return once it is ready.

        Raises:
            whatever ``body`` raised before it was ready (the task is gone by
            then); if the caller is cancelled meanwhile, the body is stopped
            first.
        """
        if self._task is not None:
            raise errors.FailedPrecondition(f"{self._name} was started already")
        import asyncio

        ready, _ = self._ready_stop()
        self._task = asyncio.get_running_loop().create_task(self._main(body), name=self._name)
        try:
            await ready.wait()
        except BaseException:
            await self.stop()
            raise
        if not self._up and self.error is not None:
            await self.stop()
            raise self.error

    def ready(self) -> None:
        """Called by the body: it is up, :meth:`start` may return."""
        self._up = True
        self._ready_stop()[0].set()

    @property
    def up(self) -> bool:
        """True once the body called :meth:`ready`."""
        return self._up

    def fail(self, error: BaseException) -> None:
        """Called by the body (or for it) once it is up and a part of it died:
        the first error is kept and handed to ``on_failure``, before the rest
        of the body winds down (which may take a while)."""
        error = errors.unwrap_group(error)
        if self.error is not None or isinstance(error, anyio.get_cancelled_exc_class()):
            return
        self.error = error
        if self._up and self._on_failure is not None:
            self._on_failure(error)

    async def until_stopped(self) -> None:
        """Awaited by the body: returns when the owner calls :meth:`stop`."""
        await self._ready_stop()[1].wait()

    async def stop(self, limit: float = 60.0) -> None:
        """Ask the body to wind down and wait until it has, even if cancelled;
        a body still running after ``limit`` seconds is cancelled (and given
        ``limit`` more to finish)."""
        self._ready_stop()[1].set()
        if self._task is not None:
            import asyncio

            with anyio.CancelScope(shield=True):
                done, _ = await asyncio.wait([self._task], timeout=limit)
                if not done:
                    self._task.cancel()
                    await asyncio.wait([self._task], timeout=limit)

    async def _main(self, body: Callable[[], Awaitable[None]]) -> None:
        try:
            await body()
        except BaseException as exc:  # the owner reads it; nothing is lost
            self.fail(exc)
        finally:
            self._ready_stop()[0].set()
