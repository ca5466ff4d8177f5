"""Event-to-callback latency: from containerd stamping a task event to the
application's ``process_event`` running, over real PAUSED/RESUMED events."""

from __future__ import annotations

import datetime
import statistics
from pathlib import Path
from typing import Any

import anyio

import supervisor


class _Recorder:
    def __init__(self, want: int) -> None:
        self.latencies: list[float] = []
        self.want = want
        self.done = anyio.Event()

    async def process_event(
        self, container_id: str, event: supervisor.EventType, info: supervisor.EventInfo
    ) -> None:
        if event in (supervisor.EventType.PAUSED, supervisor.EventType.RESUMED) and info.timestamp:
            now = datetime.datetime.now(datetime.UTC)
            self.latencies.append((now - info.timestamp).total_seconds())
            if len(self.latencies) >= self.want:
                self.done.set()


async def measure_event_latency(
    address: str, rootfs: str, *, events: int, state_dir: Path
) -> dict[str, Any]:
    recorder = _Recorder(events)
    spec = supervisor.default_spec(["sleep", "3600"], rootfs)
    async with supervisor.connect(
        address, namespace="bench-latency", backend=recorder, state_dir=state_dir
    ) as client:
        container = await client.new_container("lat", spec)
        task = await container.new_task()
        await task.start()
        try:
            with anyio.fail_after(300):
                for _ in range((events + 1) // 2):
                    await task.pause()
                    await task.resume()
                await recorder.done.wait()
        finally:
            await task.delete(force=True)
            await container.delete()
    lat = sorted(recorder.latencies)
    return {
        "events": len(lat),
        "median_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000,
        "max_ms": lat[-1] * 1000,
    }
