"""containerd's cgroup metrics messages decoded into :class:`supervisor.stats._model.Stats`.

One decoder per cgroup version. Each fills every field its version has and
leaves the others ``None`` (see :mod:`supervisor.stats._model`). Only the
containerd backend imports this module.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .. import errors
from .._proto.google.protobuf import Any as PbAny
from .._proto.io.containerd.cgroups import v1 as pb_cg1
from .._proto.io.containerd.cgroups import v2 as pb_cg2
from ..stats._model import (
    BlkioDevice,
    BlkioEntry,
    BlkioStats,
    CpuStats,
    MemoryStats,
    PidsStats,
    Stats,
    limit_or_none,
)
from ._decode_windows import STATISTICS_TYPE_URL, decode_statistics
from ._message_view import view

__all__ = ["decode_stats", "decode_v1", "decode_v2", "stats_v1", "stats_v2"]

# v1's memory.stat counters: the message's field and the kernel's own name.
_V1_MEMORY_KEYS: tuple[tuple[str, str], ...] = tuple(
    (field, key)
    for prefix in ("", "total_")
    for field, key in (
        (f"{prefix}cache", f"{prefix}cache"),
        (f"{prefix}rss", f"{prefix}rss"),
        (f"{prefix}rss_huge", f"{prefix}rss_huge"),
        (f"{prefix}mapped_file", f"{prefix}mapped_file"),
        (f"{prefix}dirty", f"{prefix}dirty"),
        (f"{prefix}writeback", f"{prefix}writeback"),
        (f"{prefix}pg_pg_in", f"{prefix}pgpgin"),
        (f"{prefix}pg_pg_out", f"{prefix}pgpgout"),
        (f"{prefix}pg_fault", f"{prefix}pgfault"),
        (f"{prefix}pg_maj_fault", f"{prefix}pgmajfault"),
        (f"{prefix}inactive_anon", f"{prefix}inactive_anon"),
        (f"{prefix}active_anon", f"{prefix}active_anon"),
        (f"{prefix}inactive_file", f"{prefix}inactive_file"),
        (f"{prefix}active_file", f"{prefix}active_file"),
        (f"{prefix}unevictable", f"{prefix}unevictable"),
    )
) + (
    ("hierarchical_memory_limit", "hierarchical_memory_limit"),
    ("hierarchical_swap_limit", "hierarchical_memsw_limit"),
)

# v2's memory.stat: the message uses the kernel's names.
_V2_MEMORY_KEYS: tuple[str, ...] = (
    "anon",
    "file",
    "kernel_stack",
    "slab",
    "sock",
    "shmem",
    "file_mapped",
    "file_dirty",
    "file_writeback",
    "anon_thp",
    "inactive_anon",
    "active_anon",
    "inactive_file",
    "active_file",
    "unevictable",
    "slab_reclaimable",
    "slab_unreclaimable",
    "pgfault",
    "pgmajfault",
    "workingset_refault",
    "workingset_activate",
    "workingset_nodereclaim",
    "pgrefill",
    "pgscan",
    "pgsteal",
    "pgactivate",
    "pgdeactivate",
    "pglazyfree",
    "pglazyfreed",
    "thp_fault_alloc",
    "thp_collapse_alloc",
)

_V2_EVENTS = ("low", "high", "max", "oom", "oom_kill")


def _working_set(usage: int, inactive_file: int) -> int:
    # docker stats: inactive page cache is the first thing the kernel
    # reclaims, so it does not count; a counter read a moment apart from
    # usage can exceed it, and then nothing is taken off.
    return usage - inactive_file if inactive_file < usage else usage


def _pids(current: int, limit: int) -> PidsStats:
    # v1 reports "max" as 0, v2 (through containerd) as 2**64 - 1.
    return PidsStats(current=current, limit=limit_or_none(limit) if limit else None)


def _entries(items: list[Any]) -> tuple[BlkioEntry, ...]:
    return tuple(BlkioEntry(e.major, e.minor, e.op, e.value) for e in items)


def _v1_devices(served: list[Any], serviced: list[Any]) -> tuple[BlkioDevice, ...]:
    counts: dict[tuple[int, int], list[int]] = {}
    for slot, items in ((0, served), (2, serviced)):
        for e in items:
            if e.op == "Read":
                counts.setdefault((e.major, e.minor), [0, 0, 0, 0])[slot] = e.value
            elif e.op == "Write":
                counts.setdefault((e.major, e.minor), [0, 0, 0, 0])[slot + 1] = e.value
    return tuple(
        BlkioDevice(major, minor, rb, wb, ro, wo)
        for (major, minor), (rb, wb, ro, wo) in sorted(counts.items())
    )


def _blkio_v1(b: pb_cg1.BlkIoStat | None) -> BlkioStats:
    if b is None:
        return BlkioStats(
            io_queued=(), io_service_time=(), io_wait_time=(), io_merged=(), io_time=(), sectors=()
        )
    return BlkioStats(
        devices=_v1_devices(b.io_service_bytes_recursive, b.io_serviced_recursive),
        io_service_bytes=_entries(b.io_service_bytes_recursive),
        io_serviced=_entries(b.io_serviced_recursive),
        io_queued=_entries(b.io_queued_recursive),
        io_service_time=_entries(b.io_service_time_recursive),
        io_wait_time=_entries(b.io_wait_time_recursive),
        io_merged=_entries(b.io_merged_recursive),
        io_time=_entries(b.io_time_recursive),
        sectors=_entries(b.sectors_recursive),
    )


def stats_v1(m: pb_cg1.Metrics, read_at: datetime | None = None) -> Stats:
    """A cgroup v1 metrics message as :class:`Stats`."""
    mem = m.memory
    if mem is not None:
        usage = mem.usage.usage if mem.usage is not None else 0
        stat = {key: getattr(mem, field) for field, key in _V1_MEMORY_KEYS}
        memsw = mem.swap.usage if mem.swap is not None else 0
        oom = m.memory_oom_control
        memory = MemoryStats(
            usage=usage,
            limit=limit_or_none(mem.usage.limit) if mem.usage is not None else None,
            working_set=_working_set(usage, mem.total_inactive_file),
            cache=mem.total_cache,
            rss=mem.total_rss,
            # memsw counts memory plus swap, and is absent (0) without swap
            # accounting: then how much is swapped is not known.
            swap=max(memsw - usage, 0) if memsw else None,
            max_usage=mem.usage.max if mem.usage is not None else None,
            failcnt=mem.usage.failcnt if mem.usage is not None else None,
            kernel_usage=mem.kernel.usage if mem.kernel is not None else None,
            oom_kills=oom.oom_kill if oom is not None else None,
            stat=stat,
        )
    else:
        memory = MemoryStats(usage=0, limit=None)
    usage_cpu = m.cpu.usage if m.cpu is not None else None
    thr = m.cpu.throttling if m.cpu is not None else None
    cpu = CpuStats(
        total_usage=usage_cpu.total if usage_cpu else 0,
        kernel_usage=usage_cpu.kernel if usage_cpu else 0,
        user_usage=usage_cpu.user if usage_cpu else 0,
        per_cpu_usage=tuple(usage_cpu.per_cpu) if usage_cpu and usage_cpu.per_cpu else None,
        periods=thr.periods if thr else 0,
        throttled_periods=thr.throttled_periods if thr else 0,
        throttled_time=thr.throttled_time if thr else 0,
    )
    pids = _pids(m.pids.current, m.pids.limit) if m.pids is not None else PidsStats(0)
    return Stats(
        memory=memory,
        cpu=cpu,
        pids=pids,
        blkio=_blkio_v1(m.blkio),
        cgroup_version=1,
        read_at=read_at,
    )


def _blkio_v2(io: pb_cg2.IoStat | None) -> BlkioStats:
    usage = sorted(io.usage, key=lambda e: (e.major, e.minor)) if io is not None else []
    return BlkioStats(
        devices=tuple(
            BlkioDevice(e.major, e.minor, e.rbytes, e.wbytes, e.rios, e.wios) for e in usage
        ),
        io_service_bytes=tuple(
            entry
            for e in usage
            for entry in (
                BlkioEntry(e.major, e.minor, "Read", e.rbytes),
                BlkioEntry(e.major, e.minor, "Write", e.wbytes),
            )
        ),
        io_serviced=tuple(
            entry
            for e in usage
            for entry in (
                BlkioEntry(e.major, e.minor, "Read", e.rios),
                BlkioEntry(e.major, e.minor, "Write", e.wios),
            )
        ),
    )


def stats_v2(m: pb_cg2.Metrics, read_at: datetime | None = None) -> Stats:
    """A cgroup v2 metrics message as :class:`Stats`."""
    mem = m.memory
    ev = m.memory_events
    if mem is not None:
        memory = MemoryStats(
            usage=mem.usage,
            limit=limit_or_none(mem.usage_limit),
            working_set=_working_set(mem.usage, mem.inactive_file),
            cache=mem.file,
            rss=mem.anon,
            swap=mem.swap_usage,
            oom_kills=ev.oom_kill if ev is not None else None,
            stat={key: getattr(mem, key) for key in _V2_MEMORY_KEYS},
            events={key: getattr(ev, key) for key in _V2_EVENTS} if ev is not None else None,
        )
    else:
        memory = MemoryStats(usage=0, limit=None)
    c = m.cpu
    # v2 counts CPU time in microseconds.
    cpu = CpuStats(
        total_usage=c.usage_usec * 1000 if c else 0,
        kernel_usage=c.system_usec * 1000 if c else 0,
        user_usage=c.user_usec * 1000 if c else 0,
        periods=c.nr_periods if c else 0,
        throttled_periods=c.nr_throttled if c else 0,
        throttled_time=c.throttled_usec * 1000 if c else 0,
    )
    pids = _pids(m.pids.current, m.pids.limit) if m.pids is not None else PidsStats(0)
    return Stats(
        memory=memory,
        cpu=cpu,
        pids=pids,
        blkio=_blkio_v2(m.io),
        cgroup_version=2,
        read_at=read_at,
    )


def decode_v1(value: bytes, read_at: datetime | None = None) -> Stats:
    """The bytes of a cgroup v1 ``Metrics`` message as :class:`Stats`
    (read through a :mod:`._message_view`, not parsed whole)."""
    return stats_v1(view(pb_cg1.Metrics, value), read_at)


def decode_v2(value: bytes, read_at: datetime | None = None) -> Stats:
    """The bytes of a cgroup v2 ``Metrics`` message as :class:`Stats`
    (read through a :mod:`._message_view`, not parsed whole)."""
    return stats_v2(view(pb_cg2.Metrics, value), read_at)


_DECODERS: dict[str, Callable[[bytes, datetime | None], Stats]] = {
    "io.containerd.cgroups.v1.Metrics": decode_v1,
    "io.containerd.cgroups.v2.Metrics": decode_v2,
    # runhcs: a Windows container's counters, or an LCOW one's cgroup v1 metrics.
    STATISTICS_TYPE_URL: functools.partial(decode_statistics, linux=decode_v1),
}


def decode_stats(data: PbAny, read_at: datetime | None = None) -> Stats:
    """A metrics payload (cgroup v1 or v2) as :class:`Stats`, stamped ``read_at``.

    Raises:
        Unknown: the payload is of another type (say, Windows statistics).
    """
    decoder = _DECODERS.get(data.type_url.rsplit("/", 1)[-1])
    if decoder is None:
        raise errors.Unknown(f"unexpected metrics type {data.type_url!r}")
    return decoder(data.value, read_at)
