"""How fast an embedded containerd comes back, as a connected client sees it.

Each round runs a :class:`supervisor.Daemon` with its default timings and one
client holding a running container, then

- SIGKILLs containerd and times until the client's next call succeeds (the
  aim is 2 s; moby's supervisor needs about 10 s) and until the running
  container can be exec'd into again;
- SIGSTOPs containerd (alive, not answering) and times until it is replaced
  and the client answers again (moby never replaces it).
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

import supervisor
from supervisor import errors


async def _until_answers(client: supervisor.Client, started: float) -> float:
    with anyio.fail_after(60):
        while True:
            try:
                await client.version()
                return time.perf_counter() - started
            except errors.Unavailable:
                await anyio.sleep(0.005)


async def _until_exec_works(task: supervisor.Task, started: float) -> float:
    with anyio.fail_after(60):
        while True:
            try:
                proc = await task.exec(
                    f"p{uuid.uuid4().hex[:8]}", supervisor.process_spec(["true"])
                )
                await proc.start()
                await proc.wait()
                await proc.delete()
                return time.perf_counter() - started
            except (errors.Unavailable, errors.NotFound, errors.Unknown):
                await anyio.sleep(0.005)


async def measure_daemon_recovery(rootfs: str, rounds: int = 5) -> dict[str, Any]:
    """Each round on a fresh Daemon (same directories, default timings): the
    restart back-off grows on consecutive crashes by design, and a crash loop
    is not what these figures are about."""
    base = Path(tempfile.mkdtemp(prefix="sv-bdmn-", dir="/tmp"))
    ns = f"bench-recovery-{os.getpid()}"
    kill_answer: list[float] = []
    kill_exec: list[float] = []
    stop_answer: list[float] = []
    try:
        for r in range(rounds):
            async with supervisor.Daemon(base / "root", base / "state") as daemon:
                async with supervisor.connect(
                    daemon.address, namespace=ns, state_dir=base / "sv"
                ) as client:
                    if r == 0:
                        container = await client.new_container(
                            "held", supervisor.default_spec(["sleep", "3600"], rootfs)
                        )
                        task = await container.new_task()
                        await task.start()
                    else:  # the shim outlived the last daemon, as in production
                        container = await client.load_container("held")
                        task = await container.task()
                    pid = daemon.pid
                    assert pid is not None
                    started = time.perf_counter()
                    os.kill(pid, signal.SIGKILL)
                    kill_answer.append(await _until_answers(client, started))
                    kill_exec.append(await _until_exec_works(task, started))
                    pid = daemon.pid
                    assert pid is not None
                    before = daemon.restarts
                    started = time.perf_counter()
                    os.kill(pid, signal.SIGSTOP)
                    with anyio.fail_after(60):
                        while daemon.restarts == before:
                            await anyio.sleep(0.005)
                    stop_answer.append(await _until_answers(client, started))
                    if r == rounds - 1:
                        with anyio.CancelScope(shield=True):
                            await task.kill(signal.SIGKILL)
                            await task.wait()
                            await task.delete()
                            await container.delete()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {
        "sigkill_to_client_answer_median_s": statistics.median(kill_answer),
        "sigkill_to_client_answer_max_s": max(kill_answer),
        "sigkill_to_exec_in_running_container_median_s": statistics.median(kill_exec),
        "sigstop_to_client_answer_median_s": statistics.median(stop_answer),
        "rounds": rounds,
    }
