"""Side-by-side figures: the library, the raw stubs (the floor), and ctr.

Every figure is a median over rounds; the three ways are interleaved round by
round so that the shared machine's noise hits them alike.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import shutil
import statistics
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from grpclib.events import SendRequest, listen

import supervisor
from benchmarks.bench_queue import bench_queue_throughput
from benchmarks.floor import Floor
from benchmarks.stalls import StallMonitor, stall_monitor

TRUE = ["/bin/true"]


def _spec(rootfs: str) -> dict[str, Any]:
    return supervisor.default_spec(TRUE, rootfs)


async def _in_flight(n: int, total: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Run ``total`` calls of ``one`` with at most ``n`` at a time; seconds per call."""
    sem = anyio.Semaphore(n)
    start = time.perf_counter()

    async def slot(i: int) -> None:
        async with sem:
            await one(i)

    async with anyio.create_task_group() as tg:
        for i in range(total):
            tg.start_soon(slot, i)
    return (time.perf_counter() - start) / total


class Bench:
    def __init__(self, address: str, rootfs: str, rounds: int, scale: float) -> None:
        self.address = address
        self.rootfs = rootfs
        self.rounds = rounds
        self.scale = scale
        self.results: dict[str, Any] = {}
        self.tmp = Path(tempfile.mkdtemp(prefix="sv-bench-"))

    def total(self, n: int) -> int:
        base = {1: 30, 10: 100, 50: 200}[n]
        return max(n, int(base * self.scale))

    # -- the three ways of running /bin/true ----------------------------------

    async def library_lifecycle(self, client: supervisor.Client, cid: str) -> None:
        container = await client.new_container(cid, self.spec)
        task = await container.new_task()
        await task.start()
        status = await task.wait()
        await task.delete()
        await container.delete()
        assert status.exit_code == 0

    async def floor_lifecycle(self, floor: Floor, cid: str) -> None:
        assert await floor.lifecycle(cid, self.spec) == 0

    async def ctr_lifecycle(self, ns: str, cid: str) -> None:
        proc = await anyio.run_process(
            [
                "ctr",
                "-a",
                self.address,
                "-n",
                ns,
                "run",
                "--rm",
                "--rootfs",
                self.rootfs,
                cid,
                *TRUE,
            ],
            check=True,
        )
        assert proc.returncode == 0

    # -- figures ----------------------------------------------------------------

    async def lifecycles(self) -> None:
        self.spec = _spec(self.rootfs)
        ns = f"bench-{uuid.uuid4().hex[:6]}"
        rows: dict[str, list[float]] = collections.defaultdict(list)
        cpu: dict[str, list[float]] = collections.defaultdict(list)
        # The loop's stalls at 50 in flight, for both ways alike (the
        # monitor's own wake-ups cost both the same).
        stalls: dict[str, list[StallMonitor]] = collections.defaultdict(list)
        async with supervisor.connect(
            self.address, namespace=ns, state_dir=self.tmp / "lib"
        ) as client:
            floor = Floor(self.address, ns + "-floor", self.tmp / "floor")
            try:
                # warm up connections, shims' binaries in page cache, etc.
                await self.library_lifecycle(client, "warm-lib")
                await self.floor_lifecycle(floor, "warm-floor")
                for r in range(self.rounds):
                    for k, n in enumerate((1, 10, 50)):
                        total = self.total(n)

                        async def lib(i: int, r: int = r, n: int = n) -> None:
                            await self.library_lifecycle(client, f"l{r}-{n}-{i}")

                        async def flo(i: int, r: int = r, n: int = n) -> None:
                            await self.floor_lifecycle(floor, f"f{r}-{n}-{i}")

                        # Back to back, and which goes first alternates, so
                        # that drift on the shared machine favours neither.
                        ways = [("library", lib), ("floor", flo)]
                        if (r + k) % 2:
                            ways.reverse()
                        for way, one in ways:
                            async with contextlib.AsyncExitStack() as stack:
                                if n == 50:
                                    stalls[way].append(
                                        await stack.enter_async_context(stall_monitor())
                                    )
                                c0 = time.process_time()
                                rows[f"{way}/{n}"].append(await _in_flight(n, total, one))
                                cpu[f"{way}/{n}"].append((time.process_time() - c0) / total)
                        if n <= 10:
                            rows[f"ctr/{n}"].append(
                                await _in_flight(
                                    n,
                                    max(n, total // 2),
                                    lambda i, r=r, n=n: self.ctr_lifecycle(
                                        ns + "-ctr", f"c{r}-{n}-{i}"
                                    ),
                                )
                            )
            finally:
                floor.close()
        self.results["lifecycle_seconds"] = {k: statistics.median(v) for k, v in rows.items()}
        self.results["lifecycle_rounds"] = dict(rows)
        self.results["cpu_seconds_per_lifecycle"] = {
            k: statistics.median(v) for k, v in cpu.items()
        }
        self.results["loop_stalls_at_50"] = {
            way: stall_figures(monitors) for way, monitors in stalls.items()
        }

    async def execs(self) -> None:
        ns = f"bench-x-{uuid.uuid4().hex[:6]}"
        rows: dict[str, list[float]] = collections.defaultdict(list)
        proc_spec = supervisor.process_spec(TRUE)
        spec = supervisor.default_spec(["sleep", "3600"], self.rootfs)
        async with supervisor.connect(
            self.address, namespace=ns, state_dir=self.tmp / "xlib"
        ) as client:
            container = await client.new_container("host", spec)
            task = await container.new_task()
            await task.start()
            floor = Floor(self.address, ns, self.tmp / "xfloor")

            async def lib_exec(i: int) -> None:
                p = await task.exec(f"l{i}", proc_spec)
                await p.start()
                code = (await p.wait()).exit_code
                await p.delete()
                assert code == 0

            async def floor_exec(i: int) -> None:
                assert await floor.exec("host", f"f{i}", proc_spec) == 0

            async def ctr_exec(i: int) -> None:
                await anyio.run_process(
                    [
                        "ctr",
                        "-a",
                        self.address,
                        "-n",
                        ns,
                        "task",
                        "exec",
                        "--exec-id",
                        f"c{i}",
                        "host",
                        *TRUE,
                    ],
                    check=True,
                )

            try:
                k = 0
                for r in range(self.rounds):
                    for j, n in enumerate((1, 10)):
                        total = self.total(n)
                        ways = [("library", lib_exec), ("floor", floor_exec)]
                        if (r + j) % 2:  # as for lifecycles: neither always first
                            ways.reverse()
                        for name, fn in [*ways, ("ctr", ctr_exec)]:
                            base = k
                            k += total
                            rows[f"{name}/{n}"].append(
                                await _in_flight(n, total, lambda i, fn=fn, base=base: fn(base + i))
                            )
            finally:
                floor.close()
                await task.delete(force=True)
                await container.delete()
        self.results["exec_seconds"] = {k: statistics.median(v) for k, v in rows.items()}
        self.results["exec_rounds"] = dict(rows)

    async def rpc_counts(self) -> None:
        """RPCs per operation, counted on the library's own channel."""
        ns = f"bench-rpc-{uuid.uuid4().hex[:6]}"
        counts: collections.Counter[str] = collections.Counter()
        async with supervisor.connect(
            self.address, namespace=ns, state_dir=self.tmp / "rpc"
        ) as client:
            channel = client._session.raw_transport._channel  # type: ignore[attr-defined]

            async def on_send(event: SendRequest) -> None:
                counts[event.method_name.rsplit(".", 1)[-1]] += 1

            listen(channel, SendRequest, on_send)

            async def measure(fn: Callable[[], Awaitable[Any]]) -> dict[str, int]:
                counts.clear()
                result = await fn()
                measure.last = result  # type: ignore[attr-defined]
                return dict(counts)

            out: dict[str, dict[str, int]] = {}
            spec = supervisor.default_spec(["sleep", "3600"], self.rootfs)
            container = None
            out["create"] = await measure(lambda: client.new_container("rpc", spec))
            container = measure.last  # type: ignore[attr-defined]
            task = await container.new_task()
            counts.clear()
            await task.start()
            out["start"] = dict(counts)
            out["stats"] = await measure(task.stats)
            proc_spec = supervisor.process_spec(TRUE)

            async def exec_life() -> None:
                p = await task.exec("x", proc_spec)
                await p.start()
                await p.wait()
                await p.delete()

            out["exec (whole life)"] = await measure(exec_life)
            out["kill"] = await measure(lambda: task.kill(9))
            out["wait"] = await measure(task.wait)
            counts.clear()
            await task.delete()
            await container.delete()
            out["delete (task + container)"] = dict(counts)

            async def whole() -> None:
                c = await client.new_container("rpc2", _spec(self.rootfs))
                t = await c.new_task()
                await t.start()
                await t.wait()
                await t.delete()
                await c.delete()

            out["lifecycle (create..delete)"] = await measure(whole)
        self.results["rpcs"] = {k: sum(v.values()) for k, v in out.items()}
        self.results["rpc_methods"] = out

    async def memory(self, live: int = 100) -> None:
        """Python memory the library holds per live (running) container."""
        ns = f"bench-mem-{uuid.uuid4().hex[:6]}"
        spec = supervisor.default_spec(["sleep", "3600"], self.rootfs)
        async with supervisor.connect(
            self.address, namespace=ns, state_dir=self.tmp / "mem"
        ) as client:
            # one first, so one-off caches (codecs, loggers) are not counted
            warm = await client.new_container("warm", spec)
            wt = await warm.new_task()
            await wt.start()
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            held = []
            for i in range(live):
                c = await client.new_container(f"m{i}", spec)
                t = await c.new_task()
                await t.start()
                held.append((c, t))
            await anyio.sleep(0.5)  # let the START events land in the tracker
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            for c, t in [*held, (warm, wt)]:
                await t.delete(force=True)
                await c.delete()
        self.results["memory_bytes_per_live_container"] = (after - before) / live

    async def queue(self) -> None:
        self.results["queue"] = await bench_queue_throughput()

    async def event_latency(self, events: int = 1000) -> None:
        """From containerd publishing a task event to the backend's callback."""
        from benchmarks.event_latency import measure_event_latency

        self.results["event_latency"] = await measure_event_latency(
            self.address, self.rootfs, events=events, state_dir=self.tmp / "lat"
        )

    async def daemon_recovery(self) -> None:
        from benchmarks.daemon_recovery import measure_daemon_recovery

        self.results["daemon_recovery"] = await measure_daemon_recovery(self.rootfs)

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def stall_figures(monitors: list[StallMonitor]) -> dict[str, float]:
    """The worst stall of every round, the median round's, and the 99th
    percentile of all wake-ups; ms."""
    rounds = [m.summary() for m in monitors]
    lateness = sorted(x for m in monitors for x in m.lateness)
    return {
        "worst_ms": max(r["worst_ms"] for r in rounds),
        "worst_own_ms": max(r["worst_own_ms"] for r in rounds),
        "median_round_worst_ms": statistics.median(r["worst_ms"] for r in rounds),
        "p99_ms": lateness[int(0.99 * (len(lateness) - 1))] * 1000 if lateness else 0.0,
        "wakeups": float(len(lateness)),
    }


def paired_ratio(results: dict[str, Any], section: str, a: str, b: str) -> float | None:
    """The median over rounds of a/b within each round: the two ran back to
    back, so each round's ratio cancels what the machine did that round."""
    rounds = results.get(section, {})
    xs, ys = rounds.get(a), rounds.get(b)
    if not xs or not ys or len(xs) != len(ys):
        return None
    return float(statistics.median(x / y for x, y in zip(xs, ys, strict=True)))


def ratio(results: dict[str, Any], section: str, a: str, b: str) -> float | None:
    sec = results.get(section, {})
    if a in sec and b in sec and sec[b]:
        return float(sec[a] / sec[b])
    return None


async def collect(
    address: str, rootfs: str, *, rounds: int, scale: float, only: set[str] | None = None
) -> dict[str, Any]:
    bench = Bench(address, rootfs, rounds, scale)
    steps = {
        "rpcs": bench.rpc_counts,
        "lifecycle": bench.lifecycles,
        "exec": bench.execs,
        "memory": bench.memory,
        "queue": bench.queue,
        "latency": bench.event_latency,
        "daemon": bench.daemon_recovery,
    }
    try:
        for name, step in steps.items():
            if only and name not in only:
                continue
            t0 = time.perf_counter()
            await step()
            print(f"  {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        bench.cleanup()
    return bench.results
