"""Network soak: containers with the default network and a published port
created and deleted by an application's workers while containerd is
SIGKILLed (the embedded Daemon restarts it) and the application itself is
SIGKILLed and started again. At the end, after one more restart of the
application that takes up what was left, nothing of the network stays:
no record, lease, cached result, namespace mount, iptables rule or chain of
the network, veth, or bridge.

Each disturbance comes once the application has finished a few more lives
since the last one, so the run is bounded by progress, not by the clock;
where a kill lands within a life varies, and the counts must be zero
wherever it lands. Traffic: none leaves the host's namespaces.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import DaemonTimeouts
from supervisor.daemon import Daemon
from supervisor.daemon._orphans import shims_of
from supervisor.network import NetworkManager
from tests._containerd import short_tmpdir
from tests.integration.test_network_bridge import bridge_exists, iptables_lines, leftovers

# Not marked `network`: on the cgroup v2 lane's emulated CPU a life takes
# seconds, and the soak's stretches of progress would need minutes each.
pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.disruptive,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and iptables need root"),
    pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"), reason="no CNI plugins"),
]

FAST = DaemonTimeouts(health_interval=0.2, health_timeout=0.5, health_failures=2, stop=5)
REPO = Path(__file__).resolve().parents[2]
# What happens after each stretch of progress: containerd killed, the
# application killed and started again, or both at once.
PLAN = ["containerd", "application", "both", "containerd", "application"]
LIVES_BETWEEN = 4


@pytest.fixture
def base(rootfs: str) -> Iterator[Path]:
    directory = short_tmpdir("sv-netsoak-")
    # runc makes the DNS files' mount points in the rootfs: a copy of our own.
    shutil.copytree(rootfs, directory / "rootfs", symlinks=True)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class App:
    """The application process and the lives it reported."""

    def __init__(self, address: str, namespace: str, state: Path, rootfs: Path) -> None:
        self.argv = [
            sys.executable, "-m", "tests.integration.network_soak_app",
            address, namespace, str(state), str(rootfs),
        ]  # fmt: skip
        self.generation = 0
        self.done = 0
        self.disturbed = 0
        self.ids: set[str] = set()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.generation += 1
        self.proc = subprocess.Popen(
            [*self.argv, str(self.generation)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.proc = None

    async def progress(self, lives: int) -> None:
        """Until ``lives`` more lives finished (read off the app's stdout)."""
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        target = self.done + lives
        with anyio.fail_after(60):
            while self.done < target:
                line = await anyio.to_thread.run_sync(stdout.readline)
                assert line, f"the application ended (generation {self.generation})"
                if line.startswith("done "):
                    self.done += 1
                elif line.startswith("disturbed "):
                    self.disturbed += 1
                if line.startswith(("done ", "disturbed ")):
                    self.ids.add(line.split()[1])

    def candidates(self) -> set[str]:
        """Every id a life may have had, also one killed before it reported."""
        last: dict[str, int] = {}
        for cid in self.ids:
            worker, n = cid.rsplit("-", 1)
            last[worker] = max(last.get(worker, 0), int(n))
        workers = {f"g{g}w{k}" for g in range(1, self.generation + 1) for k in range(3)}
        return {f"{w}-{n}" for w in workers for n in range(last.get(w, 0) + 3)}


def chains_of(network: str, ids: set[str]) -> list[str]:
    """The iptables chains the bridge and portmap plugins name after the
    network and a container (libcni's hash: CNI-, CNI-DN-, CNI-SN- and the
    first hex digits of sha512(network + id))."""
    names = set()
    for cid in ids:
        digest = hashlib.sha512(f"{network}{cid}".encode()).hexdigest()
        names |= {(prefix + digest)[:28] for prefix in ("CNI-", "CNI-DN-", "CNI-SN-")}
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.startswith(":") and line[1:29] in names]


async def test_network_soak_leaves_nothing(base: Path) -> None:
    ns = f"netsoak-{os.getpid()}"
    state = base / "sv"
    async with Daemon(base / "root", base / "state", timeouts=FAST) as daemon:
        app = App(daemon.address, ns, state, base / "rootfs")
        app.start()
        kills = 0
        try:
            for action in PLAN:
                await app.progress(LIVES_BETWEEN)
                if action in ("containerd", "both") and daemon.pid is not None:
                    os.kill(daemon.pid, signal.SIGKILL)
                    kills += 1
                if action in ("application", "both"):
                    app.kill()
                    app.start()
            await app.progress(LIVES_BETWEEN)
        finally:
            if app.proc is not None:
                app.kill()
        # The application's last run was killed too: a client takes up what
        # it left, as the application's next start would.
        async with supervisor.connect(daemon.address, namespace=ns, state_dir=state) as client:
            with anyio.fail_after(60):
                while True:
                    try:
                        restored = await client.restore(attach=False)
                        break
                    except (supervisor.errors.Unavailable, supervisor.errors.DeadlineExceeded):
                        await anyio.sleep(0.1)
                for container, _ in restored:
                    await container.delete(force=True)
                assert await client.containers() == []
        # A shim whose task a killed containerd never recorded (a create it
        # died in) is killed by the Daemon while containerd runs: none may
        # outlive the test (nor its process, in a namespace of ours).
        with anyio.move_on_after(30):
            while shims_of(daemon.address):
                await anyio.sleep(0.2)
        assert shims_of(daemon.address) == []
        print(
            f"network soak: {app.done} lives, {app.disturbed} disturbed, {kills} containerd "
            f"SIGKILLs ({daemon.restarts} restarts), {app.generation - 1} application SIGKILLs"
        )
    nm = NetworkManager(state / ".network" / ns)
    subnet = json.loads((nm.root / "bridge.json").read_text())["subnet"]
    # Records, namespace mounts, cached results, leases, DNS files; rules
    # naming the network or an address of its subnet; veths on its bridge.
    # (With no namespace mount and no task left, no veth can be left
    # either: each one's peer lived in such a namespace.)
    assert leftovers(nm, subnet) == {}
    assert not bridge_exists(nm.bridge)
    assert iptables_lines(nm.bridge) == []
    assert chains_of(nm.bridge, app.candidates()) == []
    assert app.done >= LIVES_BETWEEN * (len(PLAN) + 1)
