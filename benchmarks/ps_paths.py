"""``supervisor ps`` through its two possible ways to containerd, as whole
commands: the blocking reader it uses (:mod:`supervisor.backends.blocking`)
against the leanest grpclib path (:mod:`supervisor.cli._ps_grpclib`: asyncio,
grpclib and only the containers and tasks bindings, loaded when the listing
runs), with the grpclib transport as ``ps`` reaches it on Windows
(anyio and :class:`~supervisor.backends.containerd.ContainerdTransport`) and
``python -c pass`` for the floor.

Each way is the same command line (``-a SOCK -n NS ps``) run by one launcher
that only swaps ``_ps._listing``, so they differ in the listing alone. They
run in turn in each round (the order rotating), against a namespace of their
own holding ``--containers`` containers (each with a running task when
``--rootfs`` is given). Medians over the rounds of the wall and CPU time
(user + system, the operating system's accounting of the finished child) and
the medians of the per-round ratios to the blocking reader; also the summed
``-X importtime`` of each way and the modules it loads.

Why it matters: the blocking reader is a second HTTP/2 gRPC client, kept only
if the grpclib path cannot get ``ps`` within 1.5x of it
(``grpclib_over_blocking_*``).

    python -m benchmarks.ps_paths --address SOCK [--rootfs DIR] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# Run ``supervisor`` as its console script does; ``SWAP`` replaces how ps lists.
_LAUNCHER = """\
import sys
from supervisor.cli import _ps
{swap}
from supervisor.cli._main import main
sys.exit(main(sys.argv[1:]))
"""
_SWAPS = {
    "blocking": "",
    "grpclib": "from supervisor.cli import _ps_grpclib\n_ps._listing = _ps_grpclib.listing",
    "transport": (
        "def _over_transport(args):\n"
        "    import anyio\n"
        "    return anyio.run(_ps._listing_over_transport, args)\n"
        "_ps._listing = _over_transport"
    ),
}


def _ways(address: str, namespace: str) -> dict[str, list[str]]:
    ways = {
        name: [
            sys.executable,
            "-c",
            _LAUNCHER.format(swap=swap),
            "-a",
            address,
            "-n",
            namespace,
            "ps",
        ]
        for name, swap in _SWAPS.items()
    }
    ways["python_pass"] = [sys.executable, "-c", "pass"]
    return ways


def _timed(argv: list[str]) -> tuple[float, float, bytes]:
    """Wall and CPU seconds of one run, and what it printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(argv, check=True, cwd=REPO, capture_output=True).stdout
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out


def _imports(argv: list[str]) -> tuple[float, int]:
    """One run's summed ``-X importtime`` self time (ms), and its module count."""
    err = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], check=True, cwd=REPO, capture_output=True
    ).stderr.decode()
    # "import time: SELF | CUMULATIVE | NAME", after one header line
    prefix = "import time:"
    cells = [
        line[len(prefix) :].split("|")[0].strip()
        for line in err.splitlines()
        if line.startswith(prefix)
    ]
    selfs = [int(cell) for cell in cells if cell.isdigit()]
    return sum(selfs) / 1000, len(selfs)


async def _populate(address: str, namespace: str, rootfs: str | None, n: int, tmp: Path) -> None:
    import supervisor

    spec = supervisor.default_spec(["sleep", "3600"], rootfs or "/")
    async with supervisor.connect(address, namespace=namespace, state_dir=tmp) as client:
        for i in range(n):
            container = await client.new_container(f"ps-{i:02d}", spec)
            if rootfs is not None:
                await (await container.new_task(output="null")).start()


async def _clean(address: str, namespace: str, tmp: Path) -> None:
    import supervisor

    async with supervisor.connect(address, namespace=namespace, state_dir=tmp) as client:
        for container in await client.containers():
            await container.delete(force=True)


def main(
    address: str, rootfs: str | None = None, containers: int = 10, rounds: int = 21
) -> dict[str, Any]:
    """Time the ways side by side; medians in ms, ratios as medians of per-round ratios."""
    import anyio

    namespace = f"bench-ps-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="bench-ps-") as tmp:
        try:
            anyio.run(_populate, address, namespace, rootfs, containers, Path(tmp))
            result = _measure(_ways(address, namespace), rounds)
        finally:
            anyio.run(_clean, address, namespace, Path(tmp))
            from supervisor.backends.blocking import Channel, delete_namespace

            with Channel(address, namespace, timeout=30.0) as channel:
                delete_namespace(channel, namespace)
    result["containers"] = containers
    result["tasks"] = containers if rootfs is not None else 0
    return result


def _measure(ways: dict[str, list[str]], rounds: int) -> dict[str, Any]:
    names = list(ways)
    printed = {}
    for name in names:  # warm the page cache, the bytecode caches and containerd's paths
        printed[name] = _timed(ways[name])[2]
    if printed["grpclib"] != printed["blocking"] or printed["transport"] != printed["blocking"]:
        raise AssertionError("the ways do not print the same listing")
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    imports: dict[str, list[float]] = {name: [] for name in names}
    modules: dict[str, int] = {}
    for i in range(rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            w, c, _ = _timed(ways[name])
            wall[name].append(w)
            cpu[name].append(c)
        if i % 3 == 0:  # where the time goes, from fewer rounds: it is only a guide
            for name in names:
                spent, modules[name] = _imports(ways[name])
                imports[name].append(spent)

    def ratio(samples: dict[str, list[float]], a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))

    return {
        "rounds": rounds,
        "median_wall_ms": {n: statistics.median(v) * 1000 for n, v in wall.items()},
        "median_cpu_ms": {n: statistics.median(v) * 1000 for n, v in cpu.items()},
        "grpclib_over_blocking_wall": ratio(wall, "grpclib", "blocking"),
        "grpclib_over_blocking_cpu": ratio(cpu, "grpclib", "blocking"),
        "transport_over_blocking_wall": ratio(wall, "transport", "blocking"),
        "transport_over_blocking_cpu": ratio(cpu, "transport", "blocking"),
        "blocking_over_python_wall": ratio(wall, "blocking", "python_pass"),
        "grpclib_over_python_wall": ratio(wall, "grpclib", "python_pass"),
        "importtime_ms": {n: statistics.median(v) for n, v in imports.items()},
        "modules_imported": modules,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--rootfs", help="start a task in each container (a busybox rootfs)")
    parser.add_argument("--containers", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=21)
    options = parser.parse_args()
    rootfs = str(Path(options.rootfs).resolve()) if options.rootfs else None
    print(
        json.dumps(
            main(str(Path(options.address).resolve()), rootfs, options.containers, options.rounds),
            indent=2,
        )
    )
