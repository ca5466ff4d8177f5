"""``python -m benchmarks --address SOCK --rootfs DIR --out FILE``: run every
benchmark against a private containerd, print a table, write JSON."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from benchmarks import import_time
from benchmarks.lifecycle import collect, paired_ratio, ratio
from benchmarks.network_cost import network_cost_runs

MIN_RPCS = {
    "create": 1,
    "start": 1,
    "stats": 1,
    "exec (whole life)": 3,
    "kill": 1,
    "wait": 0,
    # Container.delete asks containerd whether a task exists (a cached answer
    # once orphaned tasks made by another client): one Get more than the API's
    # bare minimum of Tasks.Delete + Containers.Delete.
    "delete (task + container)": 3,
    "lifecycle (create..delete)": 6,
}


def table(results: dict[str, Any]) -> str:
    lines = []
    lc = results.get("lifecycle_seconds", {})
    if lc:
        lines.append("lifecycle of /bin/true (create, start, wait, delete), ms per container")
        lines.append("  (lib/x: median of per-round ratios; [ratio of the medians])")
        lines.append(
            f"  {'in flight':<10} {'library':>9} {'floor':>9} {'ctr':>9} "
            f"{'lib/floor':>18} {'lib/ctr':>18}"
        )
        for n in (1, 10, 50):
            lib, flo, ctr = (lc.get(f"{w}/{n}") for w in ("library", "floor", "ctr"))
            cells = [f"{v * 1000:9.1f}" if v else f"{'-':>9}" for v in (lib, flo, ctr)]
            ratios = []
            for other, median in (("floor", flo), ("ctr", ctr)):
                p = paired_ratio(results, "lifecycle_rounds", f"library/{n}", f"{other}/{n}")
                ratios.append(
                    f"{p:8.3f} [{lib / median:5.3f}]" if p and lib and median else f"{'-':>18}"
                )
            lines.append(f"  {n:<10} {' '.join(cells)} {ratios[0]:>18} {ratios[1]:>18}")
    ex = results.get("exec_seconds", {})
    if ex:
        lines.append("exec of /bin/true in a running container, ms per exec")
        for n in (1, 10):
            lib, flo, ctr = (ex.get(f"{w}/{n}") for w in ("library", "floor", "ctr"))
            cells = [f"{v * 1000:9.1f}" if v else f"{'-':>9}" for v in (lib, flo, ctr)]
            p = paired_ratio(results, "exec_rounds", f"library/{n}", f"floor/{n}")
            r1 = f"{p:8.3f} [{lib / flo:5.3f}]" if p and lib and flo else f"{'-':>18}"
            lines.append(f"  {n:<10} {' '.join(cells)} {r1:>18}")
    cpu = results.get("cpu_seconds_per_lifecycle", {})
    if cpu:
        lines.append("Python CPU per lifecycle (process time), ms")
        for n in (1, 10, 50):
            lib, flo = cpu.get(f"library/{n}"), cpu.get(f"floor/{n}")
            if lib and flo:
                lines.append(
                    f"  {n:<10} library {lib * 1000:6.2f}  floor {flo * 1000:6.2f}  "
                    f"ratio {lib / flo:5.2f}"
                )
    stalls = results.get("loop_stalls_at_50", {})
    if stalls:
        lines.append(
            "event loop's longest stall at 50 in flight (worst lateness of a 1 ms tick), ms"
        )
        lines.append("  (own: less the time its thread waited for a CPU held by others)")
        for way in ("library", "floor"):
            st = stalls.get(way)
            if st:
                lines.append(
                    f"  {way:<10} worst {st['worst_ms']:7.1f}  own {st['worst_own_ms']:7.1f}  "
                    f"median round {st['median_round_worst_ms']:7.1f}  p99 {st['p99_ms']:6.2f}"
                )
    mem = results.get("memory_bytes_per_live_container")
    if mem is not None:
        lines.append(f"Python memory per live container: {mem / 1024:.1f} KiB")
    rpcs = results.get("rpcs", {})
    if rpcs:
        lines.append("RPCs per operation (counted on the channel), with the minimum")
        for op, count in rpcs.items():
            methods = ", ".join(f"{k}×{v}" for k, v in results["rpc_methods"][op].items())
            lines.append(f"  {op:<28} {count:>3}  (min {MIN_RPCS.get(op, '?')})  {methods}")
    q = results.get("queue")
    if q:
        lines.append(
            f"keyed queue, no-op jobs per second ({q.get('jobs', 0):,.0f} jobs, "
            f"{q.get('keys', 0):,.0f} keys): "
            # Only the rates: the parameters next to them are not jobs/s.
            + ", ".join(f"{k} {v:,.0f}" for k, v in q.items() if "jobs_per_s" in k)
        )
    rec = results.get("daemon_recovery")
    if rec:
        lines.append(
            "embedded containerd recovery, seconds (median): "
            f"SIGKILL->client answers {rec['sigkill_to_client_answer_median_s']:.3f} "
            f"(max {rec['sigkill_to_client_answer_max_s']:.3f}), "
            f"SIGKILL->exec in a running container "
            f"{rec['sigkill_to_exec_in_running_container_median_s']:.3f}, "
            f"SIGSTOP->client answers {rec['sigstop_to_client_answer_median_s']:.3f}"
        )
    loss = results.get("log_loss")
    if loss:
        lines.append(
            f"log_path lines lost: {loss['lines_lost']} of {loss['lines_expected']} "
            f"({loss['lifecycles']} lifecycles of interleaved stdout/stderr, "
            f"{loss['in_flight']} in flight)"
        )
    for writer in ("client", "logger"):
        cri = results.get(f"log_loss_cri_{writer}")
        if cri:
            lines.append(
                f"log_format='cri' ({writer} writer) lines lost or on the wrong stream: "
                f"{cri['lines_lost']} of {cri['lines_expected']} "
                f"({cri['lifecycles']} lifecycles, {cri['in_flight']} in flight)"
            )
    loop = results.get("crashloop_cpu")
    if loop:
        c, p = loop["crashloop"], loop["probed"]
        lines.append(
            f"crash loop at a {c['cap_s']:g} s back-off cap: {c['cpu_percent_of_one_core']:.2f}% "
            f"of one core in the library ({c['restarts']} restarts in {c['window_s']:g} s, "
            f"{c['cpu_ms_per_restart']:.1f} ms CPU each; at docker's 60 s cap "
            f"{c['cpu_percent_at_60s_cap']:.3f}%); a probe a second: "
            f"{p['cpu_percent_of_one_core']:.2f}%"
        )
    cost = results.get("log_cost")
    if cost:
        ms, r = cost["log_lifecycle_ms"], cost["log_lifecycle_ratio"]
        buffered = cost["client_buffered_bytes_before_blocking"]
        lines.append(
            "log_path writers, lifecycle of /bin/true, ms (median, interleaved): "
            f"pipe {ms['pipe']:.1f}, client {ms['client']:.1f} ({r['client/pipe']:.2f}x), "
            f"logger {ms['logger']:.1f} ({r['logger/pipe']:.2f}x); "
            f"logger resident {cost['logger_rss_kib'] / 1024:.1f} MiB; "
            f"written with no client before blocking "
            f"{buffered / 1048576:.2f} MiB"
        )
        if "client-cri" in ms:
            lines.append(
                "log_format='cri', lifecycle of /bin/true, ms (median, interleaved): "
                f"client {ms['client-cri']:.1f} ({r['client-cri/pipe']:.2f}x), "
                f"logger {ms['logger-cri']:.1f} ({r['logger-cri/pipe']:.2f}x); "
                f"logger resident {cost['logger_cri_rss_kib'] / 1024:.1f} MiB; "
                f"read back {cost['read_logs_lines_per_s']:,} lines/s; "
                "an application may be down, before a client-written process blocks, "
                f"{buffered / 1024:.0f} s at 1 KiB/s of output, "
                f"{buffered / 102400:.0f} s at 100 KiB/s"
            )
    net = results.get("network_cost")
    if net:
        ms = net["network_lifecycle_ms"]
        lines.append(
            "network='bridge', lifecycle of /bin/true, ms (median, interleaved): "
            f"none {ms['none']:.1f}, bridge {ms['bridge']:.1f} "
            f"({net['network_bridge/none']:.2f}x, +{net['network_added_ms']:.1f}); "
            f"the same CNI calls from a shell script {ms['floor']:.1f} "
            f"(library over that floor {net['network_added_over_floor_ms']:+.1f}; target <= +5)"
        )
        if "network_library_own_ms" in net:
            lines.append(
                "  of which the plugin processes the library ran, spawn to reap: "
                f"{net['network_plugins_in_library_ms']:.1f}; the library's own part "
                f"(bridge - none - that) {net['network_library_own_ms']:+.1f}; over the floor "
                "from the three medians instead of per round "
                f"{net['network_added_over_floor_of_medians_ms']:+.1f}"
            )
    ps = results.get("ps_paths")
    if ps:
        wall = ps["median_wall_ms"]
        lines.append(
            "supervisor ps, whole command, median wall ms: "
            + ", ".join(f"{k} {v:.0f}" for k, v in wall.items())
            + f"; grpclib/blocking {ps['grpclib_over_blocking_wall']:.2f}x wall, "
            f"{ps['grpclib_over_blocking_cpu']:.2f}x CPU (the blocking reader stays while > 1.5x)"
        )
    lat = results.get("event_latency")
    if lat:
        lines.append(
            f"event-to-callback latency over {lat['events']} events: "
            f"median {lat['median_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--address", required=True)
    parser.add_argument("--rootfs", required=True)
    parser.add_argument("--out", type=Path, default=Path("bench-results/latest.json"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="fewer (<1) or more lifecycles")
    parser.add_argument(
        "--only",
        action="append",
        help="run only these sections (rpcs, lifecycle, exec, memory, queue, latency, "
        "daemon, log, network, ps, import, cli, pull, stats, crashloop)",
    )
    parser.add_argument(
        "--log-lifecycles",
        type=int,
        default=1000,
        help="log_path lifecycles of the lines-lost check (0 skips it)",
    )
    args = parser.parse_args()
    # Same logging cost for library and floor: none rendered.
    # As a production application configures it: filtered, loggers cached.
    logging.getLogger("supervisor").setLevel(logging.WARNING)
    results = anyio.run(
        lambda: collect(
            str(Path(args.address).resolve()),
            str(Path(args.rootfs).resolve()),
            rounds=args.rounds,
            scale=args.scale,
            only=set(args.only) if args.only else None,
        )
    )
    # lib/floor (and lib/ctr) are medians of per-round ratios: each round
    # runs the ways back to back. The ratio of the medians is kept beside it.
    lc, ex = "lifecycle_rounds", "exec_rounds"
    results["ratios"] = {
        "lifecycle library/floor at 1": paired_ratio(results, lc, "library/1", "floor/1"),
        "lifecycle library/floor at 10": paired_ratio(results, lc, "library/10", "floor/10"),
        "lifecycle library/floor at 50": paired_ratio(results, lc, "library/50", "floor/50"),
        "lifecycle library/ctr at 1": paired_ratio(results, lc, "library/1", "ctr/1"),
        "exec library/floor at 1": paired_ratio(results, ex, "library/1", "floor/1"),
        "exec library/floor at 10": paired_ratio(results, ex, "library/10", "floor/10"),
    }
    results["ratios_of_medians"] = {
        "lifecycle library/floor at 1": ratio(results, "lifecycle_seconds", "library/1", "floor/1"),
        "lifecycle library/floor at 10": ratio(
            results, "lifecycle_seconds", "library/10", "floor/10"
        ),
        "lifecycle library/ctr at 1": ratio(results, "lifecycle_seconds", "library/1", "ctr/1"),
    }
    results["min_rpcs"] = MIN_RPCS
    results["when"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if (not args.only or "log" in args.only) and args.log_lifecycles > 0:
        from benchmarks.log_loss import measure_log_loss

        results["log_loss"] = anyio.run(
            lambda: measure_log_loss(
                str(Path(args.address).resolve()),
                str(Path(args.rootfs).resolve()),
                lifecycles=args.log_lifecycles,
            )
        )
        for writer in ("client", "logger"):
            results[f"log_loss_cri_{writer}"] = anyio.run(
                lambda writer=writer: measure_log_loss(  # type: ignore[misc]
                    str(Path(args.address).resolve()),
                    str(Path(args.rootfs).resolve()),
                    lifecycles=args.log_lifecycles,
                    log_format="cri",
                    log_writer=writer,
                )
            )
    if not args.only or "log" in args.only:
        from benchmarks import log_cost

        results["log_cost"] = anyio.run(
            log_cost.main, str(Path(args.address).resolve()), str(Path(args.rootfs).resolve()), 15
        )
    if not args.only or "crashloop" in args.only:
        from benchmarks import crashloop_cpu

        results["crashloop_cpu"] = anyio.run(
            crashloop_cpu.main, str(Path(args.address).resolve()), str(Path(args.rootfs).resolve())
        )
    if (not args.only or "network" in args.only) and network_cost_runs():
        from benchmarks import network_cost

        address, rootfs = str(Path(args.address).resolve()), str(Path(args.rootfs).resolve())
        results["network_cost"] = anyio.run(network_cost.main, address, rootfs, 15)
    if not args.only or "ps" in args.only:
        from benchmarks import ps_paths

        results["ps_paths"] = ps_paths.main(
            str(Path(args.address).resolve()), str(Path(args.rootfs).resolve())
        )
    if not args.only or "import" in args.only:
        results["import_time"] = import_time.main()
    if not args.only or "cli" in args.only:
        with contextlib.suppress(ImportError):
            from benchmarks import cli_start

            results["cli_start"] = cli_start.main(str(Path(args.address).resolve()))
    if not args.only or "pull" in args.only:
        from benchmarks import pull

        results["pull"] = pull.main(
            str(Path(args.address).resolve()), str(Path(args.rootfs).resolve())
        )
    if not args.only or "stats" in args.only:
        with contextlib.suppress(ImportError):
            from benchmarks import stats_cost

            results["stats_cost"] = stats_cost.main()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print(table(results))
    print(f"(written to {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
