"""Per-process details of a task (``Task.summary()``), one value type for
both platforms.

containerd's ``ListPids`` answers pids plus whatever the shim adds:

* runhcs (Windows) adds a ``ProcessDetails`` for each process: image name,
  start time, CPU times, memory figures and the exec id. It is decoded at the
  edge, by :mod:`supervisor.backends._decode_windows`.
* runc (Linux) adds only the exec id of exec processes. The rest is read
  here from ``/proc/<pid>`` (:func:`read_proc`), which works because a
  container's pids are host pids in the pid namespace containerd runs in.
  When the library runs in another pid namespace (in a container of its
  own), ``/proc`` does not show them and only what containerd said is given.

A pid is read once, from one ``/proc/<pid>/stat`` snapshot plus its
``cmdline``; a process that exits between ``ListPids`` and the read keeps
only what containerd said.

Those are two files per process: for a task of hundreds of processes,
milliseconds of reading, so :func:`host_details` reads them in a worker
thread rather than on the event loop.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import anyio

from .. import _platform

__all__ = ["ProcessSummary", "host_details", "read_proc", "with_host_details"]

_PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class ProcessSummary:
    """One process of a task, as far as the platform tells.

    Times are nanoseconds on both platforms (runhcs reports 100 ns units,
    ``/proc`` clock ticks; both are converted). A figure the platform does
    not report is 0 (or empty, or None).

    Attributes:
        pid: the host pid (Windows: the process id in the container's silo).
        exec_id: the exec the process belongs to; empty for the init process
            and its children.
        command: Linux: the command line (or the kernel's name for it when
            it has none); Windows: the image name.
        state: Linux: the kernel's one-letter state (``R``, ``S``, ``D``,
            ``Z``, ...); Windows: empty.
        created_at: when the process started (UTC).
        user_ns: CPU time spent in user mode.
        kernel_ns: CPU time spent in kernel mode.
        rss_bytes: Linux: resident set size.
        memory_commit_bytes: Windows: committed memory.
        memory_working_set_private_bytes: Windows: private working set.
        memory_working_set_shared_bytes: Windows: shared working set.
    """

    pid: int
    exec_id: str = ""
    command: str = ""
    state: str = ""
    created_at: datetime | None = None
    user_ns: int = 0
    kernel_ns: int = 0
    rss_bytes: int = 0
    memory_commit_bytes: int = 0
    memory_working_set_private_bytes: int = 0
    memory_working_set_shared_bytes: int = 0


def _boot_time(proc: Path) -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in (proc / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    return None


class _Clock:
    """The host's tick and page sizes, asked once per call of :func:`with_host_details`."""

    def __init__(self, proc: Path) -> None:
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.page = os.sysconf("SC_PAGESIZE")
        self.boot = _boot_time(proc)


def read_proc(
    summary: ProcessSummary, *, proc: Path = _PROC, clock: _Clock | None = None
) -> ProcessSummary:
    """``summary`` completed from ``/proc/<pid>``; unchanged if the process
    is gone (or not visible from here)."""
    base = proc / str(summary.pid)
    try:
        stat = (base / "stat").read_bytes()
    except OSError:
        return summary
    # The name is in parentheses and may itself hold spaces or parentheses:
    # everything after the last ')' is space-separated numbers.
    close = stat.rfind(b")")
    if close < 0:
        return summary
    comm = stat[stat.find(b"(") + 1 : close].decode(errors="replace")
    fields = stat[close + 2 :].split()
    try:
        state = fields[0].decode(errors="replace")
        utime, stime = int(fields[11]), int(fields[12])
        start_ticks, rss_pages = int(fields[19]), int(fields[21])
    except (IndexError, ValueError):
        return summary
    clock = clock or _Clock(proc)
    ns_per_tick = 1_000_000_000 // clock.ticks
    created_at = summary.created_at
    if created_at is None and clock.boot is not None:
        created_at = datetime.fromtimestamp(clock.boot + start_ticks / clock.ticks, UTC)
    command = comm
    with contextlib.suppress(OSError):
        argv = (base / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        if argv != [b""]:
            command = " ".join(a.decode(errors="replace") for a in argv)
    return replace(
        summary,
        command=summary.command or command,
        state=state,
        created_at=created_at,
        user_ns=utime * ns_per_tick,
        kernel_ns=stime * ns_per_tick,
        rss_bytes=rss_pages * clock.page,
    )


def with_host_details(
    summaries: list[ProcessSummary],
    *,
    platform: _platform.Platform | None = None,
    proc: Path = _PROC,
) -> list[ProcessSummary]:
    """What ``Task.summary()`` returns: containerd's answer, completed from
    ``/proc`` where the platform has one (Linux); as it is elsewhere (runhcs
    has said everything already)."""
    platform = platform or _platform.PLATFORM
    if not platform.procfs or not summaries:
        return summaries
    clock = _Clock(proc)
    return [read_proc(s, proc=proc, clock=clock) for s in summaries]


async def host_details(
    summaries: list[ProcessSummary], *, platform: _platform.Platform | None = None
) -> list[ProcessSummary]:
    """:func:`with_host_details`, reading ``/proc`` in a worker thread.

    It only reads: a cancelled caller returns at once, and the thread's
    answer is dropped when it comes.
    """
    platform = platform or _platform.PLATFORM
    if not platform.procfs or not summaries:
        return summaries
    return await anyio.to_thread.run_sync(
        functools.partial(with_host_details, summaries, platform=platform),
        abandon_on_cancel=True,
    )
