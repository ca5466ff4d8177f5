"""Pulling one image: ``client.pull`` against ``ctr images pull --plain-http``.

A private ``docker-registry`` on a free loopback port is seeded with the
busybox image the tests build (``tests/_registry.py``). Each round pulls it
both ways into the same namespace, alternating which goes first, and the
image is removed after each pull with a synchronous GC, so every pull
fetches and unpacks from nothing. ctr's figure includes its own start-up.

    python -m benchmarks.pull --address SOCK [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

import supervisor
from tests._registry import busybox_registry

_NAMESPACE = "bench-pull"


async def _rounds(address: str, ref: str, rounds: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"library": [], "ctr": []}
    ctr = ["ctr", "-a", address, "-n", _NAMESPACE, "images", "pull", "--plain-http", ref]
    async with supervisor.connect(address, namespace=_NAMESPACE) as client:

        async def clear() -> None:
            for image in await client.images():
                await client.remove_image(image.name)  # sync GC: content and snapshots go

        async def library() -> float:
            start = time.perf_counter()
            await client.pull(ref)
            return time.perf_counter() - start

        async def by_ctr() -> float:
            start = time.perf_counter()
            done = await anyio.run_process(ctr, check=False)
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"ctr pull failed: {done.stderr.decode()}")
            return elapsed

        await clear()
        # Warm-up (page cache, the registry's first answers), not counted.
        await library()
        await clear()
        ways = {"library": library, "ctr": by_ctr}
        for i in range(rounds):
            order = ["library", "ctr"] if i % 2 == 0 else ["ctr", "library"]
            for name in order:
                samples[name].append(await ways[name]())
                await clear()
    return samples


def main(address: str, rootfs: str, rounds: int = 9) -> dict[str, Any]:
    """Medians in ms of each way, and the median of per-round ratios.
    ``rootfs`` is taken for the benchmarks' common signature; the image is
    built from ``busybox-static``."""
    del rootfs
    with tempfile.TemporaryDirectory(prefix="sv-bench-pull-") as tmp:
        with busybox_registry(Path(tmp)) as (host, _):
            ref = f"{host}/busybox:1"
            samples = anyio.run(_rounds, address, ref, rounds)
    lib, ctr = samples["library"], samples["ctr"]
    return {
        "rounds": rounds,
        "library_ms": statistics.median(lib) * 1000,
        "ctr_ms": statistics.median(ctr) * 1000,
        "library_over_ctr": statistics.median(a / b for a, b in zip(lib, ctr, strict=True)),
        "samples_ms": {k: [round(v * 1000, 2) for v in vs] for k, vs in samples.items()},
    }


def _cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pull")
    parser.add_argument("--address", required=True)
    parser.add_argument("--rootfs", default="")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    print(json.dumps(main(args.address, args.rootfs, args.rounds), indent=2))


if __name__ == "__main__":
    _cli()
