"""Checkpoint and restore with CRIU: the library against ``ctr`` on the same
kind of container (a busybox image's, counting in a shell loop).

- library: ``task.checkpoint(name, exit=True)`` (the dump stops the task);
  then, its task deleted, ``client.restore_checkpoint(name, id)`` into the
  same container, until the restored task runs;
- ctr: ``ctr containers checkpoint --task --rw`` (the task runs on), then,
  the container deleted, ``ctr containers restore --live --rw`` into its id,
  until containerd lists the restored task running. Each is a whole ``ctr``
  command, its start-up included.

ctr saves the read-write layer as well (``--rw``); the library's checkpoint
of an image's container does not (docs/checkpoint.md). Rounds are
interleaved, alternating which side goes first; medians in seconds, and
library/ctr as the median of the per-round ratios. CRIU works only where
``criu check`` passes: in the cgroup v2 VM lane, which ``make bench`` boots
for it (``python -m benchmarks.checkpoint_vm``). Elsewhere it reports why it
did not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

import supervisor
from supervisor.domain._criu import find_criu

COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done"
# The one line of stdout the host takes the figures from (the VM's console
# carries the guest's other output on the same stream).
MARK = "@@checkpoint-cost@@ "
STEPS = ("checkpoint", "restore")
# Counted rounds (after one warm-up): about 15 s each in the VM.
ROUNDS = 8
# What each side's figures time, carried with them into the report.
SIDES = {
    "library": "`task.checkpoint(name, exit=True)` (CRIU's dump stops the task; "
    "the read-write layer is not saved); then, the task deleted, "
    "`client.restore_checkpoint(name, id)` into the same container, until it "
    "returns a running task",
    "ctr": "`ctr containers checkpoint --task --rw` (the task runs on; its "
    "read-write layer saved too); then, the container deleted, `ctr containers "
    "restore --live --rw` into its id (a new container from the checkpoint), until "
    "containerd lists the task running; each a whole `ctr` command, its start-up "
    "included",
}


def criu_unusable() -> str | None:
    criu = find_criu()
    if criu is None:
        return "CRIU is not installed"
    done = subprocess.run([criu, "check"], capture_output=True, check=False, timeout=120)
    if done.returncode != 0:
        said = (done.stderr + done.stdout).decode(errors="replace").strip().splitlines()
        return f"criu check fails: {said[-1] if said else done.returncode}"
    return None


def _versions(containerd: str) -> dict[str, str]:
    out = {"containerd": containerd}
    for tool, argv in (("runc", ["runc", "--version"]), ("criu", [find_criu() or "criu", "-V"])):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(argv, capture_output=True, check=False, timeout=60)
            # "runc version 1.1.5+ds1 ...", "Version: 3.17.1"
            said, at = done.stdout.decode(errors="replace").split(), 2 if tool == "runc" else 1
            out[tool] = said[at] if len(said) > at else "?"
    return out


async def _ctr(address: str, namespace: str, *args: str) -> None:
    done = await anyio.run_process(["ctr", "-a", address, "-n", namespace, *args], check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ctr {' '.join(args)}: {done.stderr.decode(errors='replace')}")


async def _ctr_restore(client: supervisor.Client, address: str, namespace: str, r: int) -> float:
    """ctr 1.6's restore stays until the task exits (it has no --detach): the
    time until containerd lists the restored task running (asked every
    20 ms), after which it is killed and ctr ends."""
    argv = ["ctr", "-a", address, "-n", namespace, "containers", "restore", "--live", "--rw"]
    t0 = time.perf_counter()
    async with await anyio.open_process(
        [*argv, "cp-ctr", f"ctr-{r}"], stdin=subprocess.DEVNULL, stdout=None, stderr=None
    ) as ctr:
        while True:
            try:
                record = await client._session.transport.get_task("cp-ctr")
            except supervisor.errors.NotFound:
                record = None
            if record is not None and record.state is supervisor.ProcessState.RUNNING:
                took = time.perf_counter() - t0
                break
            if ctr.returncode is not None:
                raise RuntimeError(f"ctr containers restore ended with {ctr.returncode}")
            await anyio.sleep(0.02)
        await _ctr(address, namespace, "tasks", "kill", "-s", "KILL", "cp-ctr")
        await ctr.wait()
    # ctr leaves the stopped task behind.
    with contextlib.suppress(supervisor.errors.NotFound):
        await client._session.transport.delete_task("cp-ctr")
    return took


async def _running(task: supervisor.Task) -> None:
    """Once the restored shell has written its count again."""
    probe = await task.exec(None, ["cat", "/tmp/count"])
    await probe.start()
    await probe.wait()
    await probe.delete()


async def _started(container: supervisor.Container) -> supervisor.Task:
    task: supervisor.Task = await container.new_task(output="null")
    await task.start()
    return task


class _Rounds:
    """The two sides, each holding a running task between its rounds."""

    def __init__(self, client: supervisor.Client, address: str, namespace: str) -> None:
        self.client, self.address, self.namespace = client, address, namespace
        self.times: dict[str, list[float]] = {
            f"{side}/{step}": [] for side in ("library", "ctr") for step in STEPS
        }

    async def setup(self) -> None:
        # ctr's container is made by the library too: ctr's checkpoint needs
        # the image the record names, which the library's records carry.
        made = [
            await self.client.new_container(cid, image="bench/criu:1", args=["sh", "-c", COUNTER])
            for cid in ("cp-lib", "cp-ctr")
        ]
        self.lib = await _started(made[0])
        self.other = await _started(made[1])

    async def library(self, r: int) -> None:
        t0 = time.perf_counter()
        await self.lib.checkpoint(f"lib-{r}", exit=True)
        self.times["library/checkpoint"].append(time.perf_counter() - t0)
        await self.lib.wait()
        await self.lib.delete()
        t0 = time.perf_counter()
        _, self.lib = await self.client.restore_checkpoint(f"lib-{r}", "cp-lib", output="null")
        self.times["library/restore"].append(time.perf_counter() - t0)
        await _running(self.lib)
        await self.client.remove_checkpoint(f"lib-{r}")

    async def ctr(self, r: int) -> None:
        address, namespace = self.address, self.namespace
        t0 = time.perf_counter()
        await _ctr(address, namespace, "containers", "checkpoint", "--task", "--rw",
                   "cp-ctr", f"ctr-{r}")  # fmt: skip
        self.times["ctr/checkpoint"].append(time.perf_counter() - t0)
        await self.other.delete(force=True)
        # Its snapshot goes with it: ctr's restore makes one of that key.
        await (await self.client.load_container("cp-ctr")).delete()
        self.times["ctr/restore"].append(await _ctr_restore(self.client, address, namespace, r))
        await _ctr(address, namespace, "images", "rm", "--sync", f"ctr-{r}")
        # A running task again for the next round's checkpoint.
        self.other = await _started(await self.client.load_container("cp-ctr"))

    async def teardown(self) -> None:
        await self.lib.delete(force=True)
        await self.other.delete(force=True)
        for cid in ("cp-lib", "cp-ctr"):
            await (await self.client.load_container(cid)).delete()
        await self.client.remove_image("bench/criu:1")


def summary(times: dict[str, list[float]]) -> dict[str, Any]:
    """Medians, and library/ctr per step as the median of the per-round ratios
    (both sides ran back to back in a round) beside the ratio of the medians."""
    medians = {k: statistics.median(v) for k, v in times.items()}
    paired = {
        step: statistics.median(
            a / b for a, b in zip(times[f"library/{step}"], times[f"ctr/{step}"], strict=True)
        )
        for step in STEPS
    }
    of_medians = {step: medians[f"library/{step}"] / medians[f"ctr/{step}"] for step in STEPS}
    return {
        "checkpoint_seconds": medians,
        "checkpoint_rounds": times,
        "library_over_ctr": paired,
        "library_over_ctr_of_medians": of_medians,
    }


async def checkpoint_cost(address: str, rootfs: str, rounds: int) -> dict[str, Any]:
    from tests._image_layout import image_tar

    namespace = f"bench-criu-{uuid.uuid4().hex[:8]}"
    async with supervisor.connect(address, namespace=namespace) as client:
        with tempfile.TemporaryDirectory() as tmp:
            tar = image_tar(Path(tmp) / "img.tar", "bench/criu:1", {"Cmd": ["sh"]})
            await client.import_image(tar)
        bench = _Rounds(client, address, namespace)
        await bench.setup()
        # Round 0 warms both sides up (the first dumps are the slowest) and
        # is not counted.
        for r in range(rounds + 1):
            sides = (bench.library, bench.ctr) if r % 2 else (bench.ctr, bench.library)
            for side in sides:
                await side(r)
        await bench.teardown()
        versions = _versions(await client.version())
    times = {k: v[1:] for k, v in bench.times.items()}
    return {**summary(times), "rounds": rounds, "versions": versions, "sides": SIDES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--rootfs", required=True)
    parser.add_argument(
        "--rounds", type=int, default=ROUNDS, help="counted rounds, after one warm-up"
    )
    args = parser.parse_args()
    why = criu_unusable()
    if why is not None:
        print(MARK + json.dumps({"skipped": why}), flush=True)
        return
    result = anyio.run(checkpoint_cost, args.address, args.rootfs, args.rounds)
    for key, value in result["checkpoint_seconds"].items():
        print(f"{key:<20} {value:7.2f} s")
    print(MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
