"""``run --restart`` records a policy that the application holding the
state directory enforces; ``ps`` and ``inspect`` show the policy, the
restarts and the health."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import supervisor
from tests.integration.cli_runner import Cli

pytestmark = pytest.mark.asyncio


async def test_run_restart_is_enforced_by_the_application_and_shown(
    cli: Cli, containerd_address: str, namespace: str, state_dir: Path
) -> None:
    code, out, err = await cli(
        "run", "--rootfs", cli.rootfs, "-d", "--name", "svc", "--restart", "on-failure:1",
        "--", "sh", "-c", "sleep 0.5; exit 4",
    )  # fmt: skip
    assert (code, out) == (0, "svc\n"), err
    (row,) = await cli.ps()
    assert row["supervision"] == {
        "restart_policy": "on-failure:1",
        "restart_count": 0,
        "last_exit": None,
        "health": None,
    }
    # The command has ended; the application takes the container up.
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as client:
        ((container, _),) = await client.restore()
        with anyio.fail_after(30):
            while container.restart_count != 1:
                await anyio.sleep(0.05)
            final = await (await container.task()).wait()
            # Decided on (and not restarted: on-failure:1 made its one).
            while container.last_exit is None or container.last_exit.exited_at != final.exited_at:
                await anyio.sleep(0.05)
    code, out, err = await cli("ps")
    assert code == 0, err
    header, line = out.splitlines()
    assert header.split()[-2:] == ["RESTARTS", "HEALTH"]
    assert line.split()[-1] == "1"
    code, out, err = await cli("inspect", "svc")
    assert code == 0, err
    fields = {k: v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
    assert fields["Restart policy"] == "on-failure:1"
    assert fields["Restarts"] == "1"
    assert fields["Last exit"].startswith("4 at ")


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--restart", "sometimes"], "--restart sometimes"),
        (["--restart", "on-failure:-1"], "--restart on-failure:-1"),
        (["--restart", "always", "--rm"], "--restart cannot be combined with --rm"),
        (["--restart", "always"], "--restart needs -d"),
    ],
)
async def test_run_refuses_a_bad_restart(cli: Cli, flags: list[str], message: str) -> None:
    code, out, err = await cli("run", "--rootfs", cli.rootfs, *flags, "--", "true")
    assert code != 0 and message in err, err
    assert await cli.ps() == []
