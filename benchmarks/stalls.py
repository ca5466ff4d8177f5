"""How long the event loop goes without running a ready task.

A monitor task asks to wake every ``period`` seconds and records how late
each wake-up comes: anything the loop runs meanwhile without yielding (a
blocking system call, a long decode, a garbage collection) shows up as
lateness, and so does time the loop's thread spent waiting for a CPU that
other processes held. Where Linux tells (``/proc/thread-self/schedstat``),
that wait is recorded beside each wake-up, so a stall the loop caused can
be told from one the shared machine caused.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import BinaryIO

import anyio

__all__ = ["StallMonitor", "stall_monitor"]


def _open_schedstat() -> BinaryIO | None:
    try:
        return open("/proc/thread-self/schedstat", "rb", buffering=0)
    except OSError:
        return None


def _run_delay(f: BinaryIO | None) -> int:
    """Nanoseconds this thread has waited on a run queue so far (0 if unknown)."""
    if f is None:
        return 0
    f.seek(0)
    fields = f.read().split()
    return int(fields[1]) if len(fields) > 1 else 0


@dataclass
class StallMonitor:
    """Wake-up lateness seen while the monitor ran, in seconds, and how much
    of each the loop's thread spent waiting for a CPU."""

    period: float
    lateness: list[float] = field(default_factory=list)
    cpu_wait: list[float] = field(default_factory=list)

    @property
    def worst(self) -> float:
        return max(self.lateness, default=0.0)

    @property
    def worst_own(self) -> float:
        """The worst lateness less the CPU wait within it: what the loop
        itself held (blocking calls, long callbacks)."""
        pairs = zip(self.lateness, self.cpu_wait, strict=True)
        return max((max(0.0, late - wait) for late, wait in pairs), default=0.0)

    def quantile(self, q: float) -> float:
        if len(self.lateness) < 2:
            return self.worst
        cuts = statistics.quantiles(self.lateness, n=1000, method="inclusive")
        return cuts[min(len(cuts) - 1, max(0, round(q * 1000) - 1))]

    def summary(self) -> dict[str, float]:
        return {
            "worst_ms": self.worst * 1000,
            "worst_own_ms": self.worst_own * 1000,
            "p99_ms": self.quantile(0.99) * 1000,
            "wakeups": len(self.lateness),
        }

    async def _run(self) -> None:
        period = self.period
        f = _open_schedstat()
        try:
            while True:
                waited = _run_delay(f)
                due = time.perf_counter() + period
                await anyio.sleep(period)
                late = max(0.0, time.perf_counter() - due)
                self.lateness.append(late)
                self.cpu_wait.append((_run_delay(f) - waited) / 1e9)
        finally:
            if f is not None:
                with suppress(OSError):
                    f.close()


@asynccontextmanager
async def stall_monitor(period: float = 0.001) -> AsyncIterator[StallMonitor]:
    """Measure the loop's stalls while the body runs."""
    monitor = StallMonitor(period)
    async with anyio.create_task_group() as tg:
        tg.start_soon(monitor._run)
        try:
            yield monitor
        finally:
            tg.cancel_scope.cancel()
