"""The stats model: derived figures and what is read from this host."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from supervisor.stats._model import (
    NO_LIMIT,
    CpuStats,
    MemoryStats,
    PidsStats,
    Stats,
    limit_or_none,
    parse_net_dev,
    read_host_cpu,
    read_networks,
    with_host_figures,
)


def _sample(
    cpu: int,
    system: int | None,
    *,
    cpus: int | None = 2,
    per_cpu: tuple[int, ...] | None = None,
    usage: int = 0,
    limit: int | None = None,
    working_set: int = 0,
) -> Stats:
    return Stats(
        memory=MemoryStats(usage=usage, limit=limit, working_set=working_set),
        cpu=CpuStats(total_usage=cpu, per_cpu_usage=per_cpu),
        pids=PidsStats(current=1),
        system_cpu_usage=system,
        online_cpus=cpus,
    )


def test_cpu_percent_is_dockers_formula() -> None:
    before = _sample(1_000_000_000, 100_000_000_000)
    # 0.5 s of task CPU while the host's 2 CPUs ran 2 s in total: a quarter
    # of the host, shown as half a CPU of two: 50 %.
    after = _sample(1_500_000_000, 102_000_000_000)
    assert after.cpu_percent(before) == pytest.approx(50.0)
    # two busy CPUs of two: 200 %
    busy = _sample(3_500_000_000, 104_000_000_000)
    assert busy.cpu_percent(after) == pytest.approx(200.0)


def test_cpu_percent_counts_per_cpu_entries_when_online_cpus_is_unknown() -> None:
    before = _sample(0, 0, cpus=None, per_cpu=(0, 0, 0, 0))
    after = _sample(1_000, 4_000, cpus=None, per_cpu=(250, 250, 250, 250))
    assert after.cpu_percent(before) == pytest.approx(100.0)


def test_cpu_percent_without_what_it_needs_is_none_or_zero() -> None:
    assert _sample(2, None).cpu_percent(_sample(1, 10)) is None  # no host CPU time
    assert _sample(2, 20).cpu_percent(_sample(1, None)) is None
    assert _sample(2, 10).cpu_percent(_sample(1, 10)) is None  # no host time passed
    assert _sample(2, 20, cpus=None).cpu_percent(_sample(1, 10, cpus=None)) is None
    assert _sample(1, 20).cpu_percent(_sample(1, 10)) == 0.0  # idle
    assert _sample(1, 20).cpu_percent(_sample(9, 10)) == 0.0  # a new instance of the task


def test_memory_percent_is_the_working_set_of_the_limit() -> None:
    s = _sample(0, 0, usage=80, working_set=50, limit=200)
    assert s.memory_percent() == 25.0
    assert _sample(0, 0, usage=80, working_set=50, limit=None).memory_percent() is None


def test_no_limit_sentinels() -> None:
    assert limit_or_none(0x7FFFFFFFFFFFF000) is None  # v1, 4 KiB pages
    assert limit_or_none((1 << 64) - 1) is None  # v2 "max"
    assert limit_or_none(NO_LIMIT - 1) == NO_LIMIT - 1
    assert limit_or_none(64 << 20) == 64 << 20


def test_stats_are_frozen_and_convert_to_json() -> None:
    s = _sample(1, 2, limit=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.cgroup_version = 2  # type: ignore[misc]
    as_dict = dataclasses.asdict(s)
    assert json.loads(json.dumps(as_dict, default=str))["memory"]["limit"] == 3
    assert as_dict["blkio"]["io_queued"] is None


_NET_DEV = b"""\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1234      12    0    0    0     0          0         0     1234      12    0    0    0     0       0          0
  eth0: 9876543   6543    1    2    0     0          0         3  123456    789    4    5    0     0       0          0
"""  # noqa: E501


def test_net_dev_parses_every_interface() -> None:
    lo, eth0 = parse_net_dev(_NET_DEV) or ()
    assert (lo.interface, lo.rx_bytes, lo.tx_packets) == ("lo", 1234, 12)
    assert eth0.interface == "eth0"
    assert (eth0.rx_bytes, eth0.rx_packets) == (9876543, 6543)
    assert (eth0.rx_errors, eth0.rx_dropped) == (1, 2)
    assert (eth0.tx_bytes, eth0.tx_packets, eth0.tx_errors, eth0.tx_dropped) == (123456, 789, 4, 5)
    assert parse_net_dev(b"header\nheader\n  eth0: 1 2 3\n") is None  # truncated: not guessed


def test_networks_of_a_process_in_our_own_namespace_are_none() -> None:
    # Its counters would be this host's, not a container's.
    assert read_networks(os.getpid()) is None
    assert read_networks(0) is None
    assert read_networks(2**22 + 1) is None  # above pid_max: no such process


def test_host_cpu_is_read_from_proc_stat(tmp_path: Path) -> None:
    system, cpus = read_host_cpu()
    assert system is not None and system > 0
    assert cpus is not None and cpus >= 1
    fake = tmp_path / "stat"
    fake.write_text("cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    ticks = os.sysconf("SC_CLK_TCK")
    # user..softirq, as docker sums them; steal and guest are left out
    assert read_host_cpu(str(fake))[0] == 28 * 1_000_000_000 // ticks
    fake.write_text("intr 1 2 3\n")
    assert read_host_cpu(str(fake)) == (None, None)
    assert read_host_cpu(str(tmp_path / "missing")) == (None, None)


def test_host_figures_complete_a_sample() -> None:
    s = with_host_figures(_sample(1, None, cpus=None), pid=os.getpid())
    assert s.system_cpu_usage is not None and s.online_cpus is not None
    assert s.networks is None
    given = with_host_figures(_sample(1, None), pid=0, host_cpu=(5, 3))
    assert (given.system_cpu_usage, given.online_cpus) == (5, 3)
