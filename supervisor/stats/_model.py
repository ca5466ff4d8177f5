"""Resource usage of a task: one model for cgroup v1 and cgroup v2.

A :class:`Stats` is one sample of a task's cgroup, as containerd collected
it, plus two things read on this host at the same moment: the host's total
CPU time (which :meth:`Stats.cpu_percent` divides by, as ``docker stats``
does) and the network counters of the task's own network namespace.

The two cgroup versions do not count the same things. A field the running
version does not have is ``None``, never 0: on cgroup v2 that is
``cpu.per_cpu_usage``, ``memory.max_usage``, ``memory.failcnt``,
``memory.kernel_usage`` and the block-IO lists only v1 keeps
(``blkio.io_queued`` and the others named in :class:`BlkioStats`); on v1 it
is ``memory.events``.  A limit that is not set is ``None`` too (the kernel
reports "no limit" as a huge number, or as 0 for pids).

Everything here is a frozen value: nothing in this module talks to containerd.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "BlkioDevice",
    "BlkioEntry",
    "BlkioStats",
    "CpuStats",
    "HostCpu",
    "MemoryStats",
    "NetworkStats",
    "PidsStats",
    "Stats",
    "read_host_cpu",
    "read_networks",
    "with_host_figures",
]

# The kernel says "no limit" with the largest value its counter holds: about
# 2**63 on cgroup v1 (rounded down to a page), 2**64 - 1 ("max") through
# containerd on v2. Nothing real is that big.
NO_LIMIT = 1 << 62


def limit_or_none(value: int) -> int | None:
    """A memory limit as the model keeps it: ``None`` when there is none."""
    return None if value >= NO_LIMIT else value


@dataclass(frozen=True, slots=True)
class CpuStats:
    """CPU time of the task's cgroup, in nanoseconds.

    Attributes:
        total_usage: CPU time used by every process of the task.
        kernel_usage: of which in the kernel (system time).
        user_usage: of which in user space.
        per_cpu_usage: total usage per host CPU; ``None`` on cgroup v2.
        periods: CFS enforcement periods that have elapsed (0 without a quota).
        throttled_periods: of which the task was throttled.
        throttled_time: total time the task was throttled for.
    """

    total_usage: int
    kernel_usage: int = 0
    user_usage: int = 0
    per_cpu_usage: tuple[int, ...] | None = None
    periods: int = 0
    throttled_periods: int = 0
    throttled_time: int = 0


@dataclass(frozen=True, slots=True)
class MemoryStats:
    """Memory of the task's cgroup, in bytes.

    Attributes:
        usage: memory charged to the cgroup now (page cache included).
        limit: the memory limit; ``None`` when unlimited.
        working_set: what ``docker stats`` shows as usage: ``usage`` minus
            the inactive page cache (v1 ``total_inactive_file``, v2
            ``inactive_file``), which the kernel reclaims first.
        cache: page cache (v1 ``total_cache``, v2 ``file``).
        rss: anonymous memory (v1 ``total_rss``, v2 ``anon``).
        swap: swap in use; ``None`` when the kernel does not account swap.
        max_usage: the highest ``usage`` seen; ``None`` on cgroup v2.
        failcnt: how often ``usage`` hit ``limit``; ``None`` on cgroup v2.
        kernel_usage: kernel memory charged (v1 ``kmem``); ``None`` on v2,
            where it is part of ``usage`` (see ``stat``).
        oom_kills: processes the OOM killer killed in the cgroup; ``None`` when
            the kernel does not say.
        stat: every counter of the cgroup's ``memory.stat``, by the kernel's names.
        events: v2's ``memory.events`` (``low``, ``high``, ``max``, ``oom``,
            ``oom_kill``); ``None`` on cgroup v1.
    """

    usage: int
    limit: int | None
    working_set: int = 0
    cache: int = 0
    rss: int = 0
    swap: int | None = None
    max_usage: int | None = None
    failcnt: int | None = None
    kernel_usage: int | None = None
    oom_kills: int | None = None
    stat: Mapping[str, int] = dataclasses.field(default_factory=dict)
    events: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True)
class PidsStats:
    """Processes (threads, strictly) in the task's cgroup.

    Attributes:
        current: how many there are.
        limit: the most allowed; ``None`` when unlimited.
    """

    current: int
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class BlkioEntry:
    """One line of a cgroup v1 block-IO list: a device, an operation, a value."""

    major: int
    minor: int
    op: str
    value: int


@dataclass(frozen=True, slots=True)
class BlkioDevice:
    """Block IO of the task on one device, on either cgroup version."""

    major: int
    minor: int
    read_bytes: int = 0
    write_bytes: int = 0
    read_ops: int = 0
    write_ops: int = 0


@dataclass(frozen=True, slots=True)
class BlkioStats:
    """Block IO of the task's cgroup.

    ``devices`` holds bytes and operations per device on both versions. The
    lists are the cgroup v1 files entry by entry (``op`` is ``Read``,
    ``Write``, ``Sync``, ``Async``, ``Discard`` or ``Total``; empty for
    ``io_time`` and ``sectors``). Cgroup v2's ``io.stat`` counts only bytes
    and operations: there ``io_service_bytes`` and ``io_serviced`` are made
    from it (``Read`` and ``Write``) and the six others are ``None``.
    """

    devices: tuple[BlkioDevice, ...] = ()
    io_service_bytes: tuple[BlkioEntry, ...] = ()
    io_serviced: tuple[BlkioEntry, ...] = ()
    io_queued: tuple[BlkioEntry, ...] | None = None
    io_service_time: tuple[BlkioEntry, ...] | None = None
    io_wait_time: tuple[BlkioEntry, ...] | None = None
    io_merged: tuple[BlkioEntry, ...] | None = None
    io_time: tuple[BlkioEntry, ...] | None = None
    sectors: tuple[BlkioEntry, ...] | None = None

    @property
    def read_bytes(self) -> int:
        """Bytes read, over every device."""
        return sum(d.read_bytes for d in self.devices)

    @property
    def write_bytes(self) -> int:
        """Bytes written, over every device."""
        return sum(d.write_bytes for d in self.devices)


@dataclass(frozen=True, slots=True)
class NetworkStats:
    """Counters of one network interface of the task's network namespace."""

    interface: str
    rx_bytes: int = 0
    rx_packets: int = 0
    rx_errors: int = 0
    rx_dropped: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    tx_dropped: int = 0


@dataclass(frozen=True, slots=True)
class Stats:
    """One sample of a task's resource usage (cgroup v1 or v2, decoded alike).

    Attributes:
        memory, cpu, pids, blkio: the cgroup's figures (a controller the host
            does not enable reads as zeros).
        cgroup_version: 1 or 2: which fields can be ``None`` (see the module).
        read_at: when containerd collected the sample (UTC).
        system_cpu_usage: the host's total CPU time in nanoseconds (busy and
            idle, all CPUs, from ``/proc/stat``), read with the sample;
            ``None`` where there is no ``/proc/stat``.
        online_cpus: the host's online CPUs when sampled; ``None`` if unknown.
        networks: the interfaces of the task's own network namespace;
            ``None`` when it shares the host's (its counters would be the
            host's) or its ``/proc`` entry cannot be read.

    Example::

        before = await task.stats()
        await anyio.sleep(1)
        after = await task.stats()
        print(after.cpu_percent(before), after.memory_percent())
    """

    memory: MemoryStats
    cpu: CpuStats
    pids: PidsStats
    blkio: BlkioStats = dataclasses.field(default_factory=BlkioStats)
    cgroup_version: int = 1
    read_at: datetime | None = None
    system_cpu_usage: int | None = None
    online_cpus: int | None = None
    networks: tuple[NetworkStats, ...] | None = None

    def cpu_percent(self, previous: Stats) -> float | None:
        """CPU use between ``previous`` (an earlier sample of the same task)
        and this one, in percent of one CPU, as ``docker stats`` shows it: the
        task's CPU time over the host's, times the online CPUs (200.0 is two
        CPUs busy).

        ``None`` when either sample lacks the host's CPU time or no host time
        passed between them; 0.0 when the task's counter did not grow (or
        went back: a different instance of the task).
        """
        if self.system_cpu_usage is None or previous.system_cpu_usage is None:
            return None
        cpus = self.online_cpus or len(self.cpu.per_cpu_usage or ())
        host = self.system_cpu_usage - previous.system_cpu_usage
        if not cpus or host <= 0:
            return None
        used = self.cpu.total_usage - previous.cpu.total_usage
        if used <= 0:
            return 0.0
        return used / host * cpus * 100.0

    def memory_percent(self) -> float | None:
        """The working set in percent of the memory limit, as ``docker
        stats`` shows it; ``None`` when the task has no memory limit."""
        limit = self.memory.limit
        if not limit:
            return None
        return self.memory.working_set / limit * 100.0


# -- figures of this host, read when a sample is taken ------------------------

HostCpu = tuple[int | None, int | None]
"""The host's total CPU time (ns) and online CPU count, read together."""

# /proc/stat counts in USER_HZ ticks.
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_NS = 1_000_000_000


def read_host_cpu(path: str = "/proc/stat") -> HostCpu:
    """The host's CPU time in nanoseconds and its online CPUs, as ``docker
    stats`` reads them; ``(None, None)`` where ``/proc/stat`` cannot be read."""
    try:
        with open(path, "rb") as f:
            first = f.readline()
    except OSError:
        return None, None
    fields = first.split()
    if len(fields) < 8 or fields[0] != b"cpu":
        return None, None
    # user nice system idle iowait irq softirq: what docker sums (steal and
    # the guest columns are left out, as it leaves them).
    try:
        ticks = sum(int(v) for v in fields[1:8])
    except ValueError:
        return None, None
    try:
        cpus: int | None = os.sysconf("SC_NPROCESSORS_ONLN")
    except (AttributeError, ValueError, OSError):
        cpus = None
    return ticks * _NS // _TICKS, cpus if cpus and cpus > 0 else None


def _netns(pid: int | str) -> tuple[int, int]:
    st = os.stat(f"/proc/{pid}/ns/net")
    return st.st_dev, st.st_ino


def read_networks(pid: int) -> tuple[NetworkStats, ...] | None:
    """The interfaces of process ``pid``'s network namespace, when it is not
    this process's own; ``None`` when it is, or when ``/proc`` cannot tell.

    ``pid`` is the task's init process: its ``net/dev`` lists its namespace's
    interfaces, as dockerd reads them.
    """
    if pid <= 0:
        return None
    try:
        if _netns(pid) == _netns("self"):
            return None
        with open(f"/proc/{pid}/net/dev", "rb") as f:
            text = f.read()
    except OSError:
        return None
    return parse_net_dev(text)


def parse_net_dev(text: bytes) -> tuple[NetworkStats, ...] | None:
    """``/proc/<pid>/net/dev`` as one record per interface (``None`` if unreadable)."""
    found: list[NetworkStats] = []
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(b":")
        if not sep:
            continue
        values = rest.split()
        if len(values) < 12:
            return None
        try:
            n = [int(v) for v in values[:12]]
        except ValueError:
            return None
        # receive: bytes packets errs drop fifo frame compressed multicast;
        # transmit: bytes packets errs drop ...
        found.append(
            NetworkStats(
                name.strip().decode(errors="replace"),
                rx_bytes=n[0],
                rx_packets=n[1],
                rx_errors=n[2],
                rx_dropped=n[3],
                tx_bytes=n[8],
                tx_packets=n[9],
                tx_errors=n[10],
                tx_dropped=n[11],
            )
        )
    return tuple(found)


def with_host_figures(stats: Stats, *, pid: int, host_cpu: HostCpu | None = None) -> Stats:
    """``stats`` completed with this host's figures: its CPU time (read now
    unless ``host_cpu`` was read for the same sampling) and the network
    counters of the task whose init process is ``pid``."""
    system, cpus = host_cpu if host_cpu is not None else read_host_cpu()
    return dataclasses.replace(
        stats, system_cpu_usage=system, online_cpus=cpus, networks=read_networks(pid)
    )
