"""hcsshim's runhcs shim messages, written by hand as betterproto2 classes.

No Debian package ships hcsshim's ``.proto`` files, so these few messages are
declared here from their published field numbers and types (hcsshim's
``cmd/containerd-shim-runhcs-v1/options/runhcs.proto`` and
``.../stats/stats.proto``) instead of being generated into
``supervisor/_proto/``. Only what the library sends or reads is declared; the
parser skips any other field, so a newer shim's additions are harmless.

Deliberately left out of ``Options``: fields 10 and up, whose meaning changed
across hcsshim releases (``disable_bind_mounts`` in some, ``GPUVHDPath`` in
others), so sending one could mean something else to the shim at hand.

The shim decodes a ``google.protobuf.Any`` by the bare proto name, as
containerd's typeurl registry writes it; the ``*_TYPE_URL`` constants are
those names.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import betterproto2

from .._proto.google.protobuf import Timestamp
from .._proto.io.containerd.cgroups import v1 as pb_cg1

__all__ = [
    "OPTIONS_TYPE_URL",
    "PROCESS_DETAILS_TYPE_URL",
    "STATISTICS_TYPE_URL",
    "Options",
    "OptionsDebugType",
    "OptionsSandboxIsolation",
    "ProcessDetails",
    "Statistics",
    "WindowsContainerMemoryStatistics",
    "WindowsContainerProcessorStatistics",
    "WindowsContainerStatistics",
    "WindowsContainerStorageStatistics",
]

OPTIONS_TYPE_URL = "containerd.runhcs.v1.Options"
PROCESS_DETAILS_TYPE_URL = "containerd.runhcs.v1.ProcessDetails"
STATISTICS_TYPE_URL = "containerd.runhcs.stats.v1.Statistics"


# -- containerd.runhcs.v1 ------------------------------------------------------


class OptionsDebugType(betterproto2.Enum):
    """Where the shim writes its debug trace."""

    NPIPE = 0
    FILE = 1
    ETW = 2


class OptionsSandboxIsolation(betterproto2.Enum):
    """How the sandbox is isolated: a process on the host, or a utility VM."""

    PROCESS = 0
    HYPERVISOR = 1


@dataclass(eq=False, repr=False)
class Options(betterproto2.Message):
    """The runhcs shim's create-time options (``containerd.runhcs.v1.Options``)."""

    debug: bool = betterproto2.field(1, betterproto2.TYPE_BOOL)
    debug_type: OptionsDebugType = betterproto2.field(
        2, betterproto2.TYPE_ENUM, default_factory=lambda: OptionsDebugType(0)
    )
    registry_root: str = betterproto2.field(3, betterproto2.TYPE_STRING)
    sandbox_image: str = betterproto2.field(4, betterproto2.TYPE_STRING)
    sandbox_platform: str = betterproto2.field(5, betterproto2.TYPE_STRING)
    sandbox_isolation: OptionsSandboxIsolation = betterproto2.field(
        6, betterproto2.TYPE_ENUM, default_factory=lambda: OptionsSandboxIsolation(0)
    )
    boot_files_root_path: str = betterproto2.field(7, betterproto2.TYPE_STRING)
    vm_processor_count: int = betterproto2.field(8, betterproto2.TYPE_INT32)
    vm_memory_size_in_mb: int = betterproto2.field(9, betterproto2.TYPE_INT32)


@dataclass(eq=False, repr=False)
class ProcessDetails(betterproto2.Message):
    """One process of a task, as runhcs answers ``ListPids`` (in ``ProcessInfo.info``)."""

    image_name: str = betterproto2.field(1, betterproto2.TYPE_STRING)
    created_at: datetime.datetime | None = betterproto2.field(
        2, betterproto2.TYPE_MESSAGE, unwrap=lambda: Timestamp, optional=True
    )
    kernel_time_100_ns: int = betterproto2.field(3, betterproto2.TYPE_UINT64)
    memory_commit_bytes: int = betterproto2.field(4, betterproto2.TYPE_UINT64)
    memory_working_set_private_bytes: int = betterproto2.field(5, betterproto2.TYPE_UINT64)
    memory_working_set_shared_bytes: int = betterproto2.field(6, betterproto2.TYPE_UINT64)
    process_id: int = betterproto2.field(7, betterproto2.TYPE_UINT32)
    user_time_100_ns: int = betterproto2.field(8, betterproto2.TYPE_UINT64)
    exec_id: str = betterproto2.field(9, betterproto2.TYPE_STRING)


# -- containerd.runhcs.stats.v1 ------------------------------------------------


@dataclass(eq=False, repr=False)
class WindowsContainerProcessorStatistics(betterproto2.Message):
    """CPU time in nanoseconds (the shim converts HCS's 100 ns units)."""

    total_runtime_ns: int = betterproto2.field(1, betterproto2.TYPE_UINT64)
    runtime_user_ns: int = betterproto2.field(2, betterproto2.TYPE_UINT64)
    runtime_kernel_ns: int = betterproto2.field(3, betterproto2.TYPE_UINT64)


@dataclass(eq=False, repr=False)
class WindowsContainerMemoryStatistics(betterproto2.Message):
    memory_usage_commit_bytes: int = betterproto2.field(1, betterproto2.TYPE_UINT64)
    memory_usage_commit_peak_bytes: int = betterproto2.field(2, betterproto2.TYPE_UINT64)
    memory_usage_private_working_set_bytes: int = betterproto2.field(3, betterproto2.TYPE_UINT64)


@dataclass(eq=False, repr=False)
class WindowsContainerStorageStatistics(betterproto2.Message):
    read_count_normalized: int = betterproto2.field(1, betterproto2.TYPE_UINT64)
    read_size_bytes: int = betterproto2.field(2, betterproto2.TYPE_UINT64)
    write_count_normalized: int = betterproto2.field(3, betterproto2.TYPE_UINT64)
    write_size_bytes: int = betterproto2.field(4, betterproto2.TYPE_UINT64)


@dataclass(eq=False, repr=False)
class WindowsContainerStatistics(betterproto2.Message):
    timestamp: datetime.datetime | None = betterproto2.field(
        1, betterproto2.TYPE_MESSAGE, unwrap=lambda: Timestamp, optional=True
    )
    container_start_time: datetime.datetime | None = betterproto2.field(
        2, betterproto2.TYPE_MESSAGE, unwrap=lambda: Timestamp, optional=True
    )
    uptime_ns: int = betterproto2.field(3, betterproto2.TYPE_UINT64)
    processor: WindowsContainerProcessorStatistics | None = betterproto2.field(
        4, betterproto2.TYPE_MESSAGE, optional=True
    )
    memory: WindowsContainerMemoryStatistics | None = betterproto2.field(
        5, betterproto2.TYPE_MESSAGE, optional=True
    )
    storage: WindowsContainerStorageStatistics | None = betterproto2.field(
        6, betterproto2.TYPE_MESSAGE, optional=True
    )


@dataclass(eq=False, repr=False)
class Statistics(betterproto2.Message):
    """What runhcs answers ``Metrics`` with: a Windows container's counters,
    or a Linux container's (LCOW) cgroup v1 metrics, in the oneof
    ``container``. The utility VM's own figures (field 3) are not read."""

    windows: WindowsContainerStatistics | None = betterproto2.field(
        1, betterproto2.TYPE_MESSAGE, group="container"
    )
    linux: pb_cg1.Metrics | None = betterproto2.field(
        2, betterproto2.TYPE_MESSAGE, group="container"
    )
