"""Pulling images from a loopback ``docker-registry``, beside ctr.

A private registry on a free loopback port is seeded with two images built
here: ``big`` (one layer holding 100 MiB that does not compress) and
``layers`` (21 small layers). For each image, each round measures, back to
back and alternating which goes first:

- the whole pull (fetch and unpack): ``ImageService.pull(plain_http=True)``
  against ``ctr images pull --plain-http``;
- the download alone: the same with ``unpack=False`` against
  ``ctr content fetch --plain-http``.

The image is removed with a synchronous GC after every pull, so each one
fetches and unpacks from nothing. ctr's figures include its own start-up
(about 10 ms).

and the start-up of ``supervisor images`` beside ``supervisor ps`` and
``ctr images ls``.

    python -m benchmarks.pull --address SOCK [--rounds N] [--only big|layers]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import statistics
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

import supervisor
from tests._registry import Layout, push, start_registry, stop

_NAMESPACE = "bench-pull"
MiB = 1 << 20


def _layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _layout(root: Path, layers: list[bytes]) -> Layout:
    """An OCI layout of gzipped ``layers`` (tag ``1``) for linux/amd64."""
    import hashlib

    def blob(data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        (root / "blobs" / "sha256" / digest[7:]).write_bytes(data)
        return {"digest": digest, "size": len(data)}

    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **blob(json.dumps(config).encode()),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                **blob(gzip.compress(layer, compresslevel=1, mtime=0)),
            }
            for layer in layers
        ],
    }
    desc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **blob(json.dumps(manifest).encode()),
        "annotations": {"org.opencontainers.image.ref.name": "1"},
    }
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    return Layout(root, str(desc["digest"]))


def images(tmp: Path) -> dict[str, Layout]:
    big = _layer({"noise": os.urandom(100 * MiB)})
    small = [_layer({f"l{i}/data": os.urandom(256 * 1024)}) for i in range(21)]
    return {"big": _layout(tmp / "big", [big]), "layers": _layout(tmp / "layers", small)}


Way = Callable[[], Awaitable[float]]


async def _rounds(address: str, ref: str, rounds: int) -> dict[str, list[float]]:
    from supervisor.images._service import ImageService

    samples: dict[str, list[float]] = {"pull": [], "ctr pull": [], "fetch": [], "ctr fetch": []}
    ctr = ["ctr", "-a", address, "-n", _NAMESPACE]
    async with supervisor.connect(address, namespace=_NAMESPACE) as client:
        service = ImageService(client._session)

        async def clear() -> None:
            for image in await client.images():
                await client.remove_image(image.name)  # sync GC: content and snapshots go

        async def library(unpack: bool) -> float:
            start = time.perf_counter()
            await service.pull(ref, plain_http=True, unpack=unpack)
            return time.perf_counter() - start

        async def by_ctr(*argv: str) -> float:
            start = time.perf_counter()
            done = await anyio.run_process([*ctr, *argv], check=False)
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"ctr failed: {done.stderr.decode()}")
            return elapsed

        async def lib_pull() -> float:
            return await library(True)

        async def lib_fetch() -> float:
            return await library(False)

        async def ctr_pull() -> float:
            return await by_ctr("images", "pull", "--plain-http", ref)

        async def ctr_fetch() -> float:
            return await by_ctr("content", "fetch", "--plain-http", ref)

        ways: dict[str, Way] = {
            "pull": lib_pull,
            "ctr pull": ctr_pull,
            "fetch": lib_fetch,
            "ctr fetch": ctr_fetch,
        }
        pairs = [("pull", "ctr pull"), ("fetch", "ctr fetch")]
        await clear()
        # Warm-up (page cache, the registry's first answers), not counted.
        for way in ways.values():
            await way()
            await clear()
        for i in range(rounds):
            for pair in pairs:
                for name in pair if i % 2 == 0 else pair[::-1]:
                    samples[name].append(await ways[name]())
                    await clear()
    return samples


def _summary(samples: dict[str, list[float]]) -> dict[str, float]:
    def paired(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))

    return {
        "library pull ms": statistics.median(samples["pull"]) * 1000,
        "ctr pull ms": statistics.median(samples["ctr pull"]) * 1000,
        "pull library/ctr": paired("pull", "ctr pull"),
        "library fetch ms": statistics.median(samples["fetch"]) * 1000,
        "ctr fetch ms": statistics.median(samples["ctr fetch"]) * 1000,
        "fetch library/ctr": paired("fetch", "ctr fetch"),
    }


def listing_startup(address: str, runs: int = 15) -> dict[str, float]:
    """Wall time of ``supervisor images`` beside ``supervisor ps`` and
    ``ctr images ls`` (each a fresh process), interleaved; medians in ms."""
    import subprocess
    import sys

    base = [sys.executable, "-m", "supervisor", "-a", address, "-n", _NAMESPACE]
    ways = {
        "supervisor images": [*base, "images"],
        "supervisor ps": [*base, "ps"],
        "ctr images ls": ["ctr", "-a", address, "-n", _NAMESPACE, "images", "ls"],
    }
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for i in range(runs + 1):
        names = list(ways) if i % 2 == 0 else list(ways)[::-1]
        for name in names:
            start = time.perf_counter()
            subprocess.run(ways[name], check=True, capture_output=True)
            if i:  # the first round warms the page cache
                samples[name].append(time.perf_counter() - start)
    return {f"{name} ms": statistics.median(v) * 1000 for name, v in samples.items()}


def main(
    address: str, rootfs: str, rounds: int = 7, only: list[str] | None = None
) -> dict[str, Any]:
    """Per image: medians in ms of each way, and medians of per-round
    ratios. ``rootfs`` is taken for the benchmarks' common signature."""
    del rootfs
    out: dict[str, Any] = {"rounds": rounds}
    with tempfile.TemporaryDirectory(prefix="sv-bench-pull-") as tmp:
        proc, host = start_registry(Path(tmp))
        try:
            for name, layout in images(Path(tmp)).items():
                if only and name not in only:
                    continue
                ref = f"{host}/{name}:1"
                push(layout, ref)
                samples = anyio.run(_rounds, address, ref, rounds)
                out[name] = _summary(samples)
                out[f"{name} samples ms"] = {
                    k: " ".join(f"{v * 1000:.0f}" for v in vs) for k, vs in samples.items()
                }
        finally:
            stop(proc)
    if not only:
        out["listing start-up"] = listing_startup(address)
    return out


def _cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pull")
    parser.add_argument("--address", required=True)
    parser.add_argument("--rootfs", default="")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", action="append", choices=["big", "layers"])
    args = parser.parse_args()
    print(json.dumps(main(args.address, args.rootfs, args.rounds, args.only), indent=2))


if __name__ == "__main__":
    _cli()
