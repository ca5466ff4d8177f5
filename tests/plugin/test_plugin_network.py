"""The ``containers`` fixture on a network: ``containers.run(...,
network="bridge", ports=["127.0.0.1::80"])`` and ``RunningContainer.host_port(80)``, as
testcontainers' ``get_exposed_port``; a container the test leaves on the
network is released at teardown, also one the namespace's purge removed.
Run as in ``test_plugin.py``.

Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from supervisor.testing import Containerd
from tests.plugin.test_plugin import app, run

pytest_plugins = ["pytester"]

__all__ = ["app"]

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and iptables need root"),
    pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"), reason="no CNI plugins"),
]


def test_host_port_of_a_published_port(
    app: pytest.Pytester, containerd_daemon: Containerd, busybox_rootfs: Path, tmp_path: Path
) -> None:
    # runc makes the DNS files' mount points in the rootfs: a copy of our own.
    rootfs = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    app.makepyfile(
        """
        import anyio, os, subprocess

        import supervisor

        SERVER = (
            "mkdir -p /tmp/w && echo hello > /tmp/w/index.html && httpd -p 80 -h /tmp/w"
            " && until wget -q -O /dev/null http://127.0.0.1/; do sleep 0.05; done"
            " && echo ready && exec sleep 1000"
        )

        async def test_server(containers, supervisor_client):
            web = await containers.run(
                ["sh", "-c", SERVER], network="bridge", ports=["127.0.0.1::80"]
            )
            await web.wait_for_line("ready", timeout=30)
            host, port = web.host_port(80)
            assert host == "127.0.0.1" and port > 0
            async with await anyio.connect_tcp(host, port) as stream:
                await stream.send(b"GET / HTTP/1.0\\r\\n\\r\\n")
                data = b""
                while True:
                    try:
                        data += await stream.receive()
                    except anyio.EndOfStream:
                        break
            assert data.endswith(b"hello\\n")
            with pytest.raises(supervisor.errors.NotFound):
                web.host_port(81)

        async def test_left_behind(supervisor_client, busybox_rootfs):
            # Made and left by the test: the namespace's teardown purges it,
            # and releases its network.
            spec = supervisor.default_spec(["true"], str(busybox_rootfs))
            left = await supervisor_client.new_container("left", spec, network="bridge")
            pytest.left_netns = left.network.netns
            assert os.path.exists(pytest.left_netns)

        import pytest

        def test_released():
            netns = pytest.left_netns
            assert not os.path.exists(netns)
            mounts = open("/proc/self/mountinfo").read()
            assert netns not in mounts
        """
    )
    result = run(app, containerd_daemon, rootfs)
    result.assert_outcomes(passed=3)
