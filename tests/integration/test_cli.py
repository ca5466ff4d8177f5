"""The ``supervisor`` command, run as a user runs it (``python -m supervisor``),
against the suite's real containerd: run and its flags, exit codes, errors.

``test_cli_lifecycle.py`` covers the other subcommands, ``test_cli_tty.py``
the interactive terminal.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream

from tests._containerd import REPO
from tests.integration.cli_runner import Cli, run_raw

pytestmark = pytest.mark.asyncio


async def lines(stream: object) -> AsyncIterator[str]:
    """Lines of a process's text output as they arrive."""
    buffer = ""
    async for chunk in TextReceiveStream(stream):  # type: ignore[arg-type]
        buffer += chunk
        while "\n" in buffer:
            line, buffer = buffer.split("\n", 1)
            yield line


# -- run: output, stdin, exit codes ------------------------------------------------


async def test_run_streams_output_and_returns_the_exit_code(cli: Cli) -> None:
    code, out, err = await cli(
        "run", "--rootfs", cli.rootfs, "--rm", "--name", "cli-run", "--",
        "sh", "-c", "echo out; echo err >&2; exit 42",
    )  # fmt: skip
    assert code == 42, err
    assert out == "out\n"
    assert "err\n" in err
    assert await cli.ps() == []  # --rm left nothing


async def test_run_interactive_feeds_stdin(cli: Cli) -> None:
    code, out, err = await cli(
        "run", "--rootfs", cli.rootfs, "--rm", "-i", "--", "sh", "-c", "tr a-z A-Z",
        input=b"hello\nworld\n",
    )  # fmt: skip
    assert code == 0, err
    assert out == "HELLO\nWORLD\n"


async def test_options_after_the_subcommand_still_work(cli: Cli) -> None:
    """What ``make run`` and older scripts write: connection options after ``run``."""
    argv = [
        sys.executable, "-m", "supervisor", "run",
        "--address", cli.address, "--namespace", cli.namespace,
        "--state-dir", str(cli.state_dir), "--rootfs", cli.rootfs, "--rm", "--id", "demo",
        "--log-level", "info", "--", "sh", "-c", "hostname",
    ]  # fmt: skip
    code, out, err = await run_raw(argv)
    assert (code, out) == (0, "demo\n"), err
    assert "client.connected" in err  # --log-level info after the subcommand counted


async def test_exit_codes_follow_docker(cli: Cli) -> None:
    r = cli.rootfs
    code, _, err = await cli("run", "--rootfs", r, "--rm", "--", "nosuchcommand")
    assert code == 127, err
    assert "not found" in err and "Traceback" not in err
    # A file that exists but is not executable.
    code, _, err = await cli("run", "--rootfs", r, "--rm", "--", "/etc/passwd")
    assert code == 126, err
    code, _, err = await cli("run", "--rootfs", r, "--rm", "--", "sh", "-c", "exit 126")
    assert code == 126, err  # the container's own code passes through, whatever it is
    missing = str(Path(r).parent / "no-such-rootfs")
    code, _, err = await cli("run", "--rootfs", missing, "--name", "never", "--", "true")
    assert code == 125, err
    assert missing in err
    assert await cli.ps() == []  # refused before anything was made
    code, _, err = await cli("run", "--rootfs", r, "--no-such-flag", "--", "true")
    assert code == 125 and "unrecognized" in err, err
    code, _, err = await cli("run", "--rootfs", r, "--")
    assert code == 125 and err.startswith("supervisor: run needs a command"), err
    code, _, err = await cli("run", "--rootfs", r, "--name", "../x", "--", "true")
    assert code == 125 and err.startswith("supervisor: InvalidArgument"), err
    code, _, err = await cli("exec", "missing", "--", "true")
    assert code == 125 and "NotFound" in err, err


async def test_no_containerd_is_125_and_names_the_socket(tmp_path: Path) -> None:
    sock = str(tmp_path / "nobody-home.sock")
    code, _, err = await run_raw([sys.executable, "-m", "supervisor", "-a", sock, "ps"])
    assert code == 125
    assert sock in err and "is containerd running?" in err
    assert "Traceback" not in err


async def test_a_socket_that_never_answers_gives_up_after_timeout(tmp_path: Path) -> None:
    path = str(tmp_path / "silent.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(16)  # accepted by the kernel, never answered
        argv = [sys.executable, "-m", "supervisor", "-a", path, "--timeout", "1", "ps"]
        code, _, err = await run_raw(argv)  # bounded by run_raw's 60 s
    assert code == 125
    assert path in err and "is containerd running?" in err, err


async def test_abbreviated_options_are_refused(cli: Cli) -> None:
    # argparse would read --nam as --name, and --name as --namespace before.
    code, _, err = await cli("run", "--rootfs", cli.rootfs, "--nam", "x", "--", "true")
    assert code == 125 and "unrecognized arguments: --nam" in err, err
    argv = [sys.executable, "-m", "supervisor", "--addr", cli.address, "ps"]
    code, out, err = await run_raw(argv)
    assert code == 125 and "supervisor: error:" in err and out == "", err
    assert await cli.ps() == []


async def test_name_is_the_id_in_the_default_namespace(
    containerd_address: str, rootfs: str, state_dir: Path
) -> None:
    base = [sys.executable, "-m", "supervisor", "-a", containerd_address]
    base += ["--state-dir", str(state_dir)]
    try:
        code, out, err = await run_raw(
            [*base, "run", "--rootfs", rootfs, "--name", "web", "--", "hostname"]
        )
        assert (code, out) == (0, "web\n"), err
        code, out, err = await run_raw([*base, "-n", "default", "ps", "--format", "json"])
        assert code == 0, err
        assert "web" in [json.loads(line)["id"] for line in out.splitlines()]
    finally:
        await run_raw([*base, "rm", "-f", "web"])


async def test_parsing_loads_neither_grpclib_nor_the_daemon() -> None:
    """The parser is built from argparse alone; a subcommand's module (and
    with it grpclib, betterproto2, the bindings or the daemon) loads when it
    is dispatched, so --help and usage errors cost no more than Python."""
    code = textwrap.dedent(
        """
        import sys
        from supervisor.cli._parser import parse
        for argv in (["ps"], ["-n", "x", "run", "--rootfs", "/", "--", "sh"], ["stats"],
                     ["exec", "c", "--", "true"], ["logs", "c"], ["events"], ["version"]):
            parse(argv)
        heavy = ("grpclib", "betterproto2", "supervisor._proto", "supervisor.daemon",
                 "supervisor.backends.containerd", "supervisor.cli._run", "supervisor.cli._show")
        print(sorted(m for m in sys.modules if m.startswith(heavy)))
        """
    )
    done = await anyio.run_process([sys.executable, "-c", code], cwd=REPO, check=True)
    assert done.stdout.decode().strip() == "[]"
    # daemon's own parser is built only when asked for, and then loads its code.
    code = "import sys; from supervisor.cli._parser import parse; parse(['daemon'])\n"
    code += "print('supervisor.daemon' in sys.modules)"
    done = await anyio.run_process([sys.executable, "-c", code], cwd=REPO, check=True)
    assert done.stdout.decode().strip() == "True"


async def test_ps_loads_no_event_loop_grpclib_or_bindings(containerd_address: str) -> None:
    """``ps`` lists through the blocking reader: its start-up must not pay for
    asyncio, anyio, grpclib, betterproto2 or the generated bindings."""
    code = textwrap.dedent(
        f"""
        import sys
        from supervisor.cli import main
        code = main(["-a", {containerd_address!r}, "-n", "default", "ps", "--format", "json"])
        heavy = ("asyncio", "anyio", "grpclib", "betterproto2", "supervisor._proto",
                 "supervisor.backends.containerd", "supervisor.client._client")
        print("LOADED", code, sorted(m for m in sys.modules if m.startswith(heavy)))
        """
    )
    done = await anyio.run_process([sys.executable, "-c", code], cwd=REPO, check=True)
    assert done.stdout.decode().splitlines()[-1] == "LOADED 0 []", done.stdout


# -- run: what the flags change ------------------------------------------------------


async def test_env_workdir_and_user(cli: Cli, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# a comment\n\nC=from-file\nA=overridden-by-flag\n")
    code, out, err = await cli(
        "run", "--rootfs", cli.rootfs, "--rm",
        "--env-file", str(env_file), "-e", "A=flag", "-e", "B", "-e", "UNSET_HERE",
        "-w", "/tmp", "-u", "1000:1001", "--",
        "sh", "-c", 'echo "$A $B $C ${UNSET_HERE-unset}"; pwd; id -u; id -g',
        env={"B": "from-host"},
    )  # fmt: skip
    assert code == 0, err
    assert out.splitlines() == ["flag from-host from-file unset", "/tmp", "1000", "1001"]
    code, out, err = await cli(
        "run", "--rootfs", cli.rootfs, "--rm", "-u", "root", "--", "id", "-u"
    )
    assert (code, out) == (0, "0\n"), err
    for bad in (["-w", "relative"], ["-u", "nobody-here"], ["-e", "=x"]):
        code, _, err = await cli("run", "--rootfs", cli.rootfs, "--rm", *bad, "--", "true")
        assert code == 125, (bad, err)


async def test_volumes_and_mounts(cli: Cli, tmp_path: Path) -> None:
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "hello").write_text("from the host\n")
    # Mount points that the rootfs has already, so runc creates nothing in it.
    code, out, err = await cli(
        "run", "--rootfs", cli.rootfs, "--rm",
        "-v", f"{ro}:/root:ro",
        "--mount", f"type=bind,src={rw},dst=/run",
        "--mount", "type=tmpfs,dst=/var",
        "--", "sh", "-c",
        "cat /root/hello; touch /root/x 2>/dev/null && echo wrote-ro; "
        "echo made > /run/made; touch /var/scratch && echo tmpfs-ok",
    )  # fmt: skip
    assert code == 0, err
    assert out.splitlines() == ["from the host", "tmpfs-ok"]
    assert (rw / "made").read_text() == "made\n"
    assert not (ro / "x").exists()
    for bad in (
        ["-v", f"{tmp_path / 'missing'}:/root"],
        ["-v", f"{ro}:relative"],
        ["-v", f"{ro}:/root:bogus"],
        ["--mount", "type=volume,src=x,dst=/root"],
        ["--mount", f"type=bind,src={ro}"],
    ):
        code, _, err = await cli("run", "--rootfs", cli.rootfs, "--rm", *bad, "--", "true")
        assert code == 125, (bad, err)
    assert await cli.ps() == []


async def test_hostname_and_network(cli: Cli) -> None:
    async def interfaces(*flags: str) -> set[str]:
        code, out, err = await cli(
            "run", "--rootfs", cli.rootfs, "--rm", *flags, "--", "cat", "/proc/net/dev"
        )
        assert code == 0, err
        return {line.split(":")[0].strip() for line in out.splitlines()[2:]}

    def host() -> set[str]:
        lines = Path("/proc/net/dev").read_text().splitlines()[2:]
        return {line.split(":")[0].strip() for line in lines}

    assert await interfaces() == {"lo"}
    assert await interfaces("--network", "none") == {"lo"}
    # Other programs on the host may add or remove interfaces meanwhile:
    # the container sees those that stayed, and none the host never had.
    before = host()
    seen = await interfaces("--network", "host")
    after = host()
    assert before & after <= seen <= before | after
    assert "lo" in seen and len(seen) > 1 or before == {"lo"}
    code, out, err = await cli(
        "run", "--rootfs", cli.rootfs, "--rm", "--hostname", "box", "--", "hostname"
    )
    assert (code, out) == (0, "box\n"), err


async def test_rootfs_is_read_only_unless_writable(cli: Cli, tmp_path: Path) -> None:
    touch = ["sh", "-c", "touch /written && echo yes"]
    for flags in ([], ["--read-only"]):
        code, out, _ = await cli("run", "--rootfs", cli.rootfs, "--rm", *flags, "--", *touch)
        assert code != 0 and out == ""
    assert not (Path(cli.rootfs) / "written").exists()
    private = tmp_path / "rootfs"
    shutil.copytree(cli.rootfs, private, symlinks=True)
    code, out, err = await cli("run", "--rootfs", str(private), "--rm", "--writable", "--", *touch)
    assert (code, out) == (0, "yes\n"), err
    assert (private / "written").exists()


async def test_without_rm_the_container_stays_stopped(cli: Cli) -> None:
    code, _, err = await cli("run", "--rootfs", cli.rootfs, "--name", "stays", "--", "true")
    assert code == 0, err
    [row] = await cli.ps()
    assert (row["id"], row["status"], row["pid"]) == ("stays", "stopped", None)
    code, out, err = await cli("rm", "stays")
    assert (code, out) == (0, "stays\n"), err
    assert await cli.ps() == []


# -- the old subcommands -----------------------------------------------------------


async def test_ps_exec_stats_kill_on_a_running_container(cli: Cli) -> None:
    runner = await cli.start(
        "run", "--rootfs", cli.rootfs, "--memory", "64m", "--id", "cli-long", "--", "sleep", "300"
    )
    try:
        row = await cli.wait_status("cli-long", "running")
        assert isinstance(row["pid"], int) and row["pid"] > 0
        code, out, err = await cli("exec", "cli-long", "--", "sh", "-c", "echo inside; exit 4")
        assert (code, out) == (4, "inside\n"), err
        code, out, err = await cli("stats", "--no-stream", "--format", "json", "cli-long")
        assert code == 0, err
        stats = json.loads(out)
        assert stats["id"] == "cli-long"
        assert stats["memory_limit"] == 64 << 20
        assert stats["pids"] >= 1
        code, out, err = await cli("kill", "-s", "KILL", "cli-long")
        assert (code, out) == (0, "cli-long\n"), err
        with anyio.fail_after(30):
            assert await runner.wait() == 137
    finally:
        if runner.returncode is None:
            runner.kill()
        await runner.aclose()
    code, out, err = await cli("kill", "no-such-container")
    assert code == 125 and "NotFound" in err


async def test_events_prints_the_stream_live(cli: Cli) -> None:
    events = await cli.start("--log-level", "info", "events", "--format", "json")
    try:
        assert events.stderr is not None and events.stdout is not None
        # connect() returns once the subscription is proven live.
        with anyio.fail_after(30):
            async for line in lines(events.stderr):
                if "client.connected" in line:
                    break
        code, _, err = await cli(
            "run", "--rootfs", cli.rootfs, "--rm", "--id", "cli-ev", "--", "sh", "-c", "exit 5"
        )
        assert code == 5, err
        seen: list[dict[str, object]] = []
        with anyio.fail_after(30):
            async for line in lines(events.stdout):
                seen.append(json.loads(line))
                if seen[-1]["event"] == "exit":
                    break
        assert [e["event"] for e in seen] == ["create", "start", "exit"]
        assert all(e["container_id"] == "cli-ev" for e in seen)
        assert seen[-1]["exit_code"] == 5
        exited_at = seen[-1]["exited_at"]
        assert isinstance(exited_at, str) and exited_at.endswith("Z")  # RFC 3339, UTC
        events.send_signal(signal.SIGINT)
        with anyio.fail_after(30):
            assert await events.wait() == 0
    finally:
        if events.returncode is None:
            events.kill()
        await events.aclose()
