"""``make bench-check``: compare the last ``make bench`` against the targets and
say which hold.  Exits non-zero when one does not; never part of ``make test``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def checks(r: dict[str, Any]) -> list[tuple[str, bool, str]]:
    out: list[tuple[str, bool, str]] = []
    ratios = r.get("ratios", {})
    for key in ("lifecycle library/floor at 1", "lifecycle library/floor at 10"):
        v = ratios.get(key)
        out.append((f"{key} <= 1.10", v is not None and v <= 1.10, f"{v:.3f}" if v else "n/a"))
    v = ratios.get("lifecycle library/ctr at 1")
    out.append(
        ("library faster than ctr run --rm", v is not None and v < 1.0, f"{v:.3f}" if v else "n/a")
    )
    rpcs, mins = r.get("rpcs", {}), r.get("min_rpcs", {})
    for op, count in rpcs.items():
        m = mins.get(op)
        out.append(
            (f"RPCs for {op} at the minimum ({m})", m is not None and count <= m, str(count))
        )
    mem = r.get("memory_bytes_per_live_container")
    out.append(
        (
            "<= 20 KiB Python memory per live container",
            mem is not None and mem <= 20 * 1024,
            f"{mem / 1024:.1f} KiB" if mem is not None else "n/a",
        )
    )
    q = r.get("queue", {})
    qv = min(
        (v for k, v in q.items() if "median" in k and isinstance(v, (int, float))), default=None
    )
    out.append(
        (
            "queue > 100,000 no-op jobs/s",
            qv is not None and qv > 100_000,
            f"{qv:,.0f}" if qv else "n/a",
        )
    )
    rec = r.get("daemon_recovery", {})
    rv = rec.get("sigkill_to_client_answer_median_s")
    out.append(
        (
            "a working client within 2 s of a containerd crash",
            rv is not None and rv <= 2.0,
            f"{rv:.3f} s" if rv is not None else "n/a",
        )
    )
    imp = r.get("import_time", {}).get("importtime_supervisor_ms_median")
    out.append(
        (
            "core import < 120 ms (-X importtime, median)",
            imp is not None and imp < 120,
            f"{imp:.1f} ms" if imp is not None else "n/a",
        )
    )
    ps = r.get("cli_start", {}).get("median_ms", {}).get("supervisor_ps")
    out.append(
        (
            "supervisor ps <= 150 ms (median)",
            isinstance(ps, (int, float)) and ps <= 150,
            f"{ps:.1f} ms" if isinstance(ps, (int, float)) else "n/a",
        )
    )
    loss = r.get("log_loss")
    out.append(
        (
            "no log_path line lost",
            loss is not None and loss.get("lines_lost") == 0,
            f"{loss['lines_lost']} of {loss['lines_expected']}" if loss else "n/a",
        )
    )
    for writer in ("client", "logger"):
        cri = r.get(f"log_loss_cri_{writer}")
        out.append(
            (
                f"no log_format='cri' line lost ({writer} writer)",
                cri is not None and cri.get("lines_lost") == 0,
                f"{cri['lines_lost']} of {cri['lines_expected']}" if cri else "n/a",
            )
        )
    net = r.get("network_cost")
    over = net.get("network_added_over_floor_ms") if net else None
    out.append(
        (
            "network='bridge' adds <= the CNI plugins' own time + 5 ms",
            over is not None and over <= 5,
            f"{over:+.1f} ms" if over is not None else "n/a",
        )
    )
    loop = r.get("crashloop_cpu")
    capped = loop["crashloop"].get("cpu_percent_at_60s_cap") if loop else None
    out.append(
        (
            "a crash loop at docker's 60 s cap < 1% of one core",
            capped is not None and capped < 1,
            f"{capped:.3f}%" if capped is not None else "n/a",
        )
    )
    return out


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "bench-results/latest.json")
    if not path.exists():
        print(f"{path} is missing: run `make bench` first")
        return 2
    results = json.loads(path.read_text())
    failed = 0
    for name, ok, value in checks(results):
        failed += not ok
        print(f"{'HOLDS' if ok else 'MISSES':<7} {name:<52} {value}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
