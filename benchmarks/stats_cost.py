"""CPU cost of one stats round for 100 tasks: what a ``metrics(ids)`` call
costs this process once containerd has answered.

``python -m benchmarks.stats_cost [--tasks N] [--rounds R]`` prints the
figures as JSON; :func:`main` returns them.

No containerd is involved: the replies are synthetic, built with the
generated classes in the shapes containerd 1.6 sends, and decoded in a loop.
Two shapes per cgroup version: *idle* is what an idle busybox task gives
(most counters zero, so absent on the wire; no block IO), *busy* has every
counter set and, on v1, all eight block-IO lists for one disk. A round is:
parse the ``MetricsResponse`` bytes and decode each payload into ``Stats``.
The payloads' decoding is also timed alone, as the library does it (read
through a ``MessageView``) and with betterproto2's whole parse, side by side. The
host figures added to each sample are timed on their own: ``/proc/stat``
(read once a round) and a ``net/dev`` (once a task; this process's own
stands in for a task's).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from supervisor._proto.containerd.services.tasks import v1 as pb_tasks
from supervisor._proto.containerd.types import Metric
from supervisor._proto.google.protobuf import Any as PbAny
from supervisor._proto.io.containerd.cgroups import v1 as cg1
from supervisor._proto.io.containerd.cgroups import v2 as cg2
from supervisor.backends._decode_stats import decode_stats, stats_v1, stats_v2
from supervisor.backends._message_view import view
from supervisor.stats._model import parse_net_dev, read_host_cpu

MODE = "synthetic Metrics replies decoded in a loop (no containerd, no real tasks)"
_NO_LIMIT_V1 = 0x7FFFFFFFFFFFF000
_OPS = ("Read", "Write", "Sync", "Async", "Discard", "Total")


def _names(cls: type[Any], skip: set[str]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name not in skip]


def v1_idle(i: int, cpus: int) -> cg1.Metrics:
    """As an idle busybox task reported it on this project's machines."""
    counters = dict(rss=53248, pg_pg_in=356, pg_pg_out=343, pg_fault=625 + i)
    counters.update(inactive_anon=49152, active_anon=4096)
    counters.update({f"total_{k}": v for k, v in counters.items()})
    return cg1.Metrics(
        pids=cg1.PidsStat(current=1),
        cpu=cg1.CpuStat(
            usage=cg1.CpuUsage(total=8421388 + i, per_cpu=[8421388 // cpus] * cpus),
            throttling=cg1.Throttle(),
        ),
        memory=cg1.MemoryStat(
            **counters,
            hierarchical_memory_limit=_NO_LIMIT_V1,
            hierarchical_swap_limit=_NO_LIMIT_V1,
            usage=cg1.MemoryEntry(limit=_NO_LIMIT_V1, usage=692224, max=1990656),
            swap=cg1.MemoryEntry(limit=_NO_LIMIT_V1, usage=692224, max=1990656),
            kernel=cg1.MemoryEntry(limit=_NO_LIMIT_V1, usage=258048, max=561152),
            kernel_tcp=cg1.MemoryEntry(limit=_NO_LIMIT_V1),
        ),
        blkio=cg1.BlkIoStat(),
        memory_oom_control=cg1.MemoryOomControl(),
    )


def v1_busy(i: int, cpus: int) -> cg1.Metrics:
    """Every counter set, and all eight block-IO lists for one disk."""

    def entries() -> list[cg1.BlkIoEntry]:
        return [
            cg1.BlkIoEntry(op=op, major=254, minor=0, value=4096 * (i + k + 1))
            for k, op in enumerate(_OPS)
        ]

    skip = {"usage", "swap", "kernel", "kernel_tcp"}
    counters = {name: (1 << 20) + i for name in _names(cg1.MemoryStat, skip)}
    return cg1.Metrics(
        pids=cg1.PidsStat(current=3, limit=100),
        cpu=cg1.CpuStat(
            usage=cg1.CpuUsage(
                total=10**9 + i, kernel=10**8, user=9 * 10**8, per_cpu=[10**9 // cpus] * cpus
            ),
            throttling=cg1.Throttle(periods=100, throttled_periods=3, throttled_time=10**6),
        ),
        memory=cg1.MemoryStat(
            **counters,
            usage=cg1.MemoryEntry(limit=64 << 20, usage=(20 << 20) + i, max=30 << 20, failcnt=1),
            swap=cg1.MemoryEntry(limit=128 << 20, usage=(20 << 20) + i, max=30 << 20),
            kernel=cg1.MemoryEntry(limit=_NO_LIMIT_V1, usage=1 << 20, max=2 << 20),
            kernel_tcp=cg1.MemoryEntry(limit=_NO_LIMIT_V1),
        ),
        blkio=cg1.BlkIoStat(
            io_service_bytes_recursive=entries(),
            io_serviced_recursive=entries(),
            io_queued_recursive=entries(),
            io_service_time_recursive=entries(),
            io_wait_time_recursive=entries(),
            io_merged_recursive=entries(),
            io_time_recursive=[cg1.BlkIoEntry(major=254, minor=0, value=5)],
            sectors_recursive=[cg1.BlkIoEntry(major=254, minor=0, value=80)],
        ),
        memory_oom_control=cg1.MemoryOomControl(oom_kill=1),
    )


def v2_idle(i: int, cpus: int) -> cg2.Metrics:
    """An idle task's v2 figures: a few memory counters, no IO."""
    return cg2.Metrics(
        pids=cg2.PidsStat(current=1, limit=(1 << 64) - 1),
        cpu=cg2.CpuStat(usage_usec=8421 + i, user_usec=4000, system_usec=4421),
        memory=cg2.MemoryStat(
            anon=53248,
            kernel_stack=16384,
            slab=120000,
            inactive_anon=49152,
            active_anon=4096,
            slab_reclaimable=60000,
            slab_unreclaimable=60000,
            pgfault=625 + i,
            usage=692224,
            usage_limit=(1 << 64) - 1,
            swap_limit=(1 << 64) - 1,
        ),  # fmt: skip
        memory_events=cg2.MemoryEvents(),
    )


def v2_busy(i: int, cpus: int) -> cg2.Metrics:
    """Every memory counter set, IO on two disks, memory events."""
    counters = {name: (1 << 20) + i for name in _names(cg2.MemoryStat, set())}
    counters.update(usage=(20 << 20) + i, usage_limit=64 << 20)
    return cg2.Metrics(
        pids=cg2.PidsStat(current=3, limit=100),
        cpu=cg2.CpuStat(
            usage_usec=10**6 + i,
            user_usec=9 * 10**5,
            system_usec=10**5,
            nr_periods=100,
            nr_throttled=3,
            throttled_usec=1000,
        ),  # fmt: skip
        memory=cg2.MemoryStat(**counters),
        io=cg2.IoStat(
            usage=[
                cg2.IoEntry(major=m, minor=0, rbytes=4096, wbytes=8192 + i, rios=1, wios=2)
                for m in (8, 254)
            ]
        ),
        memory_events=cg2.MemoryEvents(max=1, oom=1, oom_kill=1),
    )


SHAPES: dict[str, tuple[Callable[[int, int], Any], str]] = {
    "v1_idle": (v1_idle, "io.containerd.cgroups.v1.Metrics"),
    "v1_busy": (v1_busy, "io.containerd.cgroups.v1.Metrics"),
    "v2_idle": (v2_idle, "io.containerd.cgroups.v2.Metrics"),
    "v2_busy": (v2_busy, "io.containerd.cgroups.v2.Metrics"),
}


def reply_bytes(shape: str, tasks: int) -> bytes:
    """A ``MetricsResponse`` for ``tasks`` tasks, as it comes off the wire."""
    build, url = SHAPES[shape]
    cpus = os.cpu_count() or 1
    now = datetime.datetime.now(datetime.UTC)
    metrics = [
        Metric(timestamp=now, id=f"task-{i}", data=PbAny(type_url=url, value=bytes(build(i, cpus))))
        for i in range(tasks)
    ]
    return bytes(pb_tasks.MetricsResponse(metrics=metrics))


def decode_round(raw: bytes) -> int:
    """What the transport does with a reply: parse it, decode every sample."""
    reply = pb_tasks.MetricsResponse.parse(raw)
    samples = {m.id: decode_stats(m.data, m.timestamp) for m in reply.metrics if m.data}
    return len(samples)


def _cpu_ms(fn: Callable[[], object], rounds: int) -> float:
    """Median process CPU time of ``fn`` in milliseconds."""
    fn()  # warm-up: first-use costs of the generated classes
    times = []
    for _ in range(rounds):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times) * 1e3


def _net_dev() -> object:
    with open(f"/proc/{os.getpid()}/net/dev", "rb") as f:
        return parse_net_dev(f.read())


def main(tasks: int = 100, rounds: int = 30) -> dict[str, Any]:
    """The figures (process CPU time, medians over ``rounds``), as a dict."""
    figures: dict[str, Any] = {"mode": MODE, "tasks": tasks, "rounds": rounds}
    batch = 100
    host_ms = _cpu_ms(lambda: [read_host_cpu() for _ in range(batch)], rounds) / batch
    net_ms = _cpu_ms(lambda: [_net_dev() for _ in range(batch)], rounds) / batch
    figures["host_cpu_read_us"] = round(host_ms * 1e3, 1)
    figures["net_dev_read_us"] = round(net_ms * 1e3, 1)
    for shape, (_, url) in SHAPES.items():
        raw = reply_bytes(shape, tasks)
        if decode_round(raw) != tasks:
            raise RuntimeError(f"{shape}: not every sample decoded")
        round_ms = _cpu_ms(lambda raw=raw: decode_round(raw), rounds)
        reply = pb_tasks.MetricsResponse.parse(raw)
        payloads = [m.data.value for m in reply.metrics if m.data]
        cls, model = (
            (cg1.Metrics, stats_v1) if url.endswith("v1.Metrics") else (cg2.Metrics, stats_v2)
        )
        parsed = [cls.parse(p) for p in payloads]
        whole = _cpu_ms(lambda p=payloads, c=cls, f=model: [f(c.parse(x)) for x in p], rounds)
        viewed = _cpu_ms(lambda p=payloads, c=cls, f=model: [f(view(c, x)) for x in p], rounds)
        figures[shape] = {
            "payload_bytes": len(payloads[0]),
            "round_cpu_ms": round(round_ms, 3),
            "per_task_cpu_us": round(round_ms / tasks * 1e3, 1),
            # The payloads alone, two ways: read through a MessageView (what
            # decode_stats does) and parsed whole by betterproto2 first.
            "payloads_viewed_ms": round(viewed, 3),
            "payloads_parsed_whole_ms": round(whole, 3),
            "parsed_whole_over_viewed": round(whole / viewed, 2),
            # of the whole parse: building the model from parsed messages
            "model_ms": round(_cpu_ms(lambda p=parsed, f=model: [f(m) for m in p], rounds), 3),
            "with_host_figures_ms": round(round_ms + host_ms + net_ms * tasks, 3),
        }
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    print(json.dumps(main(args.tasks, args.rounds), indent=2))
