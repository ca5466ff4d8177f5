"""Real containers (containerd, runc) put on the default network with
:func:`supervisor.network.apply_network`: a server in one container reached
from the host through a published port and from a second container by
address; the DNS files as the container sees them; nothing left afterwards.

Traffic goes only to 127.0.0.1 and to the test's own containers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import pytest_asyncio

import supervisor
from supervisor.network import NetworkManager, apply_network
from tests.integration.helpers import read_all
from tests.integration.test_network_bridge import host_rules_before, leftovers  # noqa: F401 - autouse

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.network,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and iptables need root"),
    pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"), reason="no CNI plugins"),
]

GUARD = 60.0


@pytest.fixture
def own_rootfs(rootfs: str, tmp_path: Path) -> str:
    # runc makes the mount points of /etc/resolv.conf, hosts and hostname in
    # the rootfs: a copy of our own keeps the shared one untouched.
    target = tmp_path / "rootfs"
    shutil.copytree(rootfs, target, symlinks=True)
    return str(target)


@pytest_asyncio.fixture
async def nm(state_dir: Path) -> AsyncIterator[NetworkManager]:
    async with NetworkManager(state_dir) as manager:
        try:
            yield manager
        finally:
            await manager.release_stale([])


async def start(
    client: supervisor.Client, nm: NetworkManager, rootfs: str, cid: str, script: str, **kw: object
) -> tuple[supervisor.Container, supervisor.Task, supervisor.network.NetworkInfo]:
    info = await nm.attach(cid, **kw)  # type: ignore[arg-type]
    spec = apply_network(supervisor.default_spec(["sh", "-c", script], rootfs), info)
    container = await client.new_container(cid, spec)
    task = await container.new_task()
    await task.start()
    return container, task, info


async def finish(
    nm: NetworkManager, container: supervisor.Container, task: supervisor.Task
) -> None:
    with anyio.CancelScope(shield=True), anyio.fail_after(GUARD):
        with contextlib.suppress(supervisor.errors.NotFound):  # exited already
            await task.kill(9)
        await task.wait()
        await task.delete()
        await container.delete()
        await nm.detach(container.id)


async def test_containers_on_the_bridge(
    client: supervisor.Client, nm: NetworkManager, own_rootfs: str
) -> None:
    # "ready" only once httpd answers (it backgrounds itself without -f).
    server_script = (
        'mkdir -p /tmp/www && echo "hello from $(hostname)" > /tmp/www/index.html'
        " && httpd -p 80 -h /tmp/www"
        " && until wget -q -O /dev/null http://127.0.0.1/; do sleep 0.05; done"
        " && echo ready && exec sleep 1000"
    )
    web, web_task, web_info = await start(
        client, nm, own_rootfs, "web", server_script, ports=["127.0.0.1:0:80"]
    )
    try:
        assert web_task.stdout is not None
        with anyio.fail_after(GUARD):
            assert await web_task.stdout.receive() == b"ready\n"
        # From the host, through the published port.
        reply = await _http_get("127.0.0.1", web_info.host_port(80))
        assert reply.endswith("hello from web")
        # From a second container, by address; and its DNS files as it sees them.
        probe_script = (
            f"wget -q -O - http://{web_info.ip}/; cat /etc/hostname; grep probe /etc/hosts;"
            " grep -c nameserver /etc/resolv.conf || true"
        )
        probe, probe_task, probe_info = await start(client, nm, own_rootfs, "probe", probe_script)
        try:
            with anyio.fail_after(GUARD):
                out = await read_all(probe_task.stdout)
                status = await probe_task.wait()
            assert status.exit_code == 0, out
            lines = out.decode().splitlines()
            assert lines[0] == "hello from web"
            assert lines[1] == "probe"
            assert lines[2].split() == [str(probe_info.ip), "probe"]
        finally:
            await finish(nm, probe, probe_task)
    finally:
        await finish(nm, web, web_task)
    assert leftovers(nm) == {}


async def _http_get(host: str, port: int) -> str:
    with anyio.fail_after(GUARD):
        async with await anyio.connect_tcp(host, port) as stream:
            await stream.send(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
            data = b""
            while True:
                try:
                    data += await stream.receive()
                except anyio.EndOfStream:
                    return data.decode().strip()
