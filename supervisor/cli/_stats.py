"""``supervisor stats``: CPU %, memory and process counts of running
containers, live, as ``docker stats`` shows them.

CPU % is the task's CPU time over the host's between two samples (from
``/proc/stat``), times the online CPUs: 200 % is two CPUs busy. Memory is
the usage without the page cache, against the limit (or the host's memory
when there is none).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

import anyio

from .. import errors
from .._client import Client
from .._task import Task
from ._connection import open_client
from ._errors import CliError
from ._format import human_bytes, rfc3339, table

__all__ = ["stats"]

# A limit this large is the kernel's way of saying "none".
_NO_LIMIT = 1 << 62
_TICKS = os.sysconf("SC_CLK_TCK")
_HEADERS = ("CONTAINER", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS")


def _host_cpu_ns() -> int:
    """The host's CPU time, busy and idle, all CPUs, as docker sums it."""
    with open("/proc/stat", "rb") as f:
        fields = f.readline().split()
    return sum(int(v) for v in fields[1:8]) * 1_000_000_000 // _TICKS


def _host_memory() -> int:
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass(frozen=True)
class _Sample:
    stats: Any  # supervisor.Stats
    host_ns: int


@dataclass(frozen=True)
class _Row:
    container_id: str
    cpu_percent: float | None
    memory_usage: int
    memory_limit: int
    pids: int
    read_at: Any

    @property
    def memory_percent(self) -> float | None:
        return self.memory_usage / self.memory_limit * 100 if self.memory_limit else None

    def cells(self) -> tuple[str, ...]:
        cpu = "--" if self.cpu_percent is None else f"{self.cpu_percent:.2f}%"
        mem = self.memory_percent
        return (
            self.container_id,
            cpu,
            f"{human_bytes(self.memory_usage)} / {human_bytes(self.memory_limit)}",
            "--" if mem is None else f"{mem:.2f}%",
            str(self.pids),
        )

    def record(self) -> dict[str, Any]:
        return {
            "id": self.container_id,
            "read_at": rfc3339(self.read_at),
            "cpu_percent": self.cpu_percent,
            "memory_usage": self.memory_usage,
            "memory_limit": self.memory_limit,
            "memory_percent": self.memory_percent,
            "pids": self.pids,
        }


def _row(cid: str, before: _Sample | None, after: _Sample, host_memory: int) -> _Row:
    s = after.stats
    cpu: float | None = None
    if before is not None:
        host = after.host_ns - before.host_ns
        used = s.cpu.total_usage - before.stats.cpu.total_usage
        cpus = os.sysconf("SC_NPROCESSORS_ONLN")
        if host > 0:
            cpu = max(used, 0) / host * cpus * 100
    usage = s.memory.usage
    cache = s.memory.cache or 0
    if 0 < cache <= usage:
        usage -= cache
    limit = s.memory.limit
    if not limit or limit >= _NO_LIMIT or (host_memory and limit > host_memory):
        limit = host_memory
    return _Row(cid, cpu, usage, limit, s.pids.current, s.read_at)


async def _tasks(client: Client, names: list[str]) -> dict[str, Task]:
    """The tasks to sample: the named containers' (each must be running),
    or every task in the namespace."""
    if not names:
        return {c.id: t for c, t in await client.restore() if t is not None}
    found: dict[str, Task] = {}
    for cid in names:
        container = await client.load_container(cid)
        try:
            found[cid] = await container.task()
        except errors.NotFound:
            raise CliError(f"container {cid} is not running") from None
    return found


async def _sample(tasks: dict[str, Task]) -> dict[str, _Sample]:
    got: dict[str, Any] = {}

    async def one(cid: str, task: Task) -> None:
        try:
            got[cid] = await task.stats()
        except (errors.NotFound, errors.FailedPrecondition):
            pass  # gone meanwhile

    async with anyio.create_task_group() as tg:
        for cid, task in tasks.items():
            tg.start_soon(one, cid, task)
    host = _host_cpu_ns()
    # A task whose processes are all gone keeps its cgroup until deleted.
    return {cid: _Sample(s, host) for cid, s in got.items() if s.pids.current > 0}


def _show(rows: list[_Row], args: argparse.Namespace, *, redraw: bool) -> None:
    if args.format == "json":
        for row in rows:
            print(json.dumps(row.record()))
    else:
        text = table(_HEADERS, [r.cells() for r in rows])
        print(f"\x1b[H\x1b[2J{text}" if redraw else text)
    sys.stdout.flush()


async def _run(client: Client, args: argparse.Namespace) -> None:
    host_memory = _host_memory()
    redraw = not args.no_stream and args.format != "json" and sys.stdout.isatty()
    tasks = await _tasks(client, args.containers)
    previous = await _sample(tasks)
    while True:
        await anyio.sleep(args.interval)
        if not args.containers:
            tasks = await _tasks(client, [])
        current = await _sample(tasks)
        rows = [_row(cid, previous.get(cid), s, host_memory) for cid, s in sorted(current.items())]
        _show(rows, args, redraw=redraw)
        previous = current
        if args.no_stream or (args.containers and not current):
            return
        if not redraw and args.format != "json":
            print()


async def stats(args: argparse.Namespace) -> int:
    async with open_client(args, observe=True) as client:
        async with anyio.create_task_group() as tg:

            async def interrupted() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as sigs:
                    async for _ in sigs:
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(interrupted)
            await _run(client, args)
            tg.cancel_scope.cancel()
    return 0
