"""runhcs, without Windows: the hand-written message classes against protoc's
own reading of the same schema, the options the library sends, the spec
checks, and the decoding of what runhcs answers (process details, statistics).
"""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from supervisor import errors
from supervisor._proto.containerd.runc import v1 as pb_runc
from supervisor._proto.google.protobuf import Any as PbAny
from supervisor._proto.io.containerd.cgroups import v1 as pb_cg1
from supervisor.backends import _hcs_messages as hcs
from supervisor.backends import runhcs
from supervisor.backends._decode_windows import decode_statistics, is_statistics, process_summary
from supervisor.stats._model import CpuStats, MemoryStats, PidsStats, Stats

# The published schema (hcsshim's runhcs.proto and stats.proto, field names,
# numbers and types only), compiled by protoc into google.protobuf classes:
# an independent reading of the wire format to hold the hand-written
# betterproto2 classes against. The cgroup metrics are cut to one field.
_SCHEMA = {
    "runhcs.proto": """
        syntax = "proto3";
        package containerd.runhcs.v1;
        import "google/protobuf/timestamp.proto";
        message Options {
          bool debug = 1;
          enum DebugType { NPIPE = 0; FILE = 1; ETW = 2; }
          DebugType debug_type = 2;
          string registry_root = 3;
          string sandbox_image = 4;
          string sandbox_platform = 5;
          enum SandboxIsolation { PROCESS = 0; HYPERVISOR = 1; }
          SandboxIsolation sandbox_isolation = 6;
          string boot_files_root_path = 7;
          int32 vm_processor_count = 8;
          int32 vm_memory_size_in_mb = 9;
        }
        message ProcessDetails {
          string image_name = 1;
          google.protobuf.Timestamp created_at = 2;
          uint64 kernel_time_100_ns = 3;
          uint64 memory_commit_bytes = 4;
          uint64 memory_working_set_private_bytes = 5;
          uint64 memory_working_set_shared_bytes = 6;
          uint32 process_id = 7;
          uint64 user_time_100_ns = 8;
          string exec_id = 9;
        }
    """,
    "metrics.proto": """
        syntax = "proto3";
        package io.containerd.cgroups.v1;
        message PidsStat { uint64 current = 1; uint64 limit = 2; }
        message Metrics { PidsStat pids = 2; }
    """,
    "stats.proto": """
        syntax = "proto3";
        package containerd.runhcs.stats.v1;
        import "google/protobuf/timestamp.proto";
        import "metrics.proto";
        message Statistics {
          oneof container {
            WindowsContainerStatistics windows = 1;
            io.containerd.cgroups.v1.Metrics linux = 2;
          }
        }
        message WindowsContainerStatistics {
          google.protobuf.Timestamp timestamp = 1;
          google.protobuf.Timestamp container_start_time = 2;
          uint64 uptime_ns = 3;
          WindowsContainerProcessorStatistics processor = 4;
          WindowsContainerMemoryStatistics memory = 5;
          WindowsContainerStorageStatistics storage = 6;
        }
        message WindowsContainerProcessorStatistics {
          uint64 total_runtime_ns = 1;
          uint64 runtime_user_ns = 2;
          uint64 runtime_kernel_ns = 3;
        }
        message WindowsContainerMemoryStatistics {
          uint64 memory_usage_commit_bytes = 1;
          uint64 memory_usage_commit_peak_bytes = 2;
          uint64 memory_usage_private_working_set_bytes = 3;
        }
        message WindowsContainerStorageStatistics {
          uint64 read_count_normalized = 1;
          uint64 read_size_bytes = 2;
          uint64 write_count_normalized = 3;
          uint64 write_size_bytes = 4;
        }
    """,
}

WHEN = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    """protoc's Python classes for :data:`_SCHEMA`."""
    grpc_tools = pytest.importorskip("grpc_tools", reason="make venv installs grpcio-tools")
    root = tmp_path_factory.mktemp("hcs_schema")
    for name, text in _SCHEMA.items():
        (root / name).write_text(textwrap.dedent(text))
    include = Path(grpc_tools.__file__).parent / "_proto"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{root}",
            f"-I{include}",
            f"--python_out={root}",
            *_SCHEMA,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    sys.path.insert(0, str(root))
    try:
        yield {
            "runhcs": importlib.import_module("runhcs_pb2"),
            "stats": importlib.import_module("stats_pb2"),
        }
    finally:
        sys.path.remove(str(root))
        for name in ("runhcs_pb2", "stats_pb2", "metrics_pb2"):
            sys.modules.pop(name, None)


# -- the hand-written classes read and write what protoc's do -----------------------


def test_options_bytes_are_what_protoc_reads(reference: dict[str, ModuleType]) -> None:
    mine = hcs.Options(
        debug=True,
        debug_type=hcs.OptionsDebugType.ETW,
        registry_root="HKLM\\SOFTWARE\\runhcs",
        sandbox_image="mcr.microsoft.com/oss/kubernetes/pause:3.9",
        sandbox_platform="windows/amd64",
        sandbox_isolation=hcs.OptionsSandboxIsolation.HYPERVISOR,
        boot_files_root_path="C:\\Program Files\\Linux Containers",
        vm_processor_count=2,
        vm_memory_size_in_mb=1024,
    )
    theirs = reference["runhcs"].Options.FromString(bytes(mine))
    assert theirs.debug is True
    assert theirs.debug_type == theirs.ETW
    assert theirs.registry_root == "HKLM\\SOFTWARE\\runhcs"
    assert theirs.sandbox_image == "mcr.microsoft.com/oss/kubernetes/pause:3.9"
    assert theirs.sandbox_platform == "windows/amd64"
    assert theirs.sandbox_isolation == theirs.HYPERVISOR
    assert theirs.boot_files_root_path == "C:\\Program Files\\Linux Containers"
    assert (theirs.vm_processor_count, theirs.vm_memory_size_in_mb) == (2, 1024)


def test_process_details_from_protoc_bytes(reference: dict[str, ModuleType]) -> None:
    theirs = reference["runhcs"].ProcessDetails(
        image_name="cmd.exe",
        kernel_time_100_ns=30,
        memory_commit_bytes=4096,
        memory_working_set_private_bytes=2048,
        memory_working_set_shared_bytes=1024,
        process_id=4242,
        user_time_100_ns=70,
        exec_id="e1",
    )
    theirs.created_at.FromDatetime(WHEN)
    mine = hcs.ProcessDetails.parse(theirs.SerializeToString())
    assert mine.image_name == "cmd.exe" and mine.exec_id == "e1"
    assert mine.created_at == WHEN
    assert (mine.kernel_time_100_ns, mine.user_time_100_ns, mine.process_id) == (30, 70, 4242)
    assert (
        mine.memory_commit_bytes,
        mine.memory_working_set_private_bytes,
        mine.memory_working_set_shared_bytes,
    ) == (4096, 2048, 1024)


def test_statistics_from_protoc_bytes(reference: dict[str, ModuleType]) -> None:
    pb = reference["stats"]
    theirs = pb.Statistics()
    w = theirs.windows
    w.timestamp.FromDatetime(WHEN)
    w.container_start_time.FromDatetime(datetime(2024, 5, 6, tzinfo=UTC))
    w.uptime_ns = 25_689_123_456_000
    w.processor.total_runtime_ns, w.processor.runtime_user_ns = 900, 600
    w.processor.runtime_kernel_ns = 300
    w.memory.memory_usage_commit_bytes = 10 << 20
    w.memory.memory_usage_commit_peak_bytes = 12 << 20
    w.memory.memory_usage_private_working_set_bytes = 6 << 20
    w.storage.read_count_normalized, w.storage.read_size_bytes = 5, 5000
    w.storage.write_count_normalized, w.storage.write_size_bytes = 7, 7000
    mine = hcs.Statistics.parse(theirs.SerializeToString())
    assert mine.linux is None and mine.windows is not None
    assert mine.windows.timestamp == WHEN
    assert mine.windows.container_start_time == datetime(2024, 5, 6, tzinfo=UTC)
    assert mine.windows.uptime_ns == 25_689_123_456_000
    assert mine.windows.processor is not None and mine.windows.processor.runtime_kernel_ns == 300
    assert mine.windows.memory is not None
    assert mine.windows.memory.memory_usage_private_working_set_bytes == 6 << 20
    assert mine.windows.storage is not None and mine.windows.storage.write_size_bytes == 7000

    lcow = pb.Statistics()
    lcow.linux.pids.current = 3
    parsed = hcs.Statistics.parse(lcow.SerializeToString())
    assert parsed.windows is None and parsed.linux is not None
    assert parsed.linux.pids is not None and parsed.linux.pids.current == 3


# -- the options the library sends ----------------------------------------------------


def _parsed(value: PbAny | None) -> hcs.Options:
    assert value is not None
    assert value.type_url == "containerd.runhcs.v1.Options"
    return hcs.Options.parse(value.value)


def test_options_from_a_mapping_with_enum_names_or_numbers() -> None:
    sent = _parsed(
        runhcs.options_any(
            {"sandbox_isolation": "hypervisor", "debug_type": 1, "sandbox_platform": "linux/amd64"},
            debug=False,
        )
    )
    assert sent.sandbox_isolation is hcs.OptionsSandboxIsolation.HYPERVISOR
    assert sent.debug_type is hcs.OptionsDebugType.FILE
    assert sent.sandbox_platform == "linux/amd64" and sent.debug is False


def test_debug_follows_the_library_log_level_unless_the_caller_says(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="supervisor"):
        # Nothing to say at all: no options, as moby sends none.
        assert runhcs.options_any(None) is None
    with caplog.at_level(logging.DEBUG, logger="supervisor"):
        assert _parsed(runhcs.options_any(None)).debug is True
        assert runhcs.options_any({"debug": False}) is None
        assert _parsed(runhcs.options_any({"registry_root": "x"})).debug is True
    with caplog.at_level(logging.INFO, logger="supervisor"):
        assert _parsed(runhcs.options_any({"debug": True})).debug is True


@pytest.mark.parametrize(
    "options",
    [
        {"binary_name": "runc"},  # runc's option, not runhcs's
        {"debug": "yes"},
        {"debug_type": "SYSLOG"},
        {"debug_type": 3},
        {"sandbox_isolation": True},
        {"vm_memory_size_in_mb": -1},
        {"vm_memory_size_in_mb": 1 << 31},
        {"vm_processor_count": 2.0},
        {"registry_root": b"HKLM"},
    ],
)
def test_bad_options_are_refused_before_anything_is_sent(options: dict[str, Any]) -> None:
    with pytest.raises(errors.InvalidArgument, match="runhcs options"):
        runhcs.options_any(options, container_id="web")


def test_every_option_field_is_a_field_of_the_message() -> None:
    assert runhcs.OPTION_FIELDS == {f for f in hcs.Options.__dataclass_fields__}


# -- specs ----------------------------------------------------------------------------


def test_layer_folders_are_required_for_every_isolation() -> None:
    good = runhcs.windows_spec(["cmd", "/c", "echo hi"], ["C:\\layers\\base", "C:\\layers\\web"])
    assert runhcs.check_spec(good) == ["C:\\layers\\base", "C:\\layers\\web"]
    assert "linux" not in good and good["process"]["cwd"] == "C:\\"
    hyperv = runhcs.windows_spec(["cmd"], ["C:\\l\\base", "C:\\l\\web"], hyperv=True)
    assert hyperv["windows"]["hyperv"] == {}
    for windows in (
        None,
        {},
        {"hyperv": {}},  # Hyper-V isolation does not excuse it (servicing reuses it)
        {"layerFolders": ["C:\\l\\scratch-only"]},
        {"layerFolders": "C:\\l\\base"},
        {"layerFolders": ["C:\\l\\base", ""]},
    ):
        spec: dict[str, Any] = {"process": {"args": ["cmd"]}}
        if windows is not None:
            spec["windows"] = windows
        with pytest.raises(errors.InvalidArgument):
            runhcs.check_spec(spec, container_id="web")
    with pytest.raises(errors.InvalidArgument):
        runhcs.windows_spec([], ["C:\\l\\base", "C:\\l\\web"])


def test_update_resources_is_logged_as_not_supported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="supervisor"):
        runhcs.update_unsupported("web")
    (record,) = caplog.records
    assert record.name == "supervisor.runhcs" and record.levelno == logging.WARNING
    assert record.event == "task.update_unsupported"  # type: ignore[attr-defined]
    assert record.fields == {  # type: ignore[attr-defined]
        "container_id": "web",
        "runtime": "io.containerd.runhcs.v1",
    }


# -- what runhcs answers ----------------------------------------------------------------


def _details(**fields: Any) -> PbAny:
    return PbAny(
        type_url="containerd.runhcs.v1.ProcessDetails", value=bytes(hcs.ProcessDetails(**fields))
    )


def test_process_details_become_a_summary_in_nanoseconds() -> None:
    info = _details(
        image_name="ping.exe",
        created_at=WHEN,
        kernel_time_100_ns=12,
        user_time_100_ns=34,
        memory_commit_bytes=1 << 20,
        memory_working_set_private_bytes=1 << 19,
        memory_working_set_shared_bytes=1 << 18,
        process_id=77,
        exec_id="e1",
    )
    s = process_summary(77, info)
    assert (s.pid, s.exec_id, s.command, s.created_at) == (77, "e1", "ping.exe", WHEN)
    assert (s.kernel_ns, s.user_ns) == (1200, 3400)
    assert s.memory_commit_bytes == 1 << 20
    assert s.memory_working_set_private_bytes == 1 << 19
    assert s.memory_working_set_shared_bytes == 1 << 18
    assert s.state == "" and s.rss_bytes == 0


def test_process_info_of_other_kinds() -> None:
    runc = PbAny(
        type_url="containerd.runc.v1.ProcessDetails",
        value=bytes(pb_runc.ProcessDetails(exec_id="sh-1")),
    )
    assert process_summary(5, runc).exec_id == "sh-1"
    prefixed = _details(image_name="a.exe", process_id=6)
    prefixed.type_url = "type.googleapis.com/" + prefixed.type_url
    assert process_summary(6, prefixed).command == "a.exe"
    # Unknown, empty or undecodable: the pid alone, never a failed listing.
    assert process_summary(7, None).pid == 7
    assert process_summary(8, PbAny(type_url="example.Other", value=b"\x08\x01")).command == ""
    broken = PbAny(type_url="containerd.runhcs.v1.ProcessDetails", value=b"\x0a\xff")
    assert process_summary(9, broken) == process_summary(9, None)


def test_windows_statistics_become_stats() -> None:
    payload = hcs.Statistics(
        windows=hcs.WindowsContainerStatistics(
            timestamp=WHEN,
            uptime_ns=5,
            processor=hcs.WindowsContainerProcessorStatistics(
                total_runtime_ns=900, runtime_user_ns=600, runtime_kernel_ns=300
            ),
            memory=hcs.WindowsContainerMemoryStatistics(
                memory_usage_commit_bytes=100,
                memory_usage_commit_peak_bytes=150,
                memory_usage_private_working_set_bytes=60,
            ),
            storage=hcs.WindowsContainerStorageStatistics(
                read_count_normalized=1,
                read_size_bytes=10,
                write_count_normalized=2,
                write_size_bytes=20,
            ),
        )
    )

    def no_linux(value: bytes, read_at: datetime | None) -> Stats:
        raise AssertionError("a Windows sample went to the Linux decoder")

    later = datetime(2024, 5, 6, 7, 8, 10, tzinfo=UTC)
    stats = decode_statistics(bytes(payload), later, linux=no_linux)
    assert stats.read_at == WHEN and stats.cgroup_version == 0  # HCS's own time wins
    assert (stats.cpu.total_usage, stats.cpu.user_usage, stats.cpu.kernel_usage) == (900, 600, 300)
    assert stats.cpu.per_cpu_usage is None
    m = stats.memory
    assert (m.usage, m.max_usage, m.working_set, m.limit) == (100, 150, 60, None)
    assert m.stat == {
        "commit_bytes": 100,
        "commit_peak_bytes": 150,
        "private_working_set_bytes": 60,
    }
    assert stats.blkio.read_bytes == 10 and stats.blkio.write_bytes == 20
    (device,) = stats.blkio.devices
    assert (device.read_ops, device.write_ops) == (1, 2)
    assert stats.pids.current == 0


def test_a_linux_container_under_runhcs_goes_to_the_cgroup_decoder() -> None:
    seen: list[pb_cg1.Metrics] = []
    marker = Stats(MemoryStats(usage=1, limit=None), CpuStats(total_usage=2), PidsStats(3))

    def linux(value: bytes, read_at: datetime | None) -> Stats:
        assert read_at == WHEN
        seen.append(pb_cg1.Metrics.parse(value))
        return marker

    payload = hcs.Statistics(linux=pb_cg1.Metrics(pids=pb_cg1.PidsStat(current=3, limit=9)))
    assert decode_statistics(bytes(payload), WHEN, linux=linux) is marker
    (metrics,) = seen
    assert metrics.pids is not None and (metrics.pids.current, metrics.pids.limit) == (3, 9)


def test_statistics_that_say_nothing_or_do_not_decode_are_unknown() -> None:
    with pytest.raises(errors.Unknown, match="neither"):
        decode_statistics(b"", linux=lambda v, at: pytest.fail("not reached"))
    with pytest.raises(errors.Unknown, match="do not decode"):
        decode_statistics(b"\x0a\xff\xff", linux=lambda v, at: pytest.fail("not reached"))
    assert is_statistics("containerd.runhcs.stats.v1.Statistics")
    assert is_statistics("type.googleapis.com/containerd.runhcs.stats.v1.Statistics")
    assert not is_statistics("io.containerd.cgroups.v1.Metrics")


def test_a_windows_sample_without_its_own_time_takes_containerds() -> None:
    payload = hcs.Statistics(windows=hcs.WindowsContainerStatistics(uptime_ns=1))
    stats = decode_statistics(bytes(payload), WHEN, linux=lambda v, at: pytest.fail("no"))
    assert stats.read_at == WHEN
    assert stats.blkio.devices == () and stats.memory.stat == {}


def test_an_lcow_sample_through_the_library_cgroup_v1_decoder() -> None:
    from supervisor.backends._decode_stats import decode_v1

    payload = hcs.Statistics(linux=pb_cg1.Metrics(pids=pb_cg1.PidsStat(current=4, limit=64)))
    stats = decode_statistics(bytes(payload), WHEN, linux=decode_v1)
    assert stats.cgroup_version == 1 and stats.read_at == WHEN
    assert (stats.pids.current, stats.pids.limit) == (4, 64)
