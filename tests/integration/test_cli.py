"""The ``supervisor`` command, run as a user runs it (``python -m supervisor``),
against the suite's real containerd."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
import pytest
import pytest_asyncio
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from tests._containerd import REPO
from tests.integration.conftest import purge_namespace

pytestmark = pytest.mark.asyncio


class Cli:
    def __init__(self, address: str, namespace: str, state_dir: Path, rootfs: str) -> None:
        self.common = ["--address", address, "--namespace", namespace]
        self.state_dir = state_dir
        self.rootfs = rootfs

    def argv(self, sub: str, *args: str) -> list[str]:
        extra = ["--state-dir", str(self.state_dir)] if sub in ("run", "exec") else []
        return [sys.executable, "-m", "supervisor", sub, *self.common, *extra, *args]

    async def __call__(
        self, sub: str, *args: str, input: bytes | None = None
    ) -> tuple[int, str, str]:
        with anyio.fail_after(60):
            done = await anyio.run_process(
                self.argv(sub, *args), input=input, check=False, cwd=REPO
            )
        return done.returncode, done.stdout.decode(), done.stderr.decode()

    async def start(self, sub: str, *args: str) -> Process:
        return await anyio.open_process(self.argv(sub, *args), cwd=REPO)


@pytest_asyncio.fixture
async def cli(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> AsyncIterator[Cli]:
    yield Cli(containerd_address, namespace, state_dir, rootfs)
    await purge_namespace(containerd_address, namespace)


async def lines(stream: object) -> AsyncIterator[str]:
    """Lines of a process's text output as they arrive."""
    buffer = ""
    async for chunk in TextReceiveStream(stream):  # type: ignore[arg-type]
        buffer += chunk
        while "\n" in buffer:
            line, buffer = buffer.split("\n", 1)
            yield line


async def test_run_streams_output_and_returns_the_exit_code(cli: Cli) -> None:
    code, out, err = await cli(
        "run", "--rootfs", cli.rootfs, "--rm", "--id", "cli-run", "--",
        "sh", "-c", "echo out; echo err >&2; exit 3",
    )  # fmt: skip
    assert code == 3, err
    assert out == "out\n"
    assert "err\n" in err
    code, out, _ = await cli("ps", "--json")
    assert code == 0 and out == ""  # --rm left nothing


async def test_run_interactive_feeds_stdin(cli: Cli) -> None:
    code, out, err = await cli(
        "run", "--rootfs", cli.rootfs, "--rm", "-i", "--", "sh", "-c", "tr a-z A-Z",
        input=b"hello\nworld\n",
    )  # fmt: skip
    assert code == 0, err
    assert out == "HELLO\nWORLD\n"


async def test_ps_exec_stats_kill_on_a_running_container(cli: Cli) -> None:
    runner = await cli.start(
        "run", "--rootfs", cli.rootfs, "--memory", "64m", "--id", "cli-long", "--", "sleep", "300"
    )
    try:
        with anyio.fail_after(30):
            while True:
                code, out, _ = await cli("ps", "--json")
                rows = [json.loads(line) for line in out.splitlines()]
                if rows and rows[0]["task"] == "running":
                    break
                await anyio.sleep(0.1)
        assert rows[0]["id"] == "cli-long" and rows[0]["pid"] > 0
        code, out, err = await cli("exec", "cli-long", "--", "sh", "-c", "echo inside; exit 4")
        assert (code, out) == (4, "inside\n"), err
        code, out, err = await cli("stats", "cli-long", "--json")
        assert code == 0, err
        stats = json.loads(out)
        assert stats["memory"]["limit"] == 64 << 20
        assert stats["pids"]["current"] >= 1
        code, _, err = await cli("kill", "cli-long", "--signal", "KILL")
        assert code == 0, err
        with anyio.fail_after(30):
            assert await runner.wait() == 137
    finally:
        if runner.returncode is None:
            runner.kill()
        await runner.aclose()
    code, out, err = await cli("kill", "no-such-container")
    assert code == 1 and "NotFound" in err


async def test_events_prints_the_stream_live(cli: Cli) -> None:
    events = await cli.start("events", "--json", "--log-level", "info")
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
        events.send_signal(signal.SIGINT)
        with anyio.fail_after(30):
            assert await events.wait() == 0
    finally:
        if events.returncode is None:
            events.kill()
        await events.aclose()


async def test_bad_input_is_a_typed_error_not_a_traceback(cli: Cli) -> None:
    cases: Sequence[tuple[str, ...]] = (
        ("run", "--rootfs", cli.rootfs, "--id", "../x", "--", "true"),
        ("run", "--rootfs", cli.rootfs, "--"),
        ("exec", "missing", "--", "true"),
    )
    for args in cases:
        code, _, err = await cli(*args)
        assert code == 1, err
        assert err.startswith("supervisor: ") and "Traceback" not in err, err
