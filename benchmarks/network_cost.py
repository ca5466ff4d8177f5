"""What ``network="bridge"`` costs a container, against ``"none"`` and
against the floor: the same CNI calls made by a shell script.

- library: ``new_container`` + ``new_task`` + ``start`` + ``wait`` +
  ``delete`` + container ``delete`` of ``/bin/true``, with ``network="none"``
  (runc's own loopback namespace) and ``network="bridge"`` (a namespace of
  the library's, CNI ADD through bridge/host-local, portmap, firewall, DNS
  files; DEL at delete);
- floor: a bash script doing what CNI itself needs: ``ip netns add``, each
  plugin's ADD in order (its config prepared beforehand, the previous result
  spliced in without forking anything else), DEL in reverse, ``ip netns
  del``; the same conflist, bridge and IPAM directory as the library's.

Rounds are interleaved (none, bridge, floor); medians in ms. The issue's
target: bridge - none <= floor + 5 ms.

``python -m benchmarks.network_cost --address SOCK --rootfs DIR [--rounds N]``
(needs root and the CNI plugins in /usr/lib/cni)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

import supervisor

CNI_PATH = "/usr/lib/cni"

# $1 netns name, $2 container id, $3 directory of 0.json 1.json ... (each a
# plugin's config, name and cniVersion included), $4 the plugins' types,
# $5 where they are.
FLOOR = r"""
set -e
ns=$1 cid=$2 dir=$3
read -r -a types <<<"$4"
export CNI_CONTAINERID=$cid CNI_NETNS=/run/netns/$ns CNI_IFNAME=eth0 CNI_PATH=$5
ip netns add "$ns"
prev=
for i in "${!types[@]}"; do
  cfg=$(<"$dir/$i.json")
  [ -n "$prev" ] && cfg="${cfg%\}},\"prevResult\":$prev}"
  prev=$(CNI_COMMAND=ADD "$CNI_PATH/${types[$i]}" <<<"$cfg")
done
for ((i=${#types[@]}-1; i>=0; i--)); do
  cfg=$(<"$dir/$i.json")
  cfg="${cfg%\}},\"prevResult\":$prev}"
  CNI_COMMAND=DEL "$CNI_PATH/${types[$i]}" <<<"$cfg" >/dev/null
done
ip netns del "$ns"
"""


def network_cost_runs() -> bool:
    """Whether this machine can run it: root and the CNI plugins."""
    import os

    return os.geteuid() == 0 and os.path.exists(f"{CNI_PATH}/bridge")


async def _lifecycle(client: supervisor.Client, rootfs: str, network: str) -> float:
    cid = f"net-{network}-{uuid.uuid4().hex[:8]}"
    spec = supervisor.default_spec(["/bin/true"], rootfs)
    t0 = time.perf_counter()
    container = await client.new_container(cid, spec, network=network)
    task = await container.new_task(output="null")
    await task.start()
    await task.wait()
    await task.delete()
    await container.delete()
    return time.perf_counter() - t0


def _prepare_floor(client: supervisor.Client, tmp: Path) -> tuple[Path, str]:
    """The library's own conflist for its bridge, one config file per plugin."""
    manager = client._network._manager
    assert manager is not None
    default = manager._default
    assert default.subnet is not None
    conflist = default.conflist(default.subnet)
    directory = tmp / "floor"
    directory.mkdir()
    for i in range(len(conflist.plugins)):
        stdin = conflist.plugin_config(i, prev_result=None, capability_args={})
        (directory / f"{i}.json").write_bytes(stdin.strip())
    return directory, " ".join(str(p["type"]) for p in conflist.plugins)


def _floor(script: Path, configs: Path, types: str) -> float:
    name = f"svfloor-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    subprocess.run(["bash", str(script), name, name, str(configs), types, CNI_PATH], check=True)
    return time.perf_counter() - t0


async def main(address: str, rootfs: str, rounds: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="sv-netcost-"))
    # runc makes the DNS files' mount points in the rootfs: a copy of our own.
    own = tmp / "rootfs"
    shutil.copytree(rootfs, own, symlinks=True)
    script = tmp / "floor.sh"
    script.write_text(FLOOR)
    namespace = f"bench-netcost-{uuid.uuid4().hex[:6]}"
    times: dict[str, list[float]] = {"none": [], "bridge": [], "floor": []}
    try:
        async with supervisor.connect(address, namespace=namespace, state_dir=tmp / "st") as client:
            for network in ("none", "bridge"):  # warm-up (the bridge is made here)
                await _lifecycle(client, str(own), network)
            configs, types = _prepare_floor(client, tmp)
            _floor(script, configs, types)
            for _ in range(rounds):
                for network in ("none", "bridge"):
                    times[network].append(await _lifecycle(client, str(own), network))
                floor = await anyio.to_thread.run_sync(_floor, script, configs, types)
                times["floor"].append(floor)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    added = med["bridge"] - med["none"]
    return {
        "network_lifecycle_ms": {k: round(v, 2) for k, v in med.items()},
        "network_added_ms": round(added, 2),
        "network_bridge/none": round(med["bridge"] / med["none"], 3),
        "network_added_over_floor_ms": round(added - med["floor"], 2),
        "rounds": rounds,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--rootfs", required=True)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(json.dumps(anyio.run(main, args.address, args.rootfs, args.rounds), indent=2))
