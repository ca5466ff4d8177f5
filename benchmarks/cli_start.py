"""How long the ``supervisor`` command takes for a quick question:
``supervisor ps`` (``python -m supervisor -a ADDRESS ps``) next to
``ctr -a ADDRESS containers ls`` and ``python -c pass``, run alternately in
each round (the order rotating), medians over the rounds.

Also: the command's parse step alone (``--help``), and whether parsing
loads grpclib, betterproto2 or the daemon (it must not).

    python -m benchmarks.cli_start --address SOCK [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

_HEAVY = ("grpclib", "betterproto2", "supervisor._proto", "supervisor.daemon")


def _ways(address: str) -> dict[str, list[str]]:
    ways = {
        "supervisor_ps": [sys.executable, "-m", "supervisor", "-a", address, "ps"],
        "supervisor_help": [sys.executable, "-m", "supervisor", "--help"],
        "python_pass": [sys.executable, "-c", "pass"],
    }
    ctr = shutil.which("ctr")
    if ctr is not None:
        ways["ctr_containers_ls"] = [ctr, "-a", address, "containers", "ls"]
    return ways


def _wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _loaded_by_parsing() -> list[str]:
    code = (
        "import sys\n"
        "from supervisor.cli._parser import parse\n"
        "for argv in (['ps'], ['run', '--rootfs', '/', '--', 'true'], ['stats']):\n"
        "    parse(argv)\n"
        f"print(' '.join(m for m in sys.modules if m.startswith({_HEAVY!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return sorted({name.split(".")[0] for name in out.stdout.split()})


def main(address: str, rounds: int = 21) -> dict[str, Any]:
    """Time the ways side by side; medians in ms, and per-round differences."""
    ways = _ways(address)
    for argv in ways.values():  # warm the page cache and containerd's connection paths
        _wall(argv)
    names = list(ways)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            samples[name].append(_wall(ways[name]))
    medians = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    ps, bare = samples["supervisor_ps"], samples["python_pass"]
    result: dict[str, Any] = {
        "rounds": rounds,
        "median_ms": medians,
        "min_ms": {name: min(values) * 1000 for name, values in samples.items()},
        "ps_minus_python_ms_median": statistics.median(a - b for a, b in zip(ps, bare, strict=True))
        * 1000,
        "heavy_modules_loaded_by_parsing": _loaded_by_parsing(),
    }
    if "ctr_containers_ls" in samples:
        ctr = samples["ctr_containers_ls"]
        result["ps_over_ctr_median_of_ratios"] = statistics.median(
            a / b for a, b in zip(ps, ctr, strict=True)
        )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--rounds", type=int, default=21)
    options = parser.parse_args()
    print(json.dumps(main(str(Path(options.address).resolve()), options.rounds), indent=2))
