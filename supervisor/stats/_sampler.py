"""The shared clock of a client's stats streams: one Metrics call per round.

Every stream of one client with the same interval shares a clock: round
``n`` is due at ``epoch + n * interval``. When a round falls due, the first
stream to ask for it fetches it, with one ``transport.metrics(ids)`` call for
every task whose stream is waiting at that moment; the other streams wait for
that result and take their own sample out of it. What each sample adds from
this host (``/proc/stat``, each task's ``net/dev``) is read for the whole
round at once in a worker thread.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

import anyio

from .. import errors
from .._log import get_logger
from ._model import Stats, read_host_cpu, with_host_figures

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection

    # The client's Metrics call: samples of the given tasks, by container id.
    Fetch = Callable[[Collection[str]], Awaitable[Mapping[str, Stats]]]

__all__ = ["MIN_INTERVAL", "Round", "StatsSampler"]

_log = get_logger("stats")

# Below this the rounds would be mostly call overhead.
MIN_INTERVAL = 0.01
# Float slack when a due time is turned back into a round number.
_EPSILON = 1e-9


class Round:
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

    async def take(self, fetch: Fetch, number: int, container_id: str) -> int | None:
        """Round ``number`` (or a later one) for ``container_id``: the number
        of the round fetched with it, or ``None`` if the latest round was
        fetched without it (it was not waiting yet)."""
        while True:
            if self.number >= number:
                return self.number if container_id in self.ids else None
            if self.fetching is not None:
                await self.fetching.wait()
                continue
            await self._fetch(fetch, max(number, self.due_now()))

    async def _fetch(self, fetch: Fetch, number: int) -> None:
        done = self.fetching = anyio.Event()
        ids = frozenset(self.waiting)
        streams = frozenset(self.streams)
        try:
            try:
                samples = await fetch(ids)
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
    samples: Mapping[str, Stats], streams: frozenset[tuple[str, int]]
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
        self._rounds: dict[float, Round] = {}

    @property
    def waiting(self) -> int:
        """How many stream reads are in progress (0 when idle)."""
        return sum(sum(r.waiting.values()) for r in self._rounds.values())

    def join(self, interval: float, container_id: str, pid: int, at: float) -> Round:
        rnd = self._rounds.get(interval)
        if rnd is None:
            rnd = self._rounds[interval] = Round(interval, at)
        rnd.waiting[container_id] += 1
        rnd.streams[container_id, pid] += 1
        return rnd

    def leave(self, rnd: Round, container_id: str, pid: int) -> None:
        rnd.waiting[container_id] -= 1
        if rnd.waiting[container_id] <= 0:
            del rnd.waiting[container_id]
        rnd.streams[container_id, pid] -= 1
        if rnd.streams[container_id, pid] <= 0:
            del rnd.streams[container_id, pid]
        if not rnd.waiting and rnd.fetching is None and self._rounds.get(rnd.interval) is rnd:
            del self._rounds[rnd.interval]
