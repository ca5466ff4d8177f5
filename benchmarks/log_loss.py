"""Lines lost from ``log_path`` files: a check, not a timing.

``python -m benchmarks.log_loss --address SOCK --rootfs DIR [-n N] [--in-flight K]
[--format raw|cri] [--writer client|logger]``

Runs ``N`` lifecycles of a process that interleaves stdout and stderr::

    sh -c "echo out1; echo err1 >&2; echo out2; echo err2 >&2"

each as ``container.new_task(log_path=p)``, ``start()``, ``wait()``,
``delete()``, with ``K`` in flight at a time, then reads each file. Every
one of the four lines must be there exactly once: a line missing, or there
twice, counts as lost. Every byte the process wrote must be in the file once
``wait()`` has returned, so the figure must be 0. With ``--format cri`` each
record must also name the stream its line was written to.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

import supervisor

SCRIPT = "echo out1; echo err1 >&2; echo out2; echo err2 >&2"
EXPECTED = ("out1", "err1", "out2", "err2")


def lines_of(text: str, log_format: str) -> list[str]:
    """The output lines a file holds: a CRI record's line only if its stream
    is the one that line was written to."""
    if log_format != "cri":
        return text.splitlines()
    found = []
    for record in text.splitlines():
        parts = record.split(" ", 3)
        if len(parts) == 4 and parts[2] == "F" and parts[1] == f"std{parts[3][:3]}":
            found.append(parts[3])
    return found


def lines_lost(text: str, log_format: str = "raw") -> int:
    """How many of the expected lines are not in ``text`` exactly once."""
    seen = collections.Counter(lines_of(text, log_format))
    return sum(1 for line in EXPECTED if seen[line] != 1)


async def measure_log_loss(
    address: str,
    rootfs: str,
    *,
    lifecycles: int = 1000,
    in_flight: int = 8,
    log_format: str = "raw",
    log_writer: str = "client",
) -> dict[str, Any]:
    """Run the lifecycles; returns the figures (see the module docstring)."""
    tmp = Path(tempfile.mkdtemp(prefix="sv-logloss-"))
    logs = tmp / "logs"
    logs.mkdir()
    spec = supervisor.default_spec(["sh", "-c", SCRIPT], rootfs)
    ns = f"bench-log-{uuid.uuid4().hex[:6]}"
    lost = runs_with_loss = 0
    missing: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    start = time.perf_counter()
    try:
        async with supervisor.connect(address, namespace=ns, state_dir=tmp / "state") as client:
            sem = anyio.Semaphore(in_flight)

            async def one(i: int) -> None:
                nonlocal lost, runs_with_loss
                path = logs / f"{i}.log"
                async with sem:
                    container = await client.new_container(f"log-{i}", spec)
                    try:
                        task = await container.new_task(
                            log_path=path,
                            log_format=log_format,  # type: ignore[typeddict-item]
                            log_writer=log_writer,  # type: ignore[arg-type]
                        )
                        try:
                            await task.start()
                            status = await task.wait()
                        finally:
                            await task.delete()
                    finally:
                        await container.delete()
                if status.exit_code != 0:
                    failures.append(f"{i}: exit {status.exit_code}")
                text = path.read_text(errors="replace") if path.exists() else ""
                n = lines_lost(text, log_format)
                if n:
                    lost += n
                    runs_with_loss += 1
                    seen = collections.Counter(lines_of(text, log_format))
                    missing.update(line for line in EXPECTED if seen[line] != 1)

            async with anyio.create_task_group() as tg:
                for i in range(lifecycles):
                    tg.start_soon(one, i)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "lifecycles": lifecycles,
        "in_flight": in_flight,
        "log_format": log_format,
        "log_writer": log_writer,
        "lines_expected": lifecycles * len(EXPECTED),
        "lines_lost": lost,
        "runs_with_loss": runs_with_loss,
        "lost_by_line": dict(missing),
        "nonzero_exits": len(failures),
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.log_loss")
    parser.add_argument("--address", required=True)
    parser.add_argument("--rootfs", required=True)
    parser.add_argument("-n", "--lifecycles", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--format", choices=("raw", "cri"), default="raw")
    parser.add_argument("--writer", choices=("client", "logger"), default="client")
    args = parser.parse_args()
    result = anyio.run(
        lambda: measure_log_loss(
            str(Path(args.address).resolve()),
            str(Path(args.rootfs).resolve()),
            lifecycles=args.lifecycles,
            in_flight=args.in_flight,
            log_format=args.format,
            log_writer=args.writer,
        )
    )
    print(json.dumps(result, indent=2))
    print(
        f"log_path ({args.format}, {args.writer}) lines lost: "
        f"{result['lines_lost']} of {result['lines_expected']}"
    )
    return 1 if result["lines_lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
