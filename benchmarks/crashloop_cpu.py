"""What a crash-looping container costs the library process that supervises it.

A container whose process exits 1 at once, with ``restart="always"`` and a
small cap on the back-off (so that a run of seconds sees many restarts): once
the delay has reached its cap, the CPU time of this process (user + system,
every thread) is measured over a window, with the restarts made in it.

Reported: CPU % of one core at that cap, CPU ms per restart, and what that
comes to at docker's cap of 60 s (one restart a minute), the figure the
issue bounds (< 1 %). Also the cost of the supervision machinery alone: the
same window with a container that runs and is probed once a second.

``python -m benchmarks.crashloop_cpu --address SOCK --rootfs DIR [--cap S] [--window S]``
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from typing import Any

import anyio

import supervisor


class _Restarts:
    def __init__(self) -> None:
        self.count = 0
        self.last_delay = 0.0
        self.changed = anyio.Event()

    async def process_event(
        self, container_id: str, event: supervisor.EventType, info: supervisor.EventInfo
    ) -> None:
        if event is supervisor.EventType.RESTART:
            self.count += 1
            self.last_delay = info.delay
            self.changed.set()
            self.changed = anyio.Event()


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


async def _crashloop(address: str, rootfs: str, cap: float, window: float) -> dict[str, Any]:
    backend = _Restarts()
    ns = f"bench-crashloop-{uuid.uuid4().hex[:8]}"
    async with supervisor.connect(address, namespace=ns, backend=backend) as client:
        spec = supervisor.default_spec(["sh", "-c", "exit 1"], rootfs)
        policy = supervisor.RestartPolicy("always", initial_delay=0.05, max_delay=cap)
        container = await client.new_container("loop", spec, restart=policy)
        task = await container.new_task(output="null")
        await task.start()
        try:
            with anyio.fail_after(60 + 10 * cap):
                while backend.last_delay < cap:
                    await backend.changed.wait()
            first, cpu0, t0 = backend.count, _cpu(), time.perf_counter()
            await anyio.sleep(window)
            cpu, wall, restarts = _cpu() - cpu0, time.perf_counter() - t0, backend.count - first
        finally:
            await container.delete(force=True)
    per_restart_ms = 1000 * cpu / max(restarts, 1)
    return {
        "cap_s": cap,
        "window_s": round(wall, 2),
        "restarts": restarts,
        "cpu_s": round(cpu, 3),
        "cpu_percent_of_one_core": round(100 * cpu / wall, 2),
        "cpu_ms_per_restart": round(per_restart_ms, 2),
        "cpu_percent_at_60s_cap": round(100 * per_restart_ms / 1000 / 60, 4),
    }


async def _probed(address: str, rootfs: str, window: float) -> dict[str, Any]:
    ns = f"bench-probed-{uuid.uuid4().hex[:8]}"
    async with supervisor.connect(address, namespace=ns) as client:
        spec = supervisor.default_spec(["sleep", "3600"], rootfs)
        check = supervisor.HealthCheck(["CMD", "true"], interval=1.0)
        container = await client.new_container("steady", spec, restart="always", healthcheck=check)
        task = await container.new_task(output="null")
        await task.start()
        try:
            await task.wait_healthy(timeout=30)
            cpu0, t0 = _cpu(), time.perf_counter()
            await anyio.sleep(window)
            cpu, wall = _cpu() - cpu0, time.perf_counter() - t0
        finally:
            await container.delete(force=True)
    return {
        "probe_interval_s": 1.0,
        "window_s": round(wall, 2),
        "cpu_percent_of_one_core": round(100 * cpu / wall, 2),
    }


async def main(address: str, rootfs: str, cap: float = 0.5, window: float = 10.0) -> dict[str, Any]:
    return {
        "crashloop": await _crashloop(address, rootfs, cap, window),
        "probed": await _probed(address, rootfs, window),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--rootfs", required=True)
    parser.add_argument("--cap", type=float, default=0.5)
    parser.add_argument("--window", type=float, default=10.0)
    args = parser.parse_args()
    result = anyio.run(main, args.address, args.rootfs, args.cap, args.window)
    print(json.dumps(result, indent=2))
