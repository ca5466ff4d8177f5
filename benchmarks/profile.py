"""``make profile``: where the library's Python time goes in a lifecycle.

Runs ``--total`` lifecycles of ``/bin/true`` at ``--in-flight`` through the
public API under pyinstrument (a sampling profiler, so the figures keep their
proportions) and prints the call tree, library frames only by default. This
is how the performance work in the README was found; compare with
``benchmarks/floor.py`` for what the raw stubs cost.
"""

from __future__ import annotations

import argparse
import logging
import uuid
from pathlib import Path

import anyio
from pyinstrument import Profiler

import supervisor
from benchmarks.lifecycle import _in_flight


async def profile(address: str, rootfs: str, in_flight: int, total: int, state: Path) -> Profiler:
    spec = supervisor.default_spec(["/bin/true"], rootfs)

    async def one(client: supervisor.Client, cid: str) -> None:
        container = await client.new_container(cid, spec)
        task = await container.new_task()
        await task.start()
        await task.wait()
        await task.delete()
        await container.delete()

    namespace = f"profile-{uuid.uuid4().hex[:6]}"
    async with supervisor.connect(address, namespace=namespace, state_dir=state) as client:
        await one(client, "warm")
        profiler = Profiler(async_mode="enabled", interval=0.0005)
        with profiler:
            await _in_flight(in_flight, total, lambda i: one(client, f"p{i}"))
    return profiler


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("--address", required=True)
    parser.add_argument("--rootfs", required=True)
    parser.add_argument("--in-flight", type=int, default=10)
    parser.add_argument("--total", type=int, default=200)
    parser.add_argument("--all-frames", action="store_true", help="grpclib, h2, betterproto too")
    args = parser.parse_args()
    logging.getLogger("supervisor").setLevel(logging.WARNING)
    state = Path(f"/tmp/sv-profile-{uuid.uuid4().hex[:6]}")
    profiler = anyio.run(
        profile, str(Path(args.address).resolve()), str(Path(args.rootfs).resolve()),
        args.in_flight, args.total, state,
    )  # fmt: skip
    print(profiler.output_text(unicode=True, color=False, show_all=args.all_frames))


if __name__ == "__main__":
    main()
