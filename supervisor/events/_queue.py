"""Keyed ordered job queue: one key's jobs run one at a time in append order,
different keys' jobs run concurrently (the idea of moby's libcontainerd/queue).

One worker task per *active* key drains that key's deque and exits when it is
empty, so an idle key costs nothing and a busy key costs one task, not one
task per job.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from .._log import get_logger

__all__ = ["Queue"]

Job = Callable[[], Awaitable[object]]

_log = get_logger("queue")


class Queue:
    """Runs jobs in order per key, concurrently across keys.

    Example::

        async with Queue() as queue:
            queue.append("container-1", handle_start)
            queue.append("container-1", handle_exit)   # runs after handle_start
            queue.append("container-2", handle_start)  # runs alongside them
        # leaving waits for every job appended, including jobs appended by jobs
    """

    def __init__(self, *, drain_timeout: float | None = None, high_water: int = 1000) -> None:
        """
        Args:
            drain_timeout: on leaving, how long the pending jobs may take
                before they are cancelled (and that is logged); ``None``
                waits for them however long they take.
            high_water: a key with more jobs than this pending is logged,
                once until it drains.
        """
        self._pending: dict[str, deque[Job]] = {}
        self._tg: TaskGroup | None = None
        self._drain_timeout = drain_timeout
        self._high_water = high_water
        self._flooded: set[str] = set()
        self._idle: anyio.Event | None = None

    def __len__(self) -> int:
        """How many keys have jobs pending or running (idle keys are dropped)."""
        return len(self._pending)

    async def __aenter__(self) -> Queue:
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        tg = self._tg
        assert tg is not None
        if exc is not None:
            tg.cancel_scope.cancel()
        elif self._drain_timeout is not None and self._pending:
            tg.start_soon(self._bound_drain, self._drain_timeout, tg)
        try:
            # _tg stays set while we wait: jobs running now may append more
            # (a handler scheduling its follow-up), and those must run too.
            return await tg.__aexit__(exc_type, exc, tb)
        finally:
            self._tg = None
            self._pending.clear()

    def append(self, key: str, fn: Job) -> None:
        """Schedule ``fn()`` after every job appended before under ``key``.

        Never blocks.  A job that raises is logged and does not stop the jobs
        after it.

        Raises:
            RuntimeError: the queue's context is not active.
        """
        tg = self._tg
        if tg is None:
            raise RuntimeError("Queue.append outside 'async with Queue()'")
        jobs = self._pending.get(key)
        if jobs is not None:
            jobs.append(fn)
            if len(jobs) > self._high_water and key not in self._flooded:
                self._flooded.add(key)
                _log.warning("queue.high_water", key=key, pending=len(jobs))
            return
        self._pending[key] = deque((fn,))
        tg.start_soon(self._drain, key, name=f"queue:{key}")

    async def _drain(self, key: str) -> None:
        jobs = self._pending[key]
        try:
            while jobs:
                fn = jobs[0]
                try:
                    await fn()
                except Exception:
                    _log.exception("queue.job_failed", key=key)
                except anyio.get_cancelled_exc_class():
                    # Re-raises if the queue itself is being cancelled; a job
                    # that merely raised CancelledError of its own ends alone.
                    await anyio.lowlevel.checkpoint_if_cancelled()
                    _log.warning("queue.job_cancelled", key=key)
                jobs.popleft()
        finally:
            if self._pending.get(key) is jobs and not jobs:
                del self._pending[key]
                self._flooded.discard(key)
                if not self._pending and self._idle is not None:
                    self._idle.set()

    async def _bound_drain(self, limit: float, tg: TaskGroup) -> None:
        with anyio.move_on_after(limit):
            while self._pending:
                self._idle = anyio.Event()
                await self._idle.wait()
            return
        _log.error("queue.drain_timeout", keys=sorted(self._pending)[:20], seconds=limit)
        tg.cancel_scope.cancel()
