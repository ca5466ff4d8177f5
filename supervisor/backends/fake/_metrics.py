"""The fake's answers about a task's processes and resources: pids and
stats samples, made up from its state (nothing runs)."""

from __future__ import annotations

from collections.abc import Collection

from ... import errors
from ..._types import ProcessInfo, ProcessState
from ...stats._model import CpuStats, MemoryStats, PidsStats, Stats
from ...stats._summary import ProcessSummary
from ._connection import Connection
from ._state import _now, _Process, _Task

__all__ = ["MetricsCalls"]


class MetricsCalls:
    """The Transport's pids and stats calls, for :class:`FakeTransport`."""

    _conn: Connection

    async def pids(self, container_id: str) -> list[ProcessInfo]:
        await self._conn.before("pids", container_id)
        task = self._conn.task(container_id)
        await self._conn.after("pids")
        return [ProcessInfo(p.pid) for p in task.processes() if p.pid and _alive(p)]

    async def process_summaries(self, container_id: str) -> list[ProcessSummary]:
        await self._conn.before("pids", container_id)
        task = self._conn.task(container_id)
        await self._conn.after("pids")
        return [
            ProcessSummary(pid=p.pid, exec_id="" if p.is_init else p.process_id)
            for p in task.processes()
            if p.pid and _alive(p)
        ]

    def _sample(self, task: _Task) -> Stats:
        task.cpu_ns += 1_000_000
        live = sum(1 for p in task.processes() if p.pid and _alive(p))
        memory = task.resources.get("memory")
        pids = task.resources.get("pids")
        limit = memory.get("limit") if isinstance(memory, dict) else None
        pid_limit = pids.get("limit") if isinstance(pids, dict) else None
        return Stats(
            memory=MemoryStats(
                usage=live << 20,
                limit=limit if isinstance(limit, int) and limit > 0 else None,
                working_set=live << 20,
                rss=live << 20,
                max_usage=live << 20,
                failcnt=0,
                oom_kills=task.oom_kills,
            ),
            cpu=CpuStats(total_usage=task.cpu_ns, user_usage=task.cpu_ns, per_cpu_usage=()),
            pids=PidsStats(
                current=live,
                limit=pid_limit if isinstance(pid_limit, int) and pid_limit > 0 else None,
            ),
            cgroup_version=1,
            read_at=_now(),
        )

    async def stats(self, container_id: str) -> Stats:
        await self._conn.before("stats", container_id)
        # Metrics lists tasks directly: an orphaned task is still sampled.
        task = self._conn.ns.tasks.get(container_id)
        if task is None:
            raise errors.NotFound("no metrics for the task", container_id=container_id)
        sample = self._sample(task)
        await self._conn.after("stats")
        return sample

    async def metrics(self, container_ids: Collection[str]) -> dict[str, Stats]:
        await self._conn.before("metrics")
        tasks = self._conn.ns.tasks
        wanted = sorted(set(container_ids))
        samples = {cid: self._sample(tasks[cid]) for cid in wanted if cid in tasks}
        await self._conn.after("metrics")
        return samples


def _alive(proc: _Process) -> bool:
    return proc.state is not ProcessState.STOPPED and not (
        not proc.is_init and proc.state is ProcessState.CREATED
    )
