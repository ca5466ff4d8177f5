"""Streams of samples, many tasks sampled by one Metrics call per interval
(the shared clock is :mod:`supervisor.stats._sampler`).

There is no background task: the round is fetched inside one caller's
``__anext__``, so nothing runs when no stream is being read, and streams may
be opened, read and dropped from any tasks. A stream counts as waiting only
while its ``__anext__`` runs; it registers and leaves in a ``finally``, so a
cancelled read or a stream simply dropped leaves nothing behind. If the
caller fetching a round is cancelled, the next waiter fetches it instead.

A stream whose reader is slower than the interval misses rounds (it gets
the next one, never a stale sample), and the first sample of a stream
opened while others run comes with the next round, at most one interval
later: joining does not cost a call of its own.

What each sample adds from this host (``/proc/stat``, and each task's
``net/dev``) is read for the whole round at once in a worker thread: a
``/proc/stat`` of a host with many CPUs and interrupts takes milliseconds to
generate, and the event loop must not wait for it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import anyio

from .. import errors
from .._log import get_logger
from .._types import ProcessState
from ..stats._model import Stats
from ..stats._sampler import MIN_INTERVAL, StatsSampler

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["StatsSampler", "StatsStream", "stats_stream"]

_log = get_logger("stats")


class StatsStream:
    """Samples of one task, one per interval, until the task exits.

    An async iterator (see :func:`stats_stream`); it holds nothing between
    reads, so it needs no closing.
    """

    def __init__(self, session: Session, container_id: str, pid: int, interval: float) -> None:
        self._session = session
        self._container_id = container_id
        self._pid = pid
        self._interval = interval
        self._due: float | None = None  # when this stream's next sample is due
        self._ended = False
        self._reading = False

    def __aiter__(self) -> StatsStream:
        return self

    async def __anext__(self) -> Stats:
        if self._ended:
            raise StopAsyncIteration
        if self._reading:
            raise errors.FailedPrecondition(
                "a stats stream is read by one task at a time", container_id=self._container_id
            )
        self._reading = True
        try:
            sample = await self._next()
        except errors.SupervisorError:
            self._ended = True
            raise
        finally:
            self._reading = False
        if sample is None:
            self._ended = True
            raise StopAsyncIteration
        return sample

    async def aclose(self) -> None:
        """End the stream: later reads stop at once."""
        self._ended = True

    async def _next(self) -> Stats | None:
        session = self._session
        session.check_open()
        cid = self._container_id
        tracker = session.tracker
        sampler: StatsSampler = session.stats_sampler
        now = anyio.current_time()
        due = now if self._due is None else self._due
        rnd = sampler.join(self._interval, cid, self._pid, due)
        try:
            number = rnd.first_due(due)
            if self._due is None and rnd.number < rnd.due_now() < number:
                # A new stream may take the round due now if nobody took it yet.
                number = rnd.due_now()
            while True:
                if tracker.exited_known(cid, cid):
                    return None
                await anyio.sleep_until(rnd.tick(number))
                if tracker.exited_known(cid, cid):
                    return None
                got = await rnd.take(session.transport.metrics, number, cid)
                if got is None:
                    number = rnd.number + 1  # fetched before we joined: the next one
                    continue
                if rnd.error is not None:
                    raise type(rnd.error)(
                        rnd.error.message, container_id=cid, process_id=rnd.error.process_id
                    ) from rnd.error
                self._due = rnd.tick(got) + self._interval
                sample = rnd.samples.get((cid, self._pid))
                break
        finally:
            sampler.leave(rnd, cid, self._pid)
        if sample is None:
            return None  # containerd reports nothing: the task is gone
        if sample.pids.current == 0 and await self._stopped():
            return None
        return sample

    async def _stopped(self) -> bool:
        # A task whose processes are all gone still has its cgroup (and
        # metrics) until it is deleted: ask, which only happens at its end.
        cid = self._container_id
        if self._session.tracker.exited_known(cid, cid):
            return True
        try:
            record = await self._session.transport.get_task(cid)
        except errors.NotFound:
            return True
        return record.state is ProcessState.STOPPED


def stats_stream(session: Session, container_id: str, pid: int, interval: float) -> StatsStream:
    """Samples of the task of ``container_id`` (init process ``pid``), one per
    ``interval`` seconds, until it exits; see :meth:`supervisor.Task.stats_stream`.

    Raises:
        InvalidArgument: ``interval`` is not a number of seconds of at least 0.01.
    """
    if isinstance(interval, bool) or not isinstance(interval, int | float):
        raise errors.InvalidArgument(
            f"interval must be a number of seconds, not {type(interval).__name__}",
            container_id=container_id,
        )
    if not (math.isfinite(interval) and interval >= MIN_INTERVAL):
        raise errors.InvalidArgument(
            f"interval must be at least {MIN_INTERVAL} s, not {interval!r}",
            container_id=container_id,
        )
    return StatsStream(session, container_id, pid, float(interval))
