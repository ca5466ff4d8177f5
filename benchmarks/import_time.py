"""What ``import supervisor`` costs: ``python -X importtime`` of the package
(the cumulative microseconds of its own line), and the wall time of
``python -c 'import supervisor'`` paired round by round with ``python -c pass``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any


def _importtime_us() -> int:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import supervisor"],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in result.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == "supervisor":
            return int(parts[1])
    raise RuntimeError("no 'supervisor' line in -X importtime output")


def _wall(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main(rounds: int = 9) -> dict[str, Any]:
    importtime = sorted(_importtime_us() for _ in range(rounds))
    pairs: list[tuple[float, float]] = []
    for i in range(rounds):
        ways = [("import supervisor", 0), ("pass", 1)]
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
    code = f"import sys, supervisor; print({module!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


if __name__ == "__main__":
    for key, value in main().items():
        print(f"{key}: {value}")
