"""Checkpoint and restore with CRIU: the library against ``ctr`` on the same
kind of container (a busybox image's, counting in a shell loop).

- library: ``task.checkpoint(name, exit=True)``; then, its task deleted,
  ``client.restore_checkpoint(name, id)`` into the same container (until the
  restored task runs);
- ctr: ``ctr containers checkpoint --task --rw`` (the task runs on), then, the
  container deleted, ``ctr containers restore --live --rw --detach`` into its id.

ctr saves the read-write layer as well (``--rw``); the library's checkpoint
of an image's container does not (docs/checkpoint.md). Rounds are
interleaved; medians in seconds. CRIU works only where ``criu check``
passes: in the cgroup v2 VM lane, run as
``CGROUP2_GUEST_CMD='python -m benchmarks.checkpoint_cost --address
$SUPERVISOR_TEST_ADDRESS --rootfs $SUPERVISOR_TEST_ROOTFS' scripts/cgroup2/run.sh``.
Elsewhere it reports why it did not run.
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


def criu_unusable() -> str | None:
    criu = find_criu()
    if criu is None:
        return "CRIU is not installed"
    done = subprocess.run([criu, "check"], capture_output=True, check=False, timeout=120)
    if done.returncode != 0:
        said = (done.stderr + done.stdout).decode(errors="replace").strip().splitlines()
        return f"criu check fails: {said[-1] if said else done.returncode}"
    return None


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


async def checkpoint_cost(address: str, rootfs: str, rounds: int) -> dict[str, Any]:
    from tests._image_layout import image_tar

    namespace = f"bench-criu-{uuid.uuid4().hex[:8]}"
    times: dict[str, list[float]] = {k: [] for k in ("library/checkpoint", "library/restore")}
    times.update({"ctr/checkpoint": [], "ctr/restore": []})
    async with supervisor.connect(address, namespace=namespace) as client:
        with tempfile.TemporaryDirectory() as tmp:
            tar = image_tar(Path(tmp) / "img.tar", "bench/criu:1", {"Cmd": ["sh"]})
            await client.import_image(tar)
        lib = await client.new_container("cp-lib", image="bench/criu:1", args=["sh", "-c", COUNTER])
        task = await lib.new_task(output="null")
        await task.start()
        # ctr's own container the same way: its checkpoint needs the image
        # the record names, which the library's records carry.
        other = await client.new_container(
            "cp-ctr", image="bench/criu:1", args=["sh", "-c", COUNTER]
        )
        started: supervisor.Task = await other.new_task(output="null")
        await started.start()
        for r in range(rounds):
            t0 = time.perf_counter()
            await task.checkpoint(f"lib-{r}", exit=True)
            times["library/checkpoint"].append(time.perf_counter() - t0)
            await task.wait()
            await task.delete()
            t0 = time.perf_counter()
            _, task = await client.restore_checkpoint(f"lib-{r}", "cp-lib", output="null")
            times["library/restore"].append(time.perf_counter() - t0)
            await _running(task)
            await client.remove_checkpoint(f"lib-{r}")

            t0 = time.perf_counter()
            await _ctr(address, namespace, "containers", "checkpoint", "--task", "--rw",
                       "cp-ctr", f"ctr-{r}")  # fmt: skip
            times["ctr/checkpoint"].append(time.perf_counter() - t0)
            await started.delete(force=True)
            # Its snapshot goes with it: ctr's restore makes one of that key.
            await (await client.load_container("cp-ctr")).delete()
            times["ctr/restore"].append(await _ctr_restore(client, address, namespace, r))
            await _ctr(address, namespace, "images", "rm", "--sync", f"ctr-{r}")
            # A running task again for the next round's checkpoint.
            started = await (await client.load_container("cp-ctr")).new_task(output="null")
            await started.start()
        await task.delete(force=True)
        await lib.delete()
        await started.delete(force=True)
        await (await client.load_container("cp-ctr")).delete()
        await client.remove_image("bench/criu:1")
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {"checkpoint_seconds": medians, "checkpoint_rounds": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--rootfs", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    why = criu_unusable()
    if why is not None:
        print(json.dumps({"checkpoint_skipped": why}))
        return
    result = anyio.run(checkpoint_cost, args.address, args.rootfs, args.rounds)
    for key, value in result["checkpoint_seconds"].items():
        print(f"{key:<20} {value:7.2f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
