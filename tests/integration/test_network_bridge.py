"""supervisor.network with the real CNI plugins (Debian's containernetworking-
plugins): namespaces, veths, leases and iptables rules really made, and
counted again afterwards.  Needs root (namespaces, bridges, iptables).

Traffic goes only to 127.0.0.1 and to the namespaces these tests make.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import pytest_asyncio

from supervisor import errors
from supervisor.network import NetworkManager, NetworkTimeouts, PluginError, scoped_name
from supervisor.network._host import choose_subnet, host_networks
from supervisor.network._netns import list_mounts_under
from tests.unit.test_network_cni import alive, write_plugin

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.network,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and iptables need root"),
    pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"), reason="no CNI plugins"),
]

GUARD = 60.0
PLUGINS = "/usr/lib/cni"

# A TCP server for inside a namespace: says who it is to each client.
SERVER = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1])))
    s.listen(8)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", int(sys.argv[1]) + 1))
    print("ready", flush=True)
    import threading
    def udp():
        while True:
            data, peer = u.recvfrom(100)
            u.sendto(b"udp:" + data, peer)
    threading.Thread(target=udp, daemon=True).start()
    while True:
        c, _ = s.accept()
        c.sendall(("hello from " + sys.argv[2] + "\\n").encode())
        c.close()
    """
)
CLIENT = textwrap.dedent(
    """
    import socket, sys
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
    print(c.makefile().readline().strip())
    """
)


def _iptables_save() -> list[str]:
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()


# The host's rules as the test found them. Another run's leftovers (a run
# killed halfway) may name the subnet this test's manager picks, whose start
# point is a hash of its state directory's path: they are not the test's.
_RULES_BEFORE: set[str] = set()


@pytest.fixture(autouse=True)
def host_rules_before() -> None:
    """Note the host's rules before the test (autouse wherever it is imported)."""
    _RULES_BEFORE.clear()
    _RULES_BEFORE.update(line for line in _iptables_save() if not line.startswith("#"))


def iptables_lines(*needles: str) -> list[str]:
    """The host's rules naming any of ``needles`` that the test did not find there."""
    return [
        line
        for line in _iptables_save()
        if any(n in line for n in needles) and line not in _RULES_BEFORE
    ]


def veths_on(bridge: str) -> list[str]:
    out = subprocess.run(
        ["ip", "-j", "link", "show", "master", bridge], capture_output=True, text=True
    ).stdout
    return [link["ifname"] for link in json.loads(out or "[]")] if out.strip() else []


def bridge_exists(name: str) -> bool:
    return os.path.isdir(f"/sys/class/net/{name}")


def leftovers(nm: NetworkManager, subnet: str | None = None) -> dict[str, Any]:
    """Everything the manager's state dir and the host still hold for it."""
    out: dict[str, Any] = {k: v for k, v in nm.leftovers().items() if v}
    needles = [f'name: \\"{nm.bridge}\\"']
    if subnet:
        needles.append(
            str(ipaddress.ip_network(subnet, strict=False).network_address).rsplit(".", 1)[0] + "."
        )
    rules = iptables_lines(*needles)
    if rules:
        out["rules"] = rules
    if bridge_exists(nm.bridge) and veths_on(nm.bridge):
        out["veths"] = veths_on(nm.bridge)
    mounts = list_mounts_under(nm.state_dir)
    if mounts:
        out["host_mounts"] = mounts
    return out


@pytest_asyncio.fixture
async def nm(tmp_path: Path) -> AsyncIterator[NetworkManager]:
    manager = NetworkManager(tmp_path / "state", conf_dir=tmp_path / "net.d")
    try:
        async with manager:
            yield manager
            await manager.release_stale([])
        assert not bridge_exists(manager.bridge)
    finally:
        await last_resort(manager.state_dir, manager.bridge)


async def last_resort(state_dir: Path, *bridges: str) -> None:
    """After a failed test, whatever release_stale could not release: no
    namespace mount may stay (pytest could not delete the directory, and the
    namespace's veth would live on), no bridge either."""
    with anyio.CancelScope(shield=True), anyio.fail_after(GUARD):
        for mount in list_mounts_under(state_dir):
            await anyio.run_process(["umount", "-l", str(mount)], check=False)
        for bridge in bridges:
            if bridge_exists(bridge):
                await anyio.run_process(["ip", "link", "delete", bridge], check=False)


class NetnsProcess:
    """A process run inside a network namespace (nsenter --net)."""

    def __init__(self, proc: anyio.abc.Process) -> None:
        self.proc = proc

    async def line(self) -> str:
        assert self.proc.stdout is not None
        data = b""
        with anyio.fail_after(GUARD):
            while not data.endswith(b"\n"):
                chunk = await self.proc.stdout.receive(1)
                data += chunk
        return data.decode().strip()


async def in_netns(netns: str, code: str, *args: str) -> NetnsProcess:
    proc = await anyio.open_process(
        ["nsenter", f"--net={netns}", sys.executable, "-c", code, *args],
        stderr=subprocess.DEVNULL,
    )
    return NetnsProcess(proc)


async def stop(p: NetnsProcess) -> None:
    with anyio.CancelScope(shield=True):
        if p.proc.returncode is None:
            p.proc.kill()
        await p.proc.wait()
        await p.proc.aclose()


async def tcp_line(host: str, port: int) -> str:
    with anyio.fail_after(GUARD):
        async with await anyio.connect_tcp(host, port) as stream:
            data = b""
            while not data.endswith(b"\n"):
                data += await stream.receive()
            return data.decode().strip()


async def udp_echo(host: str, port: int, payload: bytes) -> bytes:
    with anyio.fail_after(GUARD):
        async with await anyio.create_connected_udp_socket(host, port) as udp:
            # UDP may be dropped before the DNAT rule sees the first packet's
            # conntrack entry settle; resend until the echo comes.
            while True:
                await udp.send(payload)
                with anyio.move_on_after(0.5):
                    return await udp.receive()


# -- the round trip ------------------------------------------------------------


async def test_attach_detach_round_trip_leaves_nothing(nm: NetworkManager) -> None:
    info = await nm.attach("web", ports=["127.0.0.1:0:80", "127.0.0.1:0:81/udp"])
    assert info.ip is not None and info.gateway is not None and info.interface == "eth0"
    assert info.netns == str(nm.root / "netns" / "web")
    subnet = f"{info.gateway}/{info.prefix_length}"
    # What attach made exists: lease, rules, veth, namespace mount, files.
    held = leftovers(nm, subnet)
    assert held["records"] == ["web.json"] and held["leases"] == ["web"]
    assert held["veths"] and held["rules"] and held["mounts"] == [info.netns]
    assert all(p.host_port > 0 for p in info.ports)
    assert await nm.info("web") == info
    await nm.detach("web")
    assert leftovers(nm, subnet) == {}
    await nm.detach("web")  # idempotent
    assert await nm.info("web") is None


async def test_a_server_is_reached_through_a_published_port_and_by_ip(
    nm: NetworkManager,
) -> None:
    web = await nm.attach("web", ports=["127.0.0.1:0:80", "127.0.0.1:0:81/udp"])
    other = await nm.attach("other")
    assert web.ip != other.ip and web.netns is not None and other.netns is not None
    server = await in_netns(web.netns, SERVER, "80", "web")
    try:
        assert await server.line() == "ready"
        # From the host, through portmap's DNAT on 127.0.0.1.
        assert await tcp_line("127.0.0.1", web.host_port(80)) == "hello from web"
        assert await udp_echo("127.0.0.1", web.host_port(81, "udp"), b"ping") == b"udp:ping"
        # From a second namespace on the bridge, by address.
        client = await in_netns(other.netns, CLIENT, str(web.ip), "80")
        try:
            assert await client.line() == "hello from web"
        finally:
            await stop(client)
    finally:
        await stop(server)
    await nm.detach("web")
    await nm.detach("other")
    assert leftovers(nm) == {}


async def test_concurrent_attaches_share_one_bridge_and_subnet(nm: NetworkManager) -> None:
    # The first attaches race to choose the subnet and make the bridge.
    infos: dict[str, Any] = {}

    async def attach(cid: str) -> None:
        infos[cid] = await nm.attach(cid, ports=["127.0.0.1:0:80"])

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(attach, f"c{i}")
    assert len({info.ip for info in infos.values()}) == 4
    assert len({info.gateway for info in infos.values()}) == 1
    assert len(veths_on(nm.bridge)) == 4
    async with anyio.create_task_group() as tg:
        for cid in infos:
            tg.start_soon(nm.detach, cid)
    assert leftovers(nm, f"{infos['c0'].gateway}/24") == {}


async def test_attach_cancelled_at_any_point_leaves_nothing(nm: NetworkManager) -> None:
    # Cancelled at arbitrary moments (which step it hits varies from run to
    # run; what must hold does not): each attach either finished or left
    # nothing, and everything attached detaches to nothing.
    rng = random.Random(23)
    attached = []
    for i in range(12):
        cid = f"c{i}"
        with anyio.move_on_after(rng.uniform(0, 0.4)):
            await nm.attach(cid, ports=["127.0.0.1:0:80"])
            attached.append(cid)
        held = nm.leftovers()
        assert held["records"] == [f"{c}.json" for c in sorted(attached)], held
        assert held["leases"] == sorted(attached) and held["cache"] == sorted(
            f"{nm.bridge}-{c}-eth0" for c in attached
        )
    for cid in attached:
        await nm.detach(cid)
    assert leftovers(nm) == {}


async def test_dns_files(nm: NetworkManager) -> None:
    info = await nm.attach("dns-test", hostname="box.example")
    assert info.resolv_conf and info.hosts and info.hostname_file and info.ip
    resolv = Path(info.resolv_conf).read_text()
    assert "127.0.0." not in resolv and "::1" not in resolv
    host_servers = [
        line.split()[1]
        for line in Path("/etc/resolv.conf").read_text().splitlines()
        if line.startswith("nameserver") and not line.split()[1].startswith(("127.", "::1"))
    ]
    assert [line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver")] == (
        host_servers
    )
    assert f"{info.ip}\tbox.example box" in Path(info.hosts).read_text()
    assert Path(info.hostname_file).read_text() == "box.example\n"
    await nm.detach("dns-test")
    assert not Path(info.resolv_conf).exists()


async def test_none_and_host_networks(nm: NetworkManager) -> None:
    none = await nm.attach("quiet", network="none")
    assert none.netns is not None and none.ip is None
    out = await anyio.run_process(["nsenter", f"--net={none.netns}", "ip", "-j", "link"])
    assert [link["ifname"] for link in json.loads(out.stdout)] == ["lo"]
    host = await nm.attach("hosty", network="host")
    assert host.netns is None and host.resolv_conf and host.hosts
    # Copies of the host's files, never the files themselves.
    assert Path(host.resolv_conf).read_bytes() == Path("/etc/resolv.conf").read_bytes()
    assert Path(host.hosts).read_bytes() == Path("/etc/hosts").read_bytes()
    assert not Path(host.hosts).samefile("/etc/hosts")
    with pytest.raises(errors.InvalidArgument, match="ports"):
        await nm.attach("x", network="none", ports=["80"])
    await nm.detach("quiet")
    await nm.detach("hosty")
    assert leftovers(nm) == {}


# -- bad input ---------------------------------------------------------------------


async def test_a_taken_port_is_refused_and_nothing_is_made(nm: NetworkManager) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(errors.AlreadyExists, match=str(port)):
            await nm.attach("web", ports=["127.0.0.1:0:81", f"127.0.0.1:{port}:80"])
    assert leftovers(nm) == {}
    # A port this manager published is taken too, for everybody.
    first = await nm.attach("first", ports=["127.0.0.1:0:80"])
    with pytest.raises(errors.AlreadyExists):
        await nm.attach("second", ports=[f"127.0.0.1:{first.host_port(80)}:80"])
    with socket.socket() as s, pytest.raises(OSError):
        s.bind(("127.0.0.1", first.host_port(80)))
    with pytest.raises(errors.AlreadyExists, match="attached"):
        await nm.attach("first")
    await nm.detach("first")
    assert leftovers(nm) == {}


async def test_unknown_and_malformed_networks(nm: NetworkManager, tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound, match="nope"):
        await nm.attach("web", network="nope")
    conf = tmp_path / "net.d"
    conf.mkdir()
    (conf / "10-bad.conflist").write_text('{"name": "bad", "cniVersion": "1.0.0", "plugins": ')
    with pytest.raises(errors.InvalidArgument, match="not JSON"):
        await nm.attach("web", network="bad")
    (conf / "20-missing.conflist").write_text(
        json.dumps({"name": "missing", "cniVersion": "1.0.0", "plugins": [{"type": "nosuch"}]})
    )
    with pytest.raises(errors.InvalidArgument, match="nosuch"):
        await nm.attach("web", network="missing")
    with pytest.raises(errors.InvalidArgument, match="nosuch"):
        await nm.status("missing")
    await nm.status()  # the default network's plugins are all there
    for bad in ("../x", "-web", ""):
        with pytest.raises(errors.InvalidArgument):
            await nm.attach(bad)
    with pytest.raises(errors.InvalidArgument):
        await nm.attach("web", ports=["80/icmp"])
    with pytest.raises(errors.InvalidArgument, match="IPv4"):
        await nm.attach("web", ports=["[::1]:0:80"])
    assert leftovers(nm) == {}


def subnet_and_bridge(tmp_path: Path, used: Any) -> tuple[str, str]:
    tag = hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]
    return str(choose_subnet(tmp_path / "custom", used, own_dev="")), f"svt-{tag}"


@pytest_asyncio.fixture
async def custom(tmp_path: Path) -> AsyncIterator[Callable[..., NetworkManager]]:
    """A manager whose conf_dir has a network "custom": a bridge of its own,
    then the given extra plugins (fakes in a tmp CNI_PATH)."""
    subnet, bridge = subnet_and_bridge(tmp_path, await host_networks())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("fake-a", "fake-b"):
        write_plugin(bin_dir, name)
    made: list[NetworkManager] = []

    def make(*extra: dict[str, Any], timeout: float = 30.0) -> NetworkManager:
        conf = tmp_path / "net.d"
        conf.mkdir(exist_ok=True)
        plugins = [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": True,
                "ipam": {
                    "type": "host-local",
                    "subnet": subnet,
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(tmp_path / "state" / "network" / "ipam"),
                },
            },
            *extra,
        ]
        (conf / "50-custom.conflist").write_text(
            json.dumps({"cniVersion": "1.0.0", "name": "custom", "plugins": plugins})
        )
        nm = NetworkManager(
            tmp_path / "state",
            conf_dir=conf,
            cni_path=[bin_dir, PLUGINS],
            timeouts=NetworkTimeouts(plugin=timeout),
        )
        made.append(nm)
        return nm

    make.subnet = subnet  # type: ignore[attr-defined]
    make.bridge = bridge  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        # Whatever a failed test left: released, then the bridges removed.
        try:
            with anyio.CancelScope(shield=True), anyio.fail_after(GUARD):
                if made:
                    async with made[-1] as nm:
                        await nm.release_stale([])
        finally:
            await last_resort(tmp_path / "state", bridge, scoped_name(tmp_path / "state"))


def custom_leftovers(nm: NetworkManager, subnet: str, bridge: str) -> dict[str, Any]:
    out = leftovers(nm, subnet)
    rules = iptables_lines('name: \\"custom\\"')
    if rules:
        out["custom_rules"] = rules
    if bridge_exists(bridge) and veths_on(bridge):
        out["custom_veths"] = veths_on(bridge)
    return out


async def test_a_failing_plugin_leaves_nothing_half_made(
    custom: Callable[..., NetworkManager], tmp_path: Path
) -> None:
    make: Any = custom
    log = str(tmp_path / "calls.jsonl")
    async with make({"type": "fake-a", "mode": "fail", "code": 7, "log": log}) as nm:
        with pytest.raises(PluginError) as caught:
            await nm.attach("web", network="custom")
        assert isinstance(caught.value, errors.InvalidArgument)
        assert caught.value.plugin == "fake-a" and caught.value.code == 7
        # The bridge plugin had made a veth, a lease and masquerade rules:
        # all DELeted again, and the namespace is gone.
        assert custom_leftovers(nm, make.subnet, make.bridge) == {}


async def test_a_hanging_plugin_is_bounded_and_leaves_nothing(
    custom: Callable[..., NetworkManager], tmp_path: Path
) -> None:
    make: Any = custom
    pids = tmp_path / "pids"
    # The bound is each plugin's: the real bridge plugin before fake-a must
    # finish within it, also on an emulated CPU (the cgroup v2 lane's VM took
    # over a second there).
    async with make({"type": "fake-a", "mode": "hang", "pids": str(pids)}, timeout=5.0) as nm:
        with pytest.raises(errors.DeadlineExceeded, match="fake-a"):
            await nm.attach("web", network="custom")
        assert custom_leftovers(nm, make.subnet, make.bridge) == {}
        for pid in map(int, pids.read_text().split()):
            with anyio.fail_after(GUARD):
                while os.path.exists(f"/proc/{pid}") and "Z" not in _state(pid):
                    await anyio.sleep(0.01)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


async def test_cancelling_attach_leaves_nothing(
    custom: Callable[..., NetworkManager], tmp_path: Path
) -> None:
    make: Any = custom
    pids = tmp_path / "pids"
    async with make({"type": "fake-a", "mode": "hang", "pids": str(pids)}) as nm:
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(functools.partial(nm.attach, "web", network="custom"))
                while not pids.exists() or len(pids.read_text().split()) < 2:
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
        assert custom_leftovers(nm, make.subnet, make.bridge) == {}


async def test_check_on_a_network_without_portmap(custom: Callable[..., NetworkManager]) -> None:
    make: Any = custom
    async with make({"type": "firewall", "backend": "iptables"}) as nm:
        info = await nm.attach("web", network="custom")
        await nm.check("web")
        assert info.netns is not None
        # Take the container's default route away: CHECK notices.  (Not its
        # address: bridge's DEL finds the masquerade rules by the addresses
        # it still sees in the namespace.)
        await anyio.run_process(["nsenter", f"--net={info.netns}", "ip", "route", "del", "default"])
        with pytest.raises(PluginError, match="bridge"):
            await nm.check("web")
        await nm.detach("web")
        assert custom_leftovers(nm, make.subnet, make.bridge) == {}


# -- crashes and state directories -----------------------------------------------------

CRASHING_ATTACH = textwrap.dedent(
    """
    import anyio, sys
    from supervisor.network import NetworkManager
    async def main():
        nm = NetworkManager(sys.argv[1], conf_dir=sys.argv[2], cni_path=sys.argv[3].split(":"))
        async with nm:
            await nm.attach("kept")
            await nm.attach("crashed", network="custom")  # hangs in fake-a: killed then
    anyio.run(main)
    """
)


async def test_release_stale_after_a_crash_mid_attach(
    custom: Callable[..., NetworkManager], tmp_path: Path
) -> None:
    make: Any = custom
    pids = tmp_path / "pids"
    nm = make({"type": "fake-a", "mode": "hang", "pids": str(pids)})
    proc = await anyio.open_process(
        [
            sys.executable,
            "-c",
            CRASHING_ATTACH,
            str(nm.state_dir),
            str(nm.conf_dir),
            ":".join(str(p) for p in nm.cni.paths),
        ],
        cwd=str(Path(__file__).parents[2]),
    )
    try:
        with anyio.fail_after(GUARD):
            while not pids.exists() or len(pids.read_text().split()) < 2:
                await anyio.sleep(0.01)
    finally:
        # The application dies mid-ADD; so does the plugin it was running.
        proc.kill()
        await proc.wait()
        await proc.aclose()
        for pid in map(int, pids.read_text().split()):
            os.kill(pid, signal.SIGKILL)
    async with nm:
        held = custom_leftovers(nm, make.subnet, make.bridge)
        assert held["records"] == ["crashed.json", "kept.json"]
        assert "crashed" in held["leases"] and held["custom_veths"]
        assert await nm.release_stale(["kept"]) == ["crashed"]
        assert (await nm.info("kept")) is not None
        assert nm.leftovers()["records"] == ["kept.json"]
        assert custom_leftovers(nm, make.subnet, make.bridge).get("custom_veths") is None
        await nm.release_stale([])
        assert custom_leftovers(nm, make.subnet, make.bridge) == {}


ORPHANING_ATTACH = textwrap.dedent(
    """
    import anyio, sys
    from supervisor.network import NetworkManager
    async def main():
        nm = NetworkManager(sys.argv[1], conf_dir=sys.argv[2], cni_path=sys.argv[3].split(":"))
        async with nm:
            await nm.attach("orphaned", network="custom")  # killed while fake-a runs
    anyio.run(main)
    """
)


async def test_a_sweep_waits_for_the_plugins_a_killed_application_left_running(
    custom: Callable[..., NetworkManager], tmp_path: Path
) -> None:
    # A plugin runs in a session of its own: killing the application that
    # ran it leaves it running.  A sweep that DELs meanwhile races its ADD
    # (portmap's DEL then failed with its chain still referenced, and the
    # ADD's rules stayed): the sweep must wait for it, then DEL.
    make: Any = custom
    pids, go, marker = tmp_path / "pids", tmp_path / "go", tmp_path / "added"
    slow = {"type": "fake-a", "mode": "slow", "pids": str(pids), "go": str(go)}
    nm = make({**slow, "marker": str(marker)})
    proc = await anyio.open_process(
        [
            sys.executable,
            "-c",
            ORPHANING_ATTACH,
            str(nm.state_dir),
            str(nm.conf_dir),
            ":".join(str(p) for p in nm.cni.paths),
        ],
        cwd=str(Path(__file__).parents[2]),
    )
    try:
        with anyio.fail_after(GUARD):
            while not pids.exists() or not pids.read_text():
                await anyio.sleep(0.01)
    finally:
        proc.kill()
        await proc.wait()
        await proc.aclose()
    orphan = int(pids.read_text())
    released: list[list[str]] = []

    async def sweep() -> None:
        released.append(await nm.release_stale([]))

    async with nm:
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(sweep)
                # The orphan finishes its ADD only now: a sweep that did
                # not wait for it has DELeted already.
                await anyio.sleep(0.5)
                go.touch()
            while alive(orphan):
                await anyio.sleep(0.01)
        assert released == [["orphaned"]]
        assert not marker.exists(), "the ADD finished after the DEL: its work was left"
        assert custom_leftovers(nm, make.subnet, make.bridge) == {}


async def test_release_stale_goes_on_past_a_failing_container(
    custom: Callable[..., NetworkManager], tmp_path: Path
) -> None:
    make: Any = custom
    broken = tmp_path / "broken"
    broken.touch()
    failing = {"type": "fake-a", "mode": "fail", "fail_on": ["DEL"], "fail_if": str(broken)}
    async with make(failing) as nm:
        await nm.attach("bad", network="custom")
        await nm.attach("good")
        with pytest.raises(PluginError, match="fake-a"):
            await nm.release_stale([])
        # "bad" sorts first: its failure did not keep "good" from going.
        held = nm.leftovers()
        assert held["records"] == ["bad.json"] and held["cache"] == ["custom-bad-eth0"]
        # (The bridge plugin's DEL ran even though fake-a's failed.)
        broken.unlink()
        assert await nm.release_stale([]) == ["bad"]
        assert custom_leftovers(nm, make.subnet, make.bridge) == {}


async def drop_masquerade(network: str, cid: str) -> list[str]:
    """Remove the bridge plugin's masquerade rules of one container by hand;
    the rules there were."""
    comment = f'name: \\"{network}\\" id: \\"{cid}\\"'
    rules = iptables_lines(comment)
    for line in rules:
        if line.startswith("-A POSTROUTING "):
            args = shlex.split(line)[2:]
            await anyio.run_process(["iptables", "-t", "nat", "-D", "POSTROUTING", *args])
    for chain in {line.split()[1] for line in rules if line.startswith("-A CNI-")}:
        await anyio.run_process(["iptables", "-t", "nat", "-F", chain])
        await anyio.run_process(["iptables", "-t", "nat", "-X", chain])
    return rules


async def test_release_stale_after_the_namespace_was_lost(nm: NetworkManager) -> None:
    # As after a reboot: the namespace's mount is gone, its file is still there.
    info = await nm.attach("web")
    assert info.netns is not None
    await anyio.run_process(["umount", info.netns])
    assert await nm.release_stale([]) == ["web"]
    held = leftovers(nm)
    # The bridge plugin finds a container's masquerade rules by the addresses
    # it sees in the namespace: with the namespace gone, they stay (after a
    # real reboot, they are gone too).  Everything else was released.
    rules = await drop_masquerade(nm.bridge, "web")
    assert held.pop("rules") == rules and len(rules) == 3
    assert held == {} and leftovers(nm) == {}


async def test_published_ports_stay_held_across_a_manager_restart(tmp_path: Path) -> None:
    async with NetworkManager(tmp_path / "s") as first:
        info = await first.attach("web", ports=["127.0.0.1:0:80"])
    port = info.host_port(80)
    # Closed: the sockets went with it (the rules did not).
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
    async with NetworkManager(tmp_path / "s") as second:
        with socket.socket() as s, pytest.raises(OSError):
            s.bind(("127.0.0.1", port))
        await second.detach("web")
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
        assert leftovers(second) == {}


async def test_a_cancelled_detach_can_be_retried(
    custom: Callable[..., NetworkManager], tmp_path: Path
) -> None:
    make: Any = custom
    stuck = tmp_path / "stuck"
    pids = tmp_path / "pids"
    hang = {"type": "fake-a", "mode": "hang", "fail_on": ["DEL"], "fail_if": str(stuck),
            "pids": str(pids)}  # fmt: skip
    async with make(hang) as nm:
        await nm.attach("web", network="custom")
        stuck.touch()
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(nm.detach, "web")
                while not pids.exists() or len(pids.read_text().split()) < 2:
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
        # Nothing was half removed: the record and namespace are there for a retry.
        assert nm.leftovers()["records"] == ["web.json"]
        stuck.unlink()
        await nm.detach("web")
        assert custom_leftovers(nm, make.subnet, make.bridge) == {}


async def test_two_state_dirs_do_not_collide(tmp_path: Path) -> None:
    async with (
        NetworkManager(tmp_path / "one") as one,
        NetworkManager(tmp_path / "two") as two,
    ):
        try:
            a = await one.attach("web", ports=["127.0.0.1:0:80"])
            b = await two.attach("web", ports=["127.0.0.1:0:80"])
            assert one.bridge != two.bridge
            assert a.gateway != b.gateway and a.ip != b.ip
            net_a = ipaddress.ip_network(f"{a.gateway}/{a.prefix_length}", strict=False)
            net_b = ipaddress.ip_network(f"{b.gateway}/{b.prefix_length}", strict=False)
            assert not net_a.overlaps(net_b)
            assert a.host_port(80) != b.host_port(80)
            await one.detach("web")
            assert leftovers(one) == {}
            # The other's container is untouched.
            assert two.leftovers()["leases"] == ["web"] and veths_on(two.bridge)
            assert b.netns is not None
            server = await in_netns(b.netns, SERVER, "80", "two")
            try:
                assert await server.line() == "ready"
                assert await tcp_line("127.0.0.1", b.host_port(80)) == "hello from two"
            finally:
                await stop(server)
        finally:
            await one.release_stale([])
            await two.release_stale([])
    assert leftovers(one) == {} and leftovers(two) == {}
    assert not bridge_exists(one.bridge) and not bridge_exists(two.bridge)


async def test_a_subnet_in_use_on_the_host_is_refused(tmp_path: Path) -> None:
    used = [
        u
        for u in await host_networks()
        if u.network.version == 4 and u.dev != "lo" and u.network.prefixlen <= 30
    ]
    if not used:
        pytest.skip("the host has no IPv4 network of its own (the cgroup v2 guest has no NIC)")
    taken = str(used[0].network)
    async with NetworkManager(tmp_path / "s", subnet=taken) as nm:
        with pytest.raises(errors.AlreadyExists, match="in use"):
            await nm.attach("web")
        assert leftovers(nm) == {}
        assert not bridge_exists(nm.bridge)
