"""``supervisor checkpoint create|ls|rm`` and ``start --checkpoint`` against
the suite's real containerd. Where CRIU cannot run (this host: ``criu
check`` fails), ``create`` says so and leaves the container running; the
whole round trip is the VM lane's (``criu`` marker)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from tests.integration.cli_runner import Cli
from tests.integration.test_checkpoint import _UNUSABLE, requires_criu

pytestmark = pytest.mark.asyncio

COUNTER = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done"


async def _counting(cli: Cli, cid: str, log: Path) -> None:
    code, out, err = await cli(
        "run", "--rootfs", cli.rootfs, "-d", "--name", cid, "--log-path", str(log),
        "--", "sh", "-c", COUNTER,
    )  # fmt: skip
    assert (code, out) == (0, f"{cid}\n"), err
    await _count_past(log, 0)


async def _count_past(log: Path, after: int) -> int:
    """The last count in ``log`` once one past ``after`` is there."""
    with anyio.fail_after(60):
        while True:
            counts = (
                [int(w) for w in log.read_text().split() if w.isdigit()] if log.exists() else []
            )
            if counts and counts[-1] > after:
                return counts[-1]
            await anyio.sleep(0.05)


async def test_verbs_where_criu_cannot_run(cli: Cli, tmp_path: Path) -> None:
    if _UNUSABLE is None:
        pytest.skip("CRIU works here: create succeeds (the VM test covers it)")
    await _counting(cli, "cpc", tmp_path / "cpc.log")
    code, out, err = await cli("checkpoint", "create", "cpc", "cpc-1")
    assert code == 125 and out == ""
    assert "CRIU" in err, err
    await cli.wait_status("cpc", "running")
    code, out, err = await cli("checkpoint", "ls", "--json")
    assert (code, out) == (0, ""), err
    code, out, err = await cli("checkpoint", "rm", "cpc-1")
    assert code == 125 and "no checkpoint named 'cpc-1'" in err, err
    code, out, err = await cli("start", "--checkpoint", "cpc-1", "cpc")
    assert code == 125, (out, err)


@pytest.mark.criu
@requires_criu
async def test_create_ls_start_rm(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "cpr.log"
    await _counting(cli, "cpr", log)
    seen = await _count_past(log, 5)
    code, out, err = await cli("checkpoint", "create", "cpr", "cpr-1")
    assert (code, out) == (0, "cpr-1\n"), err
    await cli.wait_status("cpr", "stopped")
    code, out, err = await cli("checkpoint", "ls", "--json")
    assert code == 0, err
    listed = [json.loads(line) for line in out.splitlines()]
    assert [(c["name"], c["container"], c["exited"]) for c in listed] == [("cpr-1", "cpr", True)]
    stopped_at = await _count_past(log, seen - 1)
    code, out, err = await cli("start", "--checkpoint", "cpr-1", "cpr")
    assert (code, out) == (0, "cpr\n"), err
    await cli.wait_status("cpr", "running")
    # The restored counter goes on in the recorded log file from where it was.
    assert await _count_past(log, stopped_at) > stopped_at
    code, out, err = await cli("checkpoint", "rm", "cpr-1")
    assert (code, out) == (0, "cpr-1\n"), err
    code, out, err = await cli("checkpoint", "ls", "--json")
    assert (code, out) == (0, ""), err


async def test_create_rw_of_a_container_without_a_snapshot_is_refused(
    cli: Cli, tmp_path: Path
) -> None:
    # Refused before CRIU is asked: this runs everywhere.
    await _counting(cli, "cprw", tmp_path / "cprw.log")
    code, out, err = await cli("checkpoint", "create", "--rw", "cprw", "cprw-1")
    assert code == 125 and out == ""
    assert "rootfs directory" in err, err
    await cli.wait_status("cprw", "running")
    code, out, err = await cli("checkpoint", "ls", "--json")
    assert (code, out) == (0, ""), err
