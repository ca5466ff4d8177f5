"""``supervisor run --network bridge -p ...`` and ``ps``'s PORTS, against the
suite's containerd and the real CNI plugins; ``rm -f`` releases it all.

Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import pytest_asyncio

from supervisor.network import NetworkManager
from tests.integration.cli_runner import Cli
from tests.integration.conftest import purge_namespace
from tests.integration.test_network_api import http_get
from tests.integration.test_network_bridge import host_rules_before, leftovers  # noqa: F401 - autouse

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.network,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and iptables need root"),
    pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"), reason="no CNI plugins"),
]


@pytest_asyncio.fixture
async def cli(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, tmp_path: Path
) -> AsyncIterator[Cli]:
    # runc makes the DNS files' mount points in the rootfs: a copy of our own.
    own = tmp_path / "rootfs"
    shutil.copytree(rootfs, own, symlinks=True)
    yield Cli(containerd_address, namespace, state_dir, str(own))
    await purge_namespace(containerd_address, namespace)


async def test_run_publish_ps_rm(cli: Cli) -> None:
    server = (
        'mkdir -p /tmp/www && echo "hello from $(hostname)" > /tmp/www/index.html'
        " && exec httpd -f -p 80 -h /tmp/www"
    )
    code, out, err = await cli(
        "run", "--rootfs", cli.rootfs, "-d", "--name", "web", "--network", "bridge",
        "-p", "127.0.0.1:0:80", "--", "sh", "-c", server,
    )  # fmt: skip
    assert (code, out) == (0, "web\n"), err
    row = await cli.wait_status("web", "running")
    [published] = row["ports"]  # type: ignore[misc]
    assert isinstance(published, str) and published.endswith("->80/tcp")
    port = int(published.split("->")[0].rsplit(":", 1)[1])
    code, out, err = await cli("ps")
    header, line = out.splitlines()
    assert header.split()[-1] == "PORTS" and line.endswith(published), out
    with anyio.fail_after(30):
        while True:  # httpd listens a moment after the task started
            try:
                reply = await http_get(port)
                break
            except OSError:
                await anyio.sleep(0.05)
    assert reply.endswith("hello from web")
    code, out, err = await cli("rm", "-f", "web")
    assert code == 0, err
    nm = NetworkManager(cli.state_dir / ".network" / cli.namespace)
    assert leftovers(nm) == {}


async def test_run_unknown_network_is_refused(cli: Cli) -> None:
    code, out, err = await cli(
        "run", "--rootfs", cli.rootfs, "--rm", "--network", "nowhere", "--", "true"
    )
    assert code != 0 and "nowhere" in err
    assert await cli.ps() == []
