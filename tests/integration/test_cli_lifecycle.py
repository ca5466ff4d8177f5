"""The ``supervisor`` subcommands that act on existing containers: detached
runs and their log files, exec, start/stop/rm, pause/unpause, update,
inspect, stats, version; against the suite's real containerd."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import anyio
import pytest

import supervisor
from tests.integration.cli_runner import Cli

pytestmark = pytest.mark.asyncio


async def detach(cli: Cli, cid: str, *args: str) -> None:
    code, out, err = await cli("run", "--rootfs", cli.rootfs, "-d", "--name", cid, *args)
    assert (code, out) == (0, f"{cid}\n"), err


def cgroup_value(pid: int, v1: tuple[str, str], v2: str) -> str:
    """A file of the cgroup process ``pid`` is in, on either cgroup version."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    fs = subprocess.run(["stat", "-fc", "%T", "/sys/fs/cgroup"], capture_output=True, text=True)
    if fs.stdout.strip() == "cgroup2fs":
        path = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
        return Path(f"/sys/fs/cgroup{path}/{v2}").read_text().strip()
    controller, name = v1
    path = next(
        line.split(":", 2)[2] for line in lines if controller in line.split(":")[1].split(",")
    )
    return Path(f"/sys/fs/cgroup/{controller}{path}/{name}").read_text().strip()


async def test_detached_run_with_a_log_file_stop_start_rm(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "bg.log"
    await detach(
        cli, "bg", "--log-path", str(log), "--",
        "sh", "-c", 'echo "started $$"; trap "echo bye; exit 0" TERM; while :; do sleep 0.1; done',
    )  # fmt: skip
    row = await cli.wait_status("bg", "running")
    assert isinstance(row["pid"], int) and row["pid"] > 0
    with anyio.fail_after(30):
        while "started" not in log.read_text():
            await anyio.sleep(0.05)
    code, out, err = await cli("logs", "bg")
    assert (code, out) == (0, "started 1\n"), err
    # Refused while running; stop lets the trap run (exit 0, within -t).
    code, _, err = await cli("rm", "bg")
    assert code == 125 and "stop it first" in err
    code, out, err = await cli("stop", "-t", "20", "bg")
    assert (code, out) == (0, "bg\n"), err
    row = await cli.wait_status("bg", "stopped")
    assert row["pid"] is None
    code, out, _ = await cli("logs", "bg")
    assert out == "started 1\nbye\n"
    # start makes a new task from the same container; its output appends.
    code, out, err = await cli("start", "bg")
    assert (code, out) == (0, "bg\n"), err
    await cli.wait_status("bg", "running")
    with anyio.fail_after(30):
        while log.read_text().count("started") < 2:
            await anyio.sleep(0.05)
    code, out, err = await cli("start", "bg")
    assert code == 125 and "running already" in err
    code, out, err = await cli("rm", "-f", "bg")
    assert (code, out) == (0, "bg\n"), err
    assert await cli.ps() == []
    assert log.exists()  # the user's file: left where they put it


async def test_a_detached_container_that_exits_shows_its_code(cli: Cli) -> None:
    await detach(cli, "quick", "--", "sh", "-c", "echo dropped; exit 3")
    row = await cli.wait_status("quick", "stopped")
    assert row["exit_code"] == 3
    exited_at = row["exited_at"]
    assert isinstance(exited_at, str) and exited_at.endswith("Z")
    code, out, err = await cli("ps")
    assert code == 0, err
    header, line = out.splitlines()
    assert header.split() == ["CONTAINER", "STATUS", "PID", "COMMAND", "RUNTIME"]
    assert line.startswith("quick") and "exited (3)" in line
    code, out, err = await cli("logs", "quick")
    assert code == 125 and "--log-path" in err  # no log file: output was dropped
    code, out, err = await cli("rm", "quick")
    assert (code, out) == (0, "quick\n"), err


async def test_logs_follow_ends_with_the_container(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "f.log"
    await detach(
        cli, "counter", "--log-path", str(log), "--",
        "sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.3; done; echo err >&2",
    )  # fmt: skip
    code, out, err = await cli("logs", "-f", "counter")  # bounded by Cli's 60 s
    assert code == 0, err
    # stdout lines on stdout, stderr lines on stderr, as docker logs prints them.
    assert (out, err) == ("1\n2\n3\n", "err\n")


async def test_log_paths_that_are_not_regular_files_are_refused(cli: Cli, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("not for the container log\n")
    link = tmp_path / "link.log"
    link.symlink_to(secret)
    code, _, err = await cli("run", "--rootfs", cli.rootfs, "--log-path", str(link), "--", "true")
    assert code == 125 and "not a regular file" in err, err
    # A log file swapped for a link after the run: logs does not follow it.
    log = tmp_path / "ok.log"
    await detach(cli, "swapped", "--log-path", str(log), "--", "sh", "-c", "echo hi")
    await cli.wait_status("swapped", "stopped")
    log.unlink()
    log.symlink_to(secret)
    code, out, err = await cli("logs", "swapped")
    assert code == 125 and out == "" and "symbolic link" in err, err
    log.unlink()
    os.mkfifo(log)  # would block a reader forever
    code, out, err = await cli("logs", "swapped")
    assert code == 125 and "not a regular file" in err, err


async def test_run_log_path_in_the_foreground_shows_the_output(cli: Cli, tmp_path: Path) -> None:
    log = tmp_path / "fg.log"
    code, out, err = await cli(
        "run", "--rootfs", cli.rootfs, "--rm", "--log-path", str(log), "--",
        "sh", "-c", "echo one; echo two >&2; exit 6",
    )  # fmt: skip
    assert (code, out) == (6, "one\n"), err
    assert err.endswith("two\n"), err
    # The file is in the CRI format: each line with its time and stream.
    records = sorted(line.split(" ", 1)[1] for line in log.read_text().splitlines())
    assert records == ["stderr F two", "stdout F one"]


async def test_exec_inherits_the_container_process_and_takes_overrides(cli: Cli) -> None:
    await detach(cli, "host", "-e", "A=one", "-w", "/tmp", "-u", "1000", "--", "sleep", "300")
    await cli.wait_status("host", "running")
    show = ["sh", "-c", 'echo "$A $B"; pwd; id -u']
    code, out, err = await cli("exec", "host", "--", *show)
    assert (code, out.splitlines()) == (0, ["one ", "/tmp", "1000"]), err
    code, out, err = await cli("exec", "-e", "B=two", "-w", "/", "-u", "0", "host", "--", *show)
    assert (code, out.splitlines()) == (0, ["one two", "/", "0"]), err
    code, out, err = await cli("exec", "-i", "host", "--", "cat", input=b"piped\n")
    assert (code, out) == (0, "piped\n"), err
    code, _, err = await cli("exec", "host", "--", "sh", "-c", "exit 9")
    assert code == 9, err
    code, _, err = await cli("exec", "host", "--", "no-such-command")
    assert code == 127, err
    code, _, err = await cli("exec", "-d", "host", "--", "sh", "-c", "sleep 1")
    assert code == 0, err
    code, _, err = await cli("exec", "-u", "nobody", "host", "--", "true")
    assert code == 125 and "numeric" in err, err


@pytest.mark.cgroup
async def test_limits_are_set_and_updated(cli: Cli) -> None:
    await detach(
        cli, "limited", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "20", "--",
        "sleep", "300",
    )  # fmt: skip
    row = await cli.wait_status("limited", "running")
    pid = row["pid"]
    assert isinstance(pid, int)

    def limits() -> tuple[str, str, str]:
        memory = cgroup_value(pid, ("memory", "memory.limit_in_bytes"), "memory.max")
        cpu = cgroup_value(pid, ("cpu", "cpu.cfs_quota_us"), "cpu.max").split()[0]
        pids = cgroup_value(pid, ("pids", "pids.max"), "pids.max")
        return memory, cpu, pids

    assert limits() == (str(64 << 20), "50000", "20")
    code, out, err = await cli(
        "update", "--memory", "128m", "--cpus", "1.5", "--pids-limit", "-1", "limited"
    )
    assert (code, out) == (0, "limited\n"), err
    assert limits() == (str(128 << 20), "150000", "max")
    code, out, err = await cli("stats", "--no-stream", "limited")
    assert code == 0, err
    assert "/ 128MiB" in out.splitlines()[1]
    code, _, err = await cli("update", "limited")
    assert code == 125 and "needs --memory" in err


@pytest.mark.cgroup
async def test_pause_and_unpause_show_in_ps(cli: Cli) -> None:
    await detach(cli, "frozen", "--", "sleep", "300")
    await cli.wait_status("frozen", "running")
    code, out, err = await cli("pause", "frozen")
    assert (code, out) == (0, "frozen\n"), err
    await cli.wait_status("frozen", "paused")
    code, out, err = await cli("unpause", "frozen")
    assert (code, out) == (0, "frozen\n"), err
    await cli.wait_status("frozen", "running")
    # stop thaws a paused container so that it can act on the signal.
    code, _, err = await cli("pause", "frozen")
    assert code == 0, err
    code, _, err = await cli("stop", "-t", "1", "frozen")
    assert code == 0, err
    await cli.wait_status("frozen", "stopped")


@pytest.mark.cgroup
async def test_stats_shows_cpu_percent_and_human_units(cli: Cli) -> None:
    await detach(cli, "busy", "--", "sh", "-c", "while :; do :; done")
    await detach(cli, "idle", "--memory", "32m", "--", "sleep", "300")
    await cli.wait_status("busy", "running")
    await cli.wait_status("idle", "running")
    code, out, err = await cli("stats", "--no-stream", "--format", "json")
    assert code == 0, err
    rows = {r["id"]: r for r in map(json.loads, out.splitlines())}
    assert set(rows) == {"busy", "idle"}
    # A busy loop's share depends on what else the host runs; it is some CPU,
    # and more than a sleeping process's.
    assert rows["busy"]["cpu_percent"] > 1
    assert rows["idle"]["cpu_percent"] < min(20, rows["busy"]["cpu_percent"])
    assert rows["idle"]["memory_limit"] == 32 << 20
    assert rows["idle"]["read_at"].endswith("Z")
    code, out, err = await cli("stats", "--no-stream")
    assert code == 0, err
    header, *lines = out.splitlines()
    assert re.split(r"\s{2,}", header) == [
        "CONTAINER", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"
    ]  # fmt: skip
    idle = next(line for line in lines if line.startswith("idle"))
    assert "/ 32MiB" in idle and "%" in idle
    # Streaming: samples keep coming until interrupted.
    streamer = await cli.start("stats", "--format", "json", "--interval", "0.2", "idle")
    try:
        assert streamer.stdout is not None
        got = b""
        with anyio.fail_after(30):
            while got.count(b"\n") < 3:
                got += await streamer.stdout.receive()
        streamer.send_signal(2)
        with anyio.fail_after(30):
            assert await streamer.wait() == 0
    finally:
        if streamer.returncode is None:
            streamer.kill()
        await streamer.aclose()


async def test_inspect_table_and_json(cli: Cli, tmp_path: Path) -> None:
    await detach(
        cli, "seen", "-e", "K=v", "--hostname", "box", "-v", f"{tmp_path}:/root:ro",
        "--memory", "16m", "--log-path", str(tmp_path / "seen.log"), "--", "sleep", "300",
    )  # fmt: skip
    await cli.wait_status("seen", "running")
    code, out, err = await cli("inspect", "--format", "json", "seen")
    assert code == 0, err
    [record] = json.loads(out)
    assert record["id"] == "seen" and record["status"] == "running"
    assert record["pid"] in record["processes"]
    assert record["log_path"] == str(tmp_path / "seen.log")
    assert "K=v" in record["spec"]["process"]["env"]
    code, out, err = await cli("inspect", "seen")
    assert code == 0, err
    fields = {
        line.split(":", 1)[0]: line.split(":", 1)[1].strip()
        for line in out.splitlines()
        if line and not line.startswith(" ")
    }
    assert fields["ID"] == "seen" and fields["Status"] == "running"
    assert fields["Hostname"] == "box" and fields["Command"] == "sleep 300"
    assert f"{tmp_path} -> /root [bind] (ro)" in out
    assert "memory 16MiB" in fields["Limits (spec)"]
    assert "``" not in out
    code, _, err = await cli("inspect", "seen", "nope")
    assert code == 125 and "no such container: nope" in err


async def test_version_names_both_sides(cli: Cli) -> None:
    code, out, err = await cli("version", "--format", "json")
    assert code == 0, err
    record = json.loads(out)
    assert record["client"]["supervisor"] == supervisor.__version__
    assert record["server"]["containerd"]  # whatever this machine runs
    code, out, err = await cli("version")
    assert code == 0, err
    assert f"supervisor  {supervisor.__version__}" in out and "containerd" in out
    code, out, err = await cli("--version")
    assert (code, out) == (0, f"supervisor {supervisor.__version__}\n"), err


async def test_help_has_no_markup(cli: Cli) -> None:
    subcommands = ["run", "exec", "start", "stop", "rm", "kill", "pause", "unpause", "update"]
    subcommands += ["ps", "inspect", "stats", "logs", "events", "version", "daemon"]
    for args in ([], *([s] for s in subcommands)):
        code, out, err = await cli(*args, "--help")
        assert code == 0, (args, err)
        assert "usage: supervisor" in out
        for markup in ("``", ":class:", ":meth:", ":func:"):
            assert markup not in out, (args, markup)


async def test_a_log_path_label_written_by_another_client_is_never_used(
    cli: Cli, containerd_address: str, namespace: str, tmp_path: Path
) -> None:
    # Any client of containerd can label a container: the label must make
    # root neither print a file (logs) nor have the shim append to one (start).
    secret = tmp_path / "secret"
    secret.write_text("do not show\n")
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=tmp_path / "other", events=False
    ) as other:
        await other.new_container(
            "planted",
            supervisor.default_spec(["sh", "-c", "echo appended"], cli.rootfs),
            labels={"supervisor.log-path": str(secret)},
        )
    code, out, err = await cli("logs", "planted")
    assert code == 125 and "do not show" not in out and "no log file" in err
    code, _, err = await cli("start", "planted")
    assert code == 0, err
    await anyio.sleep(1)
    assert secret.read_text() == "do not show\n"


async def test_escape_sequences_stored_by_another_client_never_reach_the_terminal(
    cli: Cli, containerd_address: str, namespace: str, tmp_path: Path
) -> None:
    # Any client of containerd may store a command, env or label holding
    # terminal control sequences (set the title, clear the screen, write the
    # clipboard): the tables show them escaped. JSON escapes them by itself.
    hostile = "\x1b]0;pwned\x07\x1b[2J\x9b31m"
    spec = supervisor.default_spec(["sh", "-c", f"true {hostile}"], cli.rootfs)
    spec["process"]["env"].append(f"X={hostile}")
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=tmp_path / "other", events=False
    ) as other:
        await other.new_container("hostile", spec, labels={"note": hostile})
    shown = "\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m"
    for args in (("ps",), ("inspect", "hostile"), ("ps", "--format", "json")):
        code, out, err = await cli(*args)
        assert code == 0, err
        assert not any(0x00 <= ord(ch) < 0x20 and ch != "\n" for ch in out), repr(out)
        assert not any(0x7F <= ord(ch) <= 0x9F for ch in out), repr(out)
        if args[-1] != "json":
            assert shown in out, out
