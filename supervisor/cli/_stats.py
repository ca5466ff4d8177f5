"""``supervisor stats``: CPU %, memory and process counts of running
containers, live, as ``docker stats`` shows them.

Each task is followed by the library's ``Task.stats_stream`` (the streams of
one client share one Metrics call per interval). CPU % is
``Stats.cpu_percent`` between a task's last two samples: its CPU time over
the host's, times the online CPUs (200 % is two CPUs busy). Memory is the
working set (usage without the inactive page cache) against the limit, or
against the host's memory when there is none.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup

from .. import errors
from ..client._client import Client
from ..domain._task import Task
from ..stats._model import Stats
from ._connection import open_client
from ._errors import CliError
from ._format import human_bytes, rfc3339, table

__all__ = ["stats"]

_HEADERS = ("CONTAINER", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS")
# How long --no-stream waits for every task's second sample, in intervals.
_SECOND_SAMPLE = 5


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
class _Row:
    container_id: str
    cpu_percent: float | None
    memory_usage: int
    memory_limit: int
    pids: int
    sample: Stats

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

    def record(self) -> dict[str, object]:
        return {
            "id": self.container_id,
            "read_at": rfc3339(self.sample.read_at),
            "cpu_percent": self.cpu_percent,
            "memory_usage": self.memory_usage,
            "memory_limit": self.memory_limit,
            "memory_percent": self.memory_percent,
            "pids": self.pids,
        }


def _row(cid: str, previous: Stats | None, sample: Stats, host_memory: int) -> _Row:
    limit = sample.memory.limit
    if limit is None or (host_memory and limit > host_memory):
        limit = host_memory
    cpu = sample.cpu_percent(previous) if previous is not None else None
    return _Row(cid, cpu, sample.memory.working_set, limit, sample.pids.current, sample)


class _Board:
    """The last two samples of every task followed."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.samples: dict[str, tuple[Stats | None, Stats]] = {}
        self.following: set[str] = set()
        self.ended: dict[str, int] = {}  # container id: pid of the task whose stream ended
        self.changed = anyio.Event()

    def _tell(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    def follow(self, tg: TaskGroup, cid: str, task: Task) -> None:
        # A stopped task keeps its record until deleted: followed once, not
        # again each round; a new task of the container (a new pid) is.
        if cid not in self.following and self.ended.get(cid) != task.pid:
            self.following.add(cid)
            tg.start_soon(self._follow, cid, task)

    async def _follow(self, cid: str, task: Task) -> None:
        previous: Stats | None = None
        try:
            async for sample in task.stats_stream(self.interval):
                self.samples[cid] = (previous, sample)
                previous = sample
                self._tell()
        except (errors.NotFound, errors.FailedPrecondition):
            pass  # gone meanwhile
        finally:
            self.samples.pop(cid, None)
            self.following.discard(cid)
            self.ended[cid] = task.pid
            self._tell()

    def rows(self, host_memory: int) -> list[_Row]:
        return [
            _row(cid, previous, sample, host_memory)
            for cid, (previous, sample) in sorted(self.samples.items())
        ]

    async def until_two_samples(self) -> None:
        """Until every task followed has two samples (or ended)."""
        while any(
            cid not in self.samples or self.samples[cid][0] is None for cid in self.following
        ):
            await self.changed.wait()


async def _tasks(client: Client, names: list[str]) -> dict[str, Task]:
    """The tasks to follow: the named containers' (each must be running),
    or every task of the namespace."""
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


def _show(rows: list[_Row], args: argparse.Namespace, *, redraw: bool) -> None:
    if args.format == "json":
        for row in rows:
            print(json.dumps(row.record()))
    else:
        text = table(_HEADERS, [r.cells() for r in rows])
        print(f"\x1b[H\x1b[2J{text}" if redraw else text)
    sys.stdout.flush()


async def _watch(client: Client, args: argparse.Namespace, tg: TaskGroup) -> None:
    host_memory = _host_memory()
    board = _Board(args.interval)
    for cid, task in (await _tasks(client, args.containers)).items():
        board.follow(tg, cid, task)
    if args.no_stream:
        with anyio.move_on_after(args.interval * _SECOND_SAMPLE):
            await board.until_two_samples()
        _show(board.rows(host_memory), args, redraw=False)
        return
    redraw = args.format != "json" and sys.stdout.isatty()
    with anyio.move_on_after(args.interval * _SECOND_SAMPLE):
        await board.until_two_samples()
    while True:
        _show(board.rows(host_memory), args, redraw=redraw)
        if args.containers and not board.following:
            return  # every container named has stopped
        await anyio.sleep(args.interval)
        if not args.containers:
            for cid, task in (await _tasks(client, [])).items():
                board.follow(tg, cid, task)  # containers started meanwhile
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
            await _watch(client, args, tg)
            tg.cancel_scope.cancel()
    return 0
