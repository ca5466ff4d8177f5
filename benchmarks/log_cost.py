"""What each way of writing ``log_path`` costs, side by side in one run.

- start-up: ``new_task`` + ``start`` + ``wait`` + ``delete`` of ``/bin/true``
  with ``log_writer="client"``, with ``"logger"`` (each in the raw and the
  CRI ``log_format``) and with plain pipes, interleaved round by round
  (median ms per container);
- the logger's memory: the resident set of one shim-run logger process
  (raw and CRI);
- reading back: lines per second of ``supervisor.read_logs`` over a CRI file;
- how long an application may be down: the bytes a process writing without
  pause gets out (``wchar`` of ``/proc/<pid>/io``) before it blocks, with
  ``log_writer="client"`` and no client copying.

``python -m benchmarks.log_cost --address SOCK --rootfs DIR [--rounds N]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

import supervisor


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _loggers(state: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(state / ".logger").encode() in cmdline:
                found.append(int(entry.name))
    return found


async def _lifecycle(client: supervisor.Client, rootfs: str, tmp: Path, mode: str) -> float:
    cid = f"lc-{mode}-{uuid.uuid4().hex[:8]}"
    spec = supervisor.default_spec(["/bin/true"], rootfs)
    t0 = time.perf_counter()
    container = await client.new_container(cid, spec)
    if mode == "pipe":
        task = await container.new_task(output="null")
    else:
        writer, _, fmt = mode.partition("-")
        task = await container.new_task(
            log_path=tmp / f"{cid}.log",
            log_writer=writer,  # type: ignore[arg-type]
            log_format=fmt or "raw",  # type: ignore[typeddict-item]
        )
    await task.start()
    await task.wait()
    await task.delete()
    await container.delete()
    return time.perf_counter() - t0


async def _logger_rss(
    client: supervisor.Client, rootfs: str, tmp: Path, state: Path, fmt: str
) -> int:
    spec = supervisor.default_spec(["sleep", "30"], rootfs)
    container = await client.new_container(f"rss-{fmt}", spec)
    task = await container.new_task(
        log_path=tmp / f"rss-{fmt}.log",
        log_writer="logger",
        log_format=fmt,  # type: ignore[typeddict-item]
    )
    try:
        await task.start()
        return max((_rss_kib(p) for p in _loggers(state)), default=0)
    finally:
        await task.delete(force=True)
        await container.delete()


async def _buffered_before_blocking(
    address: str, namespace: str, state: Path, rootfs: str, tmp: Path
) -> int:
    """Bytes a process writing flat out gets into the FIFOs while no client copies."""
    spec = supervisor.default_spec(["head", "-c", "100000000", "/dev/zero"], rootfs)
    async with supervisor.connect(address, namespace=namespace, state_dir=state) as first:
        container = await first.new_container("blocked", spec)
        task = await container.new_task(log_path=tmp / "blocked.log")
        pid = task.pid
        await task.start()
        pid = task.pid
    # The first client is gone: nothing copies. Wait until the writer stalls.
    last, steady = -1, 0
    while steady < 10:
        await anyio.sleep(0.1)
        io = Path(f"/proc/{pid}/io").read_text()
        wchar = int(next(line.split()[1] for line in io.splitlines() if line.startswith("wchar")))
        steady = steady + 1 if wchar == last else 0
        last = wchar
    async with supervisor.connect(address, namespace=namespace, state_dir=state) as second:
        for container, task in await second.restore():
            if task is not None:
                await task.delete(force=True)
            await container.delete()
    return last


async def _read_rate(tmp: Path, lines: int = 200_000) -> float:
    """Lines per second that ``read_logs`` gives back from a CRI file."""
    from supervisor.fifo._log_writer import FormattedLog

    path = tmp / "read.log"
    out = FormattedLog(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), fmt="cri")
    chunk = b"".join(
        b"a line of output, about sixty bytes long, number %07d\n" % i for i in range(1000)
    )
    for i in range(lines // 1000):
        out.write("stdout" if i % 2 else "stderr", chunk)
    out.close()
    t0 = time.perf_counter()
    count = 0
    async for _ in supervisor.read_logs(path):
        count += 1
    return count / (time.perf_counter() - t0)


async def main(address: str, rootfs: str, rounds: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="sv-logcost-"))
    state = tmp / "state"
    namespace = f"bench-logcost-{uuid.uuid4().hex[:6]}"
    times: dict[str, list[float]] = {
        "pipe": [],
        "client": [],
        "logger": [],
        "client-cri": [],
        "logger-cri": [],
    }
    async with supervisor.connect(address, namespace=namespace, state_dir=state) as client:
        for mode in times:  # warm-up
            await _lifecycle(client, rootfs, tmp, mode)
        for _ in range(rounds):
            for mode in times:
                times[mode].append(await _lifecycle(client, rootfs, tmp, mode))
        rss = await _logger_rss(client, rootfs, tmp, state, "raw")
        rss_cri = await _logger_rss(client, rootfs, tmp, state, "cri")
    buffered = await _buffered_before_blocking(address, namespace, state, rootfs, tmp)
    med = {mode: statistics.median(v) for mode, v in times.items()}
    return {
        "log_lifecycle_ms": {mode: round(v * 1000, 2) for mode, v in med.items()},
        "log_lifecycle_ratio": {
            f"{mode}/pipe": round(med[mode] / med["pipe"], 3) for mode in med if mode != "pipe"
        },
        "logger_rss_kib": rss,
        "logger_cri_rss_kib": rss_cri,
        "read_logs_lines_per_s": round(await _read_rate(tmp)),
        "client_buffered_bytes_before_blocking": buffered,
        "rounds": rounds,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--rootfs", required=True)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(json.dumps(anyio.run(main, args.address, args.rootfs, args.rounds), indent=2))
