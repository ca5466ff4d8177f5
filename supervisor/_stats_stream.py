"""Streams of samples, many tasks sampled by one Metrics call per interval.

Every stream of one client with the same interval shares a clock: round
``n`` is due at ``epoch + n * interval``. When a round falls due, the first
stream to ask for it fetches it, with one ``transport.metrics(ids)`` call for
every task whose stream is waiting at that moment; the other streams wait for
that result and take their own sample out of it.

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
from collections import Counter
from typing import TYPE_CHECKING

import anyio

from . import errors
from ._log import get_logger
from ._stats import Stats, read_host_cpu, with_host_figures
from ._types import ProcessState

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["StatsSampler", "StatsStream", "stats_stream"]

_log = get_logger("stats")

# Below this the rounds would be mostly call overhead.
MIN_INTERVAL = 0.01
# Float slack when a due time is turned back into a round number.
_EPSILON = 1e-9


class _Round:
    """The shared clock and the latest fetched round of one interval."""

    __slots__ = (
        "interval",
        "epoch",
        "waiting",
        "streams",
        "number",
        "ids",
        "samples",
        "error",
        "fetching",
    )

    def __init__(self, interval: float, epoch: float) -> None:
        self.interval = interval
        self.epoch = epoch
        self.waiting: Counter[str] = Counter()
        # (container id, init pid) of the streams waiting: whose network
        # counters the round reads.
        self.streams: Counter[tuple[str, int]] = Counter()
        self.number = -1  # the latest fetched round
        self.ids: frozenset[str] = frozenset()  # whom it was fetched for
        # The round's samples with the host's figures, by (container id, pid).
        self.samples: dict[tuple[str, int], Stats] = {}
        self.error: errors.SupervisorError | None = None
        self.fetching: anyio.Event | None = None

    def tick(self, number: int) -> float:
        return self.epoch + number * self.interval

    def first_due(self, at: float) -> int:
        """The first round due at or after the time ``at``."""
        return max(0, math.ceil((at - self.epoch) / self.interval - _EPSILON))

    def due_now(self) -> int:
        return max(0, math.floor((anyio.current_time() - self.epoch) / self.interval + _EPSILON))

    async def take(self, session: Session, number: int, container_id: str) -> int | None:
        """Round ``number`` (or a later one) for ``container_id``: the number
        of the round fetched with it, or ``None`` if the latest round was
        fetched without it (it was not waiting yet)."""
        while True:
            if self.number >= number:
                return self.number if container_id in self.ids else None
            if self.fetching is not None:
                await self.fetching.wait()
                continue
            await self._fetch(session, max(number, self.due_now()))

    async def _fetch(self, session: Session, number: int) -> None:
        done = self.fetching = anyio.Event()
        ids = frozenset(self.waiting)
        streams = frozenset(self.streams)
        try:
            try:
                samples = await session.transport.metrics(ids)
            except errors.SupervisorError as exc:
                self.samples, self.error = {}, exc
            else:
                # Only reads: a cancelled fetch drops the thread's answer,
                # and the next waiter fetches the round again.
                self.samples = await anyio.to_thread.run_sync(
                    _with_host_figures, samples, streams, abandon_on_cancel=True
                )
                self.error = None
            self.number, self.ids = number, ids
        finally:
            # Also when cancelled: the waiters wake, and one of them fetches.
            self.fetching = None
            done.set()
        _log.debug("stats.round", round=number, tasks=len(ids), interval=self.interval)


def _with_host_figures(
    samples: dict[str, Stats], streams: frozenset[tuple[str, int]]
) -> dict[tuple[str, int], Stats]:
    """Every stream's sample completed with this host's figures (in a worker
    thread: it reads ``/proc``)."""
    host_cpu = read_host_cpu()
    return {
        (cid, pid): with_host_figures(samples[cid], pid=pid, host_cpu=host_cpu)
        for cid, pid in streams
        if cid in samples
    }


class StatsSampler:
    """One client's shared sampling: what every stream of it joins.

    Holds state only while some stream is reading; it never runs anything of
    its own.
    """

    def __init__(self) -> None:
        self._rounds: dict[float, _Round] = {}

    @property
    def waiting(self) -> int:
        """How many stream reads are in progress (0 when idle)."""
        return sum(sum(r.waiting.values()) for r in self._rounds.values())

    def _join(self, interval: float, container_id: str, pid: int, at: float) -> _Round:
        rnd = self._rounds.get(interval)
        if rnd is None:
            rnd = self._rounds[interval] = _Round(interval, at)
        rnd.waiting[container_id] += 1
        rnd.streams[container_id, pid] += 1
        return rnd

    def _leave(self, rnd: _Round, container_id: str, pid: int) -> None:
        rnd.waiting[container_id] -= 1
        if rnd.waiting[container_id] <= 0:
            del rnd.waiting[container_id]
        rnd.streams[container_id, pid] -= 1
        if rnd.streams[container_id, pid] <= 0:
            del rnd.streams[container_id, pid]
        if not rnd.waiting and rnd.fetching is None and self._rounds.get(rnd.interval) is rnd:
            del self._rounds[rnd.interval]


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
        rnd = sampler._join(self._interval, cid, self._pid, due)
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
                got = await rnd.take(session, number, cid)
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
            sampler._leave(rnd, cid, self._pid)
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
