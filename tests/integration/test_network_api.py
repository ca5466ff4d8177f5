"""``network=`` and ``ports=`` of ``new_container``/``running``/``run``
against a real containerd with the real CNI plugins: a server reached from
the host through its published port on 127.0.0.1 and from a second
container by address, the DNS files as the container reads them, restore,
and refused creates that leave nothing behind.

Traffic goes only to 127.0.0.1 and to the test's own containers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import supervisor
from supervisor.network import NetworkManager
from tests.integration.helpers import read_all
from tests.integration.test_network_bridge import host_rules_before, leftovers  # noqa: F401 - autouse

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.network,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and iptables need root"),
    pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"), reason="no CNI plugins"),
]

GUARD = 60.0

SERVER = (
    'mkdir -p /tmp/www && echo "hello from $(hostname)" > /tmp/www/index.html'
    " && httpd -p 80 -h /tmp/www"
    " && until wget -q -O /dev/null http://127.0.0.1/; do sleep 0.05; done"
    " && echo ready && exec sleep 1000"
)


@pytest.fixture
def own_rootfs(rootfs: str, tmp_path: Path) -> str:
    # runc makes the mount points of /etc/resolv.conf, hosts and hostname in
    # the rootfs: a copy of our own keeps the shared one untouched.
    target = tmp_path / "rootfs"
    shutil.copytree(rootfs, target, symlinks=True)
    return str(target)


def client_network(client: supervisor.Client) -> NetworkManager:
    """A manager on the client's network directory, for counting only."""
    return NetworkManager(client.state_dir / ".network" / client.namespace)


def left(client: supervisor.Client) -> dict[str, Any]:
    """What the client's network still holds: records, mounts, leases...,
    and iptables rules naming its network or an address of its subnet."""
    nm = client_network(client)
    chosen = nm.root / "bridge.json"
    subnet = json.loads(chosen.read_text())["subnet"] if chosen.exists() else None
    return leftovers(nm, subnet)


def spec(rootfs: str, script: str) -> dict[str, Any]:
    return supervisor.default_spec(["sh", "-c", script], rootfs)


async def http_get(port: int) -> str:
    with anyio.fail_after(GUARD):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
            data = b""
            while True:
                try:
                    data += await stream.receive()
                except anyio.EndOfStream:
                    return data.decode().strip()


async def test_server_reached_from_host_and_container(
    client: supervisor.Client, own_rootfs: str
) -> None:
    async with client.running(
        "web", spec(own_rootfs, SERVER), network="bridge", ports=["127.0.0.1:0:80"]
    ) as web:
        assert web.stdout is not None
        with anyio.fail_after(GUARD):
            assert await web.stdout.receive() == b"ready\n"
        info = web.network
        assert info is not None and info.ip is not None and info.gateway is not None
        assert info.interface == "eth0"
        container = await client.load_container("web")
        assert container.network is not None and container.network.ip == info.ip
        # From the host, through the published port.
        assert (await http_get(info.host_port(80))).endswith("hello from web")
        # From a second container, by address; its DNS files as it reads them.
        probe = (
            f"wget -q -O - http://{info.ip}/; cat /etc/hostname; grep probe /etc/hosts;"
            " cat /etc/resolv.conf"
        )
        with anyio.fail_after(GUARD):
            result = await client.run("probe", spec(own_rootfs, probe), network="bridge")
        assert result.exit_code == 0, result.stderr
        lines = result.stdout.decode().splitlines()
        assert lines[0] == "hello from web"
        assert lines[1] == "probe"
        assert lines[2].split()[1:] == ["probe"]
        nameservers = [line.split()[1] for line in lines[3:] if line.startswith("nameserver")]
        assert not any(ns.startswith("127.") for ns in nameservers)
    assert left(client) == {}


async def test_successive_tasks_keep_the_network(
    client: supervisor.Client, own_rootfs: str
) -> None:
    container = await client.new_container(
        "twice", spec(own_rootfs, "ip -4 -o addr show eth0"), network="bridge"
    )
    try:
        assert container.network is not None
        outputs = []
        for _ in range(2):
            task = await container.new_task()
            await task.start()
            with anyio.fail_after(GUARD):
                outputs.append(await read_all(task.stdout))
                await task.wait()
            await task.delete()
        assert all(f"inet {container.network.ip}/" in o.decode() for o in outputs), outputs
    finally:
        await container.delete(force=True)
    assert left(client) == {}


async def test_forced_delete_of_a_running_container_releases(
    client: supervisor.Client, own_rootfs: str
) -> None:
    container = await client.new_container(
        "forced", spec(own_rootfs, "exec sleep 1000"), network="bridge", ports=["127.0.0.1:0:80"]
    )
    task = await container.new_task()
    await task.start()
    assert left(client)["records"] == ["forced.json"]
    await container.delete(force=True)
    assert left(client) == {}


async def test_host_network(client: supervisor.Client, own_rootfs: str) -> None:
    result = await client.run(
        "onhost", spec(own_rootfs, "readlink /proc/self/ns/net"), network="host"
    )
    assert result.exit_code == 0
    assert result.stdout.decode().strip() == os.readlink("/proc/self/ns/net")
    assert left(client) == {}


async def test_restore_gives_the_network_back_and_releases_the_gone(
    client: supervisor.Client,
    own_rootfs: str,
    supervisor_client_factory: Any,
) -> None:
    kept = await client.new_container("kept", spec(own_rootfs, "true"), network="bridge")
    gone = await client.new_container("gone", spec(own_rootfs, "true"), network="bridge")
    assert kept.network is not None
    # "gone" is deleted behind the library's back (another client of
    # containerd, or a crash between the delete and the release).
    transport = client._session.transport
    await transport.delete_container(gone.id)
    assert sorted(left(client)["records"]) == ["gone.json", "kept.json"]
    async with supervisor_client_factory() as again:
        restored = {c.id: c for c, _ in await again.restore()}
        assert set(restored) == {"kept"}
        assert restored["kept"].network == kept.network
        assert left(again)["records"] == ["kept.json"]
        await restored["kept"].delete()
    assert left(client) == {}


# -- refused creates leave nothing ---------------------------------------------


async def assert_refused(
    client: supervisor.Client,
    error: type[supervisor.errors.SupervisorError],
    rootfs: str,
    **kw: Any,
) -> supervisor.errors.SupervisorError:
    with pytest.raises(error) as caught:
        await client.new_container("refused", spec(rootfs, "true"), **kw)
    assert [c.id for c in await client.containers()] == []
    assert left(client) == {}
    return caught.value


async def test_port_taken(client: supervisor.Client, own_rootfs: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        await assert_refused(
            client,
            supervisor.errors.AlreadyExists,
            own_rootfs,
            network="bridge",
            ports=[f"127.0.0.1:{port}:80"],
        )


async def test_bad_network_arguments(
    client: supervisor.Client, own_rootfs: str, tmp_path: Path
) -> None:
    conf = tmp_path / "net.d"
    conf.mkdir()
    (conf / "10-broken.conflist").write_text('{"cniVersion": "1.0.0", "name": "broken", ')
    (conf / "20-noplugin.conflist").write_text(
        json.dumps(
            {"cniVersion": "1.0.0", "name": "noplugin", "plugins": [{"type": "no-such-plugin"}]}
        )
    )
    refused = supervisor.errors
    await assert_refused(client, refused.NotFound, own_rootfs, network="nowhere")
    await assert_refused(client, refused.NotFound, own_rootfs, network="nowhere", cni_conf_dir=conf)
    await assert_refused(
        client, refused.InvalidArgument, own_rootfs, network="broken", cni_conf_dir=conf
    )
    error = await assert_refused(
        client, refused.InvalidArgument, own_rootfs, network="noplugin", cni_conf_dir=conf
    )
    assert "no-such-plugin" in str(error)
    await assert_refused(client, refused.InvalidArgument, own_rootfs, ports=["80"])
    await assert_refused(
        client, refused.InvalidArgument, own_rootfs, network="bridge", ports=["99999:80"]
    )
    await assert_refused(client, refused.InvalidArgument, own_rootfs, network="bridge", ports="80")


async def test_create_refused_after_attach_is_undone(
    client: supervisor.Client, own_rootfs: str
) -> None:
    # containerd refuses the create (the id is taken): the attachment made
    # for it is undone, the existing container untouched.
    existing = await client.new_container("taken", spec(own_rootfs, "true"))
    with pytest.raises(supervisor.errors.AlreadyExists):
        await client.new_container(
            "taken", spec(own_rootfs, "true"), network="bridge", ports=["127.0.0.1:0:80"]
        )
    assert left(client) == {}
    assert [c.id for c in await client.containers()] == ["taken"]
    await existing.delete()


async def test_replace_a_container_on_a_network(client: supervisor.Client, own_rootfs: str) -> None:
    first = await client.new_container("same", spec(own_rootfs, "true"), network="bridge")
    second = await client.new_container(
        "same", spec(own_rootfs, "true"), network="bridge", replace=True
    )
    assert first.network is not None and second.network is not None
    assert left(client)["records"] == ["same.json"]
    await second.delete()
    assert left(client) == {}


async def test_a_sweep_spares_a_create_in_flight_elsewhere(
    client: supervisor.Client, own_rootfs: str, supervisor_client_factory: Any
) -> None:
    # Another process is between attaching "inflight" and containerd
    # creating it: its record names an id containerd does not know yet.
    network = client._network
    manager = await network.manager()
    mark = await network._pending.hold("inflight")
    try:
        await manager.attach("inflight")
        async with supervisor_client_factory() as other:
            await other.restore()  # sweeps what gone containers held
            await other.new_container("next", spec(own_rootfs, "true"), network="bridge")
            assert sorted(left(other)["records"]) == ["inflight.json", "next.json"]
            # The same id cannot be created twice at once.
            with pytest.raises(supervisor.errors.AlreadyExists, match="another client"):
                await other.new_container("inflight", spec(own_rootfs, "true"), network="bridge")
            await (await other.load_container("next")).delete()
    finally:
        network._pending.drop("inflight", mark)
    # Its create never came (the process died): the next sweep releases it.
    async with supervisor_client_factory() as after:
        await after.restore()
    assert left(client) == {}


@pytest.mark.parametrize("when", ["pending", "record", "attached"])
async def test_a_cancelled_create_leaves_nothing(
    client: supervisor.Client, own_rootfs: str, when: str
) -> None:
    # Cancelled as soon as the create is that far (wherever it then really
    # is: a later point must leave nothing either).
    root = client.state_dir / ".network" / client.namespace
    record = root / "network" / "containers" / "cancelled.json"

    def reached() -> bool:
        if when == "pending":
            return (root / "pending" / "cancelled").exists()
        if when == "record":
            return record.exists()
        return record.exists() and '"attached": true' in record.read_text()

    made: list[supervisor.Container] = []

    async def create() -> None:
        made.append(
            await client.new_container(
                "cancelled", spec(own_rootfs, "true"), network="bridge", ports=["127.0.0.1:0:80"]
            )
        )

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(create)
            while not reached():
                await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
    # Finished before the cancellation came (rarely): then it is deleted.
    for container in made:
        await container.delete()
    assert await client.containers() == []
    assert left(client) == {}
