"""What runhcs answers, decoded into the library's values at the edge.

* ``ListPids``: each ``ProcessInfo.info`` is a runhcs ``ProcessDetails``
  (moby's ``summaryFromInterface``) → :class:`~supervisor.stats._summary.ProcessSummary`.
  The runc shim puts a ``ProcessDetails`` of its own there for exec
  processes (only an exec id); :func:`process_summary` reads that too, so one
  call serves both shims.
* ``Metrics``: a ``Statistics`` whose oneof holds a Windows container's
  counters, or a Linux (LCOW) container's cgroup v1 metrics →
  :class:`~supervisor.stats._model.Stats`.

Only the containerd backend imports this module.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from .. import errors
from .._proto.containerd.runc import v1 as pb_runc
from .._proto.google.protobuf import Any as PbAny
from ..stats._model import BlkioDevice, BlkioStats, CpuStats, MemoryStats, PidsStats, Stats
from ..stats._summary import ProcessSummary
from ._hcs_messages import (
    PROCESS_DETAILS_TYPE_URL,
    STATISTICS_TYPE_URL,
    ProcessDetails,
    Statistics,
    WindowsContainerStatistics,
)

__all__ = [
    "RUNC_PROCESS_DETAILS_TYPE_URL",
    "STATISTICS_TYPE_URL",
    "decode_statistics",
    "is_statistics",
    "process_summary",
]

RUNC_PROCESS_DETAILS_TYPE_URL = "containerd.runc.v1.ProcessDetails"

# runhcs reports process CPU times in the 100 ns units of Windows' FILETIME.
_NS_PER_100NS = 100


def _bare(type_url: str) -> str:
    # typeurl writes bare proto names; a googleapis-style prefix is accepted too.
    return type_url.rsplit("/", 1)[-1]


def process_summary(pid: int, info: PbAny | None) -> ProcessSummary:
    """One ``ListPids`` entry as a :class:`ProcessSummary`.

    An ``info`` of a type this library does not know, or one that does not
    decode, leaves only the pid: a summary is informative, and one odd entry
    must not fail the whole listing.
    """
    if info is None or not info.value:
        return ProcessSummary(pid=pid)
    kind = _bare(info.type_url)
    try:
        if kind == PROCESS_DETAILS_TYPE_URL:
            d = ProcessDetails.parse(info.value)
            return ProcessSummary(
                pid=d.process_id or pid,
                exec_id=d.exec_id,
                command=d.image_name,
                created_at=d.created_at,
                user_ns=d.user_time_100_ns * _NS_PER_100NS,
                kernel_ns=d.kernel_time_100_ns * _NS_PER_100NS,
                memory_commit_bytes=d.memory_commit_bytes,
                memory_working_set_private_bytes=d.memory_working_set_private_bytes,
                memory_working_set_shared_bytes=d.memory_working_set_shared_bytes,
            )
        if kind == RUNC_PROCESS_DETAILS_TYPE_URL:
            return ProcessSummary(pid=pid, exec_id=pb_runc.ProcessDetails.parse(info.value).exec_id)
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, EOFError):
        pass
    return ProcessSummary(pid=pid)


def _windows_stats(w: WindowsContainerStatistics, read_at: datetime | None) -> Stats:
    cpu = w.processor
    mem = w.memory
    io = w.storage
    figures: dict[str, int] = {}
    if mem is not None:
        figures = {
            "commit_bytes": mem.memory_usage_commit_bytes,
            "commit_peak_bytes": mem.memory_usage_commit_peak_bytes,
            "private_working_set_bytes": mem.memory_usage_private_working_set_bytes,
        }
    return Stats(
        memory=MemoryStats(
            # Commit is what Windows charges against a job's memory limit;
            # the private working set is what `docker stats` shows for a
            # Windows container, so it is the working set here too.
            usage=mem.memory_usage_commit_bytes if mem else 0,
            limit=None,
            working_set=mem.memory_usage_private_working_set_bytes if mem else 0,
            max_usage=mem.memory_usage_commit_peak_bytes if mem else None,
            stat=figures,
        ),
        cpu=CpuStats(
            total_usage=cpu.total_runtime_ns if cpu else 0,
            kernel_usage=cpu.runtime_kernel_ns if cpu else 0,
            user_usage=cpu.runtime_user_ns if cpu else 0,
        ),
        # HCS does not count a container's processes.
        pids=PidsStats(current=0),
        blkio=BlkioStats(
            devices=(
                BlkioDevice(
                    major=0,
                    minor=0,
                    read_bytes=io.read_size_bytes,
                    write_bytes=io.write_size_bytes,
                    read_ops=io.read_count_normalized,
                    write_ops=io.write_count_normalized,
                ),
            )
            if io is not None
            else ()
        ),
        # No cgroup: 0 tells the sample apart from a Linux one.
        cgroup_version=0,
        # HCS's own sampling time when it gave one.
        read_at=w.timestamp or read_at,
    )


def decode_statistics(
    value: bytes,
    read_at: datetime | None = None,
    *,
    linux: Callable[[bytes, datetime | None], Stats],
) -> Stats:
    """A runhcs ``Statistics`` payload as :class:`Stats`.

    Args:
        value: the payload's bytes (``Metric.data.value``).
        read_at: when containerd took the sample; a Windows sample's own
            timestamp wins when it has one.
        linux: the cgroup v1 decoder (``decode_v1``), for a Linux container
            run by runhcs in a utility VM (LCOW): it takes the ``Metrics``
            message's bytes and ``read_at``.

    Raises:
        supervisor.errors.Unknown: neither kind of container's figures, or
            bytes that do not decode.
    """
    try:
        stats = Statistics.parse(value)
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, EOFError) as exc:
        raise errors.Unknown(f"runhcs statistics do not decode: {exc}") from exc
    if stats.windows is not None:
        return _windows_stats(stats.windows, read_at)
    if stats.linux is not None:
        return linux(bytes(stats.linux), read_at)
    raise errors.Unknown("runhcs statistics carry neither Windows nor Linux figures")


def is_statistics(type_url: str) -> bool:
    """True for the type URL of runhcs's ``Metrics`` payload."""
    return _bare(type_url) == STATISTICS_TYPE_URL
