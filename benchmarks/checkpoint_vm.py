"""``python -m benchmarks.checkpoint_vm [--into bench-results/latest.json]``:
the checkpoint figures of :mod:`benchmarks.checkpoint_cost`, measured in the
cgroup v2 VM lane (``scripts/cgroup2/run.sh``), the only place here where CRIU
works, and stored under ``"checkpoint"`` in the JSON of ``make bench``.

The guest prints its figures as one marked line on its stdout, which the lane
streams to ours; nothing has to be copied out of the VM. Whatever happens,
the key gets an outcome: the figures, ``{"skipped": why}`` when CRIU cannot
run in the guest, or ``{"failed": why}`` when the VM run did not produce
them (the lane's exit code and its last words). The exit code is 0 once that
is recorded, so a VM that fails never hides the host's figures; the
report says what failed. The whole run is logged to ``--log``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from benchmarks.checkpoint_cost import MARK, ROUNDS

REPO = Path(__file__).resolve().parent.parent
GUEST_CMD = (
    'python -m benchmarks.checkpoint_cost --address "$SUPERVISOR_TEST_ADDRESS" '
    '--rootfs "$SUPERVISOR_TEST_ROOTFS" --rounds {rounds}'
)
# run.sh's own exit codes besides the guest command's (docs/cgroup2.md).
_LANE_CODES = {
    124: "the VM did not finish within CGROUP2_TIMEOUT",
    125: "the VM stopped without reporting a result",
}


def parse(lines: list[str]) -> dict[str, Any] | None:
    """The figures of the last marked line, None if there is none or it is
    cut short."""
    for line in reversed(lines):
        if line.startswith(MARK):
            with contextlib.suppress(ValueError):
                found = json.loads(line[len(MARK) :])
                if isinstance(found, dict):
                    return found
            return None
    return None


def outcome(rc: int | None, marked: dict[str, Any] | None, last: list[str]) -> dict[str, Any]:
    """What the key records for a lane that exited with ``rc`` (None: killed
    here at the outer bound) after printing ``marked``."""
    if marked is not None and ("skipped" in marked or rc == 0):
        return marked
    if rc is None:
        why = "the lane (guest build included) overran its outer bound and was stopped"
    elif rc == 0:
        why = "the guest printed no figures"
    else:
        why = f"the lane exited with {rc}" + (f" ({_LANE_CODES[rc]})" if rc in _LANE_CODES else "")
    said = [line.strip() for line in last if line.strip()]
    if said:
        why += ": " + " | ".join(said[-3:])
    return {"failed": why}


def _pump(stream: IO[str], to: IO[str], keep: collections.deque[str], log: IO[str]) -> None:
    for line in stream:
        to.write(line)
        to.flush()
        log.write(line)
        keep.append(line)


def run_lane(rounds: int, timeout: int, log_path: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "CGROUP2_GUEST_CMD": GUEST_CMD.format(rounds=rounds),
        "CGROUP2_TIMEOUT": str(timeout),
    }
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out: collections.deque[str] = collections.deque(maxlen=200)
    err: collections.deque[str] = collections.deque(maxlen=20)
    t0 = time.monotonic()
    with log_path.open("w") as log:
        # Its own session, so that at the outer bound the lane and QEMU under
        # it get the signal: run.sh's trap then stops QEMU.
        lane = subprocess.Popen(
            [str(REPO / "scripts/cgroup2/run.sh")],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        assert lane.stdout is not None and lane.stderr is not None
        pumps = [
            threading.Thread(target=_pump, args=(lane.stdout, sys.stdout, out, log)),
            threading.Thread(target=_pump, args=(lane.stderr, sys.stderr, err, log)),
        ]
        for pump in pumps:
            pump.start()
        rc: int | None
        try:
            # The guest build and the venv come before QEMU's own bound.
            rc = lane.wait(timeout + 900)
        except subprocess.TimeoutExpired:
            rc = None
            os.killpg(lane.pid, signal.SIGTERM)
            try:
                lane.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(lane.pid, signal.SIGKILL)
                lane.wait()
        for pump in pumps:
            pump.join()
    found = outcome(rc, parse(list(out)), list(err))
    found["vm_seconds"] = round(time.monotonic() - t0, 1)
    found["when"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--into", type=Path, default=Path("bench-results/latest.json"))
    parser.add_argument("--log", type=Path, default=Path("bench-results/checkpoint-vm.log"))
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--timeout", type=int, default=600, help="CGROUP2_TIMEOUT, seconds")
    args = parser.parse_args()
    found = run_lane(args.rounds, args.timeout, args.log)
    results = json.loads(args.into.read_text()) if args.into.exists() else {}
    results["checkpoint"] = found
    args.into.parent.mkdir(parents=True, exist_ok=True)
    partial = args.into.with_suffix(".tmp")
    partial.write_text(json.dumps(results, indent=2, default=str))
    partial.replace(args.into)
    what = found.get("failed") or found.get("skipped")
    print(f"checkpoint figures {'not measured: ' + what if what else 'measured'} ({args.into})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
