"""Throughput of the keyed ordered queue alone: no-op jobs per second.

``python -m benchmarks.bench_queue [--jobs N] [--keys K] [--rounds R]`` prints
the figures; ``make bench`` runs :func:`bench_queue_throughput` as its "queue"
section (see ``benchmarks/lifecycle.py``) and ``make bench-check`` holds every
``*median*`` figure to the 100,000 jobs/s target.

A round appends every job, then leaves the queue's context, which waits for
them all: the time covers append, scheduling and running, not just append.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time

import anyio

from supervisor.events import Queue


async def _noop() -> None:
    pass


async def _round(jobs: int, keys: list[str]) -> float:
    """Jobs per second for one round of ``jobs`` no-op jobs spread over ``keys``."""
    n = len(keys)
    # Key names made before timing: building strings is not the queue's cost.
    order = [keys[i % n] for i in range(jobs)]
    t0 = time.perf_counter()
    async with Queue() as queue:
        append = queue.append
        for key in order:
            append(key, _noop)
    elapsed = time.perf_counter() - t0
    if len(queue):
        raise RuntimeError(f"{len(queue)} keys still pending after the queue's exit")
    return jobs / elapsed


async def _variant(jobs: int, keys: int, rounds: int) -> list[float]:
    names = [f"container-{i}" for i in range(keys)]
    await _round(min(jobs, 10_000), names)  # warm-up: imports, allocator, caches
    figures = []
    for _ in range(rounds):
        # The collector stays on (its cost is part of the real queue's), but
        # each round starts from the same clean heap.
        gc.collect()
        figures.append(await _round(jobs, names))
    return figures


async def bench_queue_throughput(
    jobs: int = 200_000, keys: int = 100, rounds: int = 5
) -> dict[str, float]:
    """No-op jobs per second through :class:`supervisor.events.Queue`.

    Returns the median and minimum over ``rounds`` with ``keys`` keys, and the
    same for a single key (the worst case for ordering: one long chain), plus
    the parameters.
    """
    spread = await _variant(jobs, keys, rounds)
    single = await _variant(jobs, 1, rounds)
    return {
        "jobs_per_s_median": statistics.median(spread),
        "jobs_per_s_min": min(spread),
        "single_key_jobs_per_s_median": statistics.median(single),
        "single_key_jobs_per_s_min": min(single),
        "jobs": float(jobs),
        "keys": float(keys),
        "rounds": float(rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_queue")
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    result = anyio.run(
        lambda: bench_queue_throughput(jobs=args.jobs, keys=args.keys, rounds=args.rounds)
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"keyed queue, {args.jobs:,} no-op jobs per round, {args.rounds} rounds, jobs per second")
    for label, prefix in ((f"{args.keys} keys", ""), ("1 key", "single_key_")):
        median, low = result[f"{prefix}jobs_per_s_median"], result[f"{prefix}jobs_per_s_min"]
        print(f"  {label:<10} median {median:12,.0f}   min {low:12,.0f}")


if __name__ == "__main__":
    main()
