"""What importing the library costs: ``python -X importtime`` of
``from supervisor import connect`` (what an application pays for the core:
the package line plus ``supervisor.client._connect``'s cumulative microseconds; the
package itself loads nothing until a name is used), and the wall time of
that import paired round by round with ``python -c pass``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

CORE = "from supervisor import connect"


def _top_level_us(code: str) -> int:
    """The sum of -X importtime's top-level (cumulative) lines for ``code``."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    total = 0
    for line in result.stderr.splitlines():
        parts = line.split("|")
        top = parts[2].startswith(" ") and not parts[2].startswith("  ") if len(parts) == 3 else 0
        if top and parts[1].strip().isdigit():
            total += int(parts[1])
    return total


def _importtime_us() -> int:
    # Everything the core brings (anyio, logging, ...), less what the
    # interpreter imports for any program at all.
    return _top_level_us(CORE) - _top_level_us("pass")


def _wall(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main(rounds: int = 9) -> dict[str, Any]:
    importtime = sorted(_importtime_us() for _ in range(rounds))
    pairs: list[tuple[float, float]] = []
    for i in range(rounds):
        ways = [(CORE, 0), ("pass", 1)]
        if i % 2:
            ways.reverse()
        got: dict[int, float] = {}
        for code, slot in ways:
            got[slot] = _wall(code)
        pairs.append((got[0], got[1]))
    return {
        "importtime_supervisor_ms_median": statistics.median(importtime) / 1000,
        "importtime_supervisor_ms_min": importtime[0] / 1000,
        "wall_import_supervisor_ms_median": statistics.median(p[0] for p in pairs) * 1000,
        "wall_python_pass_ms_median": statistics.median(p[1] for p in pairs) * 1000,
        "wall_import_minus_pass_ms_median": statistics.median(a - b for a, b in pairs) * 1000,
        "rounds": rounds,
        "grpclib_loaded": _loads("grpclib"),
        "daemon_loaded": _loads("supervisor.daemon"),
    }


def _loads(module: str) -> bool:
    code = f"import sys; {CORE}; print({module!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


if __name__ == "__main__":
    for key, value in main().items():
        print(f"{key}: {value}")
