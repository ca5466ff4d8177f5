"""``supervisor logs [-f] [--since T] [--until T] [--tail N] [-t] ID`` on the
CRI log file that ``run --log-path`` writes, and on an older raw one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.cli_runner import Cli

pytestmark = pytest.mark.asyncio


async def _ran(cli: Cli, cid: str, log: Path, script: str) -> None:
    code, _, err = await cli(
        "run", "--rootfs", cli.rootfs, "--name", cid, "--log-path", str(log),
        "--", "sh", "-c", script,
    )  # fmt: skip
    assert code == 0, err


def _times(log: Path) -> list[str]:
    return [line.split(" ", 1)[0] for line in log.read_text().splitlines()]


async def test_tail_timestamps_and_streams(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    await _ran(cli, "app", log, "echo one; echo two; echo three; echo oops >&2")
    code, out, err = await cli("logs", "app")
    assert (code, out, err) == (0, "one\ntwo\nthree\n", "oops\n")
    code, out, err = await cli("logs", "--tail", "2", "app")
    assert code == 0, err
    # The last two lines of the file, each on its own stream.
    assert sorted((out + err).splitlines()) == sorted(
        line.split(" ", 3)[3] for line in log.read_text().splitlines()[-2:]
    )
    code, out, err = await cli("logs", "-t", "--tail", "1", "app")
    last = log.read_text().splitlines()[-1].split(" ")
    assert (out + err) == f"{last[0]} {last[3]}\n"
    code, out, err = await cli("logs", "--tail", "0", "app")
    assert (code, out, err) == (0, "", "")


async def test_since_and_until(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    await _ran(cli, "timed", log, "echo a; usleep 50000; echo b; usleep 50000; echo c")
    times = _times(log)
    code, out, err = await cli("logs", "--since", times[1], "timed")
    assert code == 0, err
    assert out.splitlines() == [w for w, t in zip("abc", times, strict=True) if t >= times[1]]
    code, out, err = await cli("logs", "--until", times[1], "timed")
    assert out.splitlines() == [w for w, t in zip("abc", times, strict=True) if t < times[1]]
    code, out, err = await cli("logs", "--since", "1h", "timed")
    assert out.splitlines() == ["a", "b", "c"]
    code, out, err = await cli("logs", "--until", "1h", "timed")
    assert (code, out) == (0, "")


async def test_bad_arguments_are_usage_errors(cli: Cli, tmp_path: Path) -> None:
    # The command's own usage errors exit 125, as its other refusals do.
    code, _, err = await cli("logs", "--tail", "-1", "x")
    assert code == 125 and "--tail" in err
    code, _, err = await cli("logs", "--tail", "x", "x")
    assert code == 125 and "--tail" in err
    code, _, err = await cli("logs", "--since", "yesterday", "x")
    assert code == 125 and "bad time" in err


async def test_a_raw_log_file_from_before_is_printed_whole(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "old.log"
    await _ran(cli, "old", log, "echo hi")
    # A container from an older `run --log-path`: raw bytes, no record of a format.
    log.write_text("raw hi\n")
    record = next(cli.state_dir.rglob("container-log"))
    record.unlink()
    code, out, err = await cli("logs", "old")
    assert (code, out) == (0, "raw hi\n"), err
    code, out, err = await cli("logs", "--tail", "1", "old")
    assert code == 125 and "raw output" in err
