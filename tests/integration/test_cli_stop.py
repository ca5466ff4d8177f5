"""``supervisor stop -t``, ``restart`` and ``kill -s`` against the suite's
real containerd: the grace period then SIGKILL, the image's StopSignal, a
restart that starts a new task as ``start`` does."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tests._image_layout import image_tar
from tests.integration.cli_runner import Cli

pytestmark = pytest.mark.asyncio

# PID 1 ignores a signal it has no handler for: this one never ends on TERM.
IGNORES_TERM = "trap '' TERM; echo started; while :; do sleep 0.1; done"
ENDS_ON_TERM = "trap 'echo bye; exit 0' TERM; echo started; while :; do sleep 0.1; done"


async def _detach(cli: Cli, cid: str, log: Path, script: str) -> None:
    code, out, err = await cli(
        "run", "--rootfs", cli.rootfs, "-d", "--name", cid, "--log-path", str(log),
        "--", "sh", "-c", script,
    )  # fmt: skip
    assert (code, out) == (0, f"{cid}\n"), err
    await _until_in(log, "started", 1)


async def _until_in(log: Path, text: str, count: int) -> None:
    with anyio.fail_after(30):
        while not log.exists() or log.read_text().count(text) < count:
            await anyio.sleep(0.05)


async def test_stop_kills_after_the_grace_period(cli: Cli, tmp_path: Path) -> None:
    await _detach(cli, "deaf", tmp_path / "deaf.log", IGNORES_TERM)
    code, out, err = await cli("stop", "-t", "0.2", "deaf")
    assert (code, out) == (0, "deaf\n"), err
    row = await cli.wait_status("deaf", "stopped")
    assert row["pid"] is None


async def test_stop_with_a_signal(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "usr1.log"
    await _detach(cli, "usr1", log, "trap 'echo got-usr1; exit 0' USR1; " + IGNORES_TERM)
    code, out, err = await cli("stop", "-s", "USR1", "-t", "60", "usr1")
    assert (code, out) == (0, "usr1\n"), err
    assert "got-usr1" in log.read_text()


async def test_restart_starts_a_new_task_with_the_same_log(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "again.log"
    await _detach(cli, "again", log, ENDS_ON_TERM)
    first = await cli.wait_status("again", "running")
    code, out, err = await cli("restart", "-t", "60", "again")
    assert (code, out) == (0, "again\n"), err
    second = await cli.wait_status("again", "running")
    assert second["pid"] != first["pid"]
    await _until_in(log, "started", 2)
    assert log.read_text().count("bye") == 1
    # A stopped container restarts too.
    code, _, err = await cli("stop", "-t", "0", "again")
    assert code == 0, err
    await cli.wait_status("again", "stopped")
    code, out, err = await cli("restart", "again")
    assert (code, out) == (0, "again\n"), err
    await cli.wait_status("again", "running")
    await _until_in(log, "started", 3)


async def test_kill_with_a_signal_name(cli: Cli, tmp_path: Path) -> None:
    await _detach(cli, "k", tmp_path / "k.log", "trap 'exit 5' USR2; " + IGNORES_TERM)
    code, out, err = await cli("kill", "-s", "SIGUSR2", "k")
    assert (code, out) == (0, "k\n"), err
    row = await cli.wait_status("k", "stopped")
    assert row["exit_code"] == 5


async def test_bad_arguments_are_refused(cli: Cli, tmp_path: Path) -> None:
    await _detach(cli, "bad", tmp_path / "bad.log", IGNORES_TERM)
    for args in (["stop", "-t", "-1"], ["stop", "-s", "NOPE"], ["restart", "-s", "0"]):
        code, _, err = await cli(*args, "bad")
        assert code != 0 and "usage" in err.lower(), (args, err)
    await cli.wait_status("bad", "running")


async def test_stop_sends_the_images_stop_signal(cli: Cli, tmp_path: Path) -> None:
    ref = "example.com/cli-stop/app:1"
    config = {
        "Entrypoint": ["sh", "-c", "trap 'exit 0' USR1; " + IGNORES_TERM],
        "Env": ["PATH=/bin:/usr/bin"],
        "StopSignal": "SIGUSR1",
    }
    code, _, err = await cli("import", str(image_tar(tmp_path / "app.tar", ref, config)))
    assert code == 0, err
    log = tmp_path / "img.log"
    code, out, err = await cli("run", "-d", "--name", "img", "--log-path", str(log), ref)
    assert (code, out) == (0, "img\n"), err
    await _until_in(log, "started", 1)  # its trap is set
    # Not SIGTERM (ignored): the image's USR1 ends it well within the grace.
    with anyio.fail_after(50):
        code, out, err = await cli("stop", "-t", "600", "img")
    assert (code, out) == (0, "img\n"), err
    code, _, err = await cli("rm", "img")
    assert code == 0, err
    code, _, err = await cli("rmi", ref)
    assert code == 0, err
