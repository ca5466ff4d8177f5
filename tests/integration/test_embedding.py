"""What an embedding application relies on: output that never blocks a
container, helpers over the pipes, scoped clean-up, docker-like exec, and a
library that stays silent unless the application asks for its logs."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import errors
from tests.integration.conftest import fifo_files

pytestmark = pytest.mark.asyncio


async def test_communicate_drains_both_streams_past_the_pipe_buffer(
    client: supervisor.Client, rootfs: str
) -> None:
    spec = supervisor.default_spec(
        ["sh", "-c", "head -c 300000 /dev/zero; head -c 100000 /dev/zero >&2"], rootfs
    )
    container = await client.new_container("talky", spec)
    task = await container.new_task()
    await task.start()
    with anyio.fail_after(60):
        out, err = await task.communicate()
    assert (len(out), len(err)) == (300000, 100000)
    assert (await task.wait()).exit_code == 0
    await task.delete()
    await container.delete()


async def test_communicate_sends_input_then_end_of_file(
    client: supervisor.Client, rootfs: str
) -> None:
    result = await client.run(
        "cat", supervisor.default_spec(["sh", "-c", "cat; echo done >&2"], rootfs), input=b"abc"
    )
    assert (result.exit_code, result.stdout, result.stderr) == (0, b"abc", b"done\n")


async def test_aiter_lines_yields_every_line_in_order(
    client: supervisor.Client, rootfs: str
) -> None:
    spec = supervisor.default_spec(["sh", "-c", "seq 1 10000"], rootfs)
    async with client.running("lines", spec) as task:
        with anyio.fail_after(60):
            lines = [line async for line in task.aiter_lines()]
    assert lines == [str(i) for i in range(1, 10001)]


async def test_log_path_needs_no_reader(
    client: supervisor.Client, rootfs: str, tmp_path: Path
) -> None:
    log = tmp_path / "out.log"
    spec = supervisor.default_spec(
        ["sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' x; echo; echo err >&2"], rootfs
    )
    container = await client.new_container("tofile", spec)
    task = await container.new_task(log_path=log)
    assert task.log_path == log
    with pytest.raises(errors.FailedPrecondition, match="out.log"):
        _ = task.stdout
    await task.start()
    with anyio.fail_after(30):
        status = await task.wait()
    assert status.exit_code == 0
    await task.delete()
    await container.delete()
    data = log.read_bytes()
    assert data.count(b"x") == 1_000_000 and b"err\n" in data


async def test_output_null_discards_and_never_blocks(
    client: supervisor.Client, rootfs: str
) -> None:
    spec = supervisor.default_spec(["sh", "-c", "head -c 1000000 /dev/zero"], rootfs)
    container = await client.new_container("quiet", spec)
    task = await container.new_task(output="null")
    await task.start()
    with anyio.fail_after(30):
        assert (await task.wait()).exit_code == 0
    await task.delete()
    await container.delete()


async def test_bad_output_choices_are_refused_before_anything_is_made(
    client: supervisor.Client, rootfs: str, state_dir: Path
) -> None:
    container = await client.new_container("refuse", supervisor.default_spec(["true"], rootfs))
    for kwargs in (
        {"log_path": "relative.log"},
        {"log_path": "/nonexistent-dir/x.log"},
        {"output": "file"},
        {"log_path": "/tmp/x.log", "stdin": True},
    ):
        with pytest.raises(errors.InvalidArgument):
            await container.new_task(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(errors.NotFound):
        await container.task()
    assert fifo_files(state_dir) == []
    await container.delete()


async def test_run_returns_the_output_and_code_of_a_failing_command(
    client: supervisor.Client, rootfs: str, namespace: str
) -> None:
    spec = supervisor.default_spec(["sh", "-c", "echo out; echo err >&2; exit 3"], rootfs)
    result = await client.run("fails", spec)
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert await client.containers() == []


async def test_run_timeout_kills_and_cleans_up(client: supervisor.Client, rootfs: str) -> None:
    with pytest.raises(errors.DeadlineExceeded):
        await client.run(
            "slow", supervisor.default_spec(["sleep", "60"], rootfs), timeout=0.5, stop_timeout=0
        )
    assert await client.containers() == []


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.3])
async def test_running_cancelled_midway_leaves_nothing(
    client: supervisor.Client, rootfs: str, state_dir: Path, delay: float
) -> None:
    spec = supervisor.default_spec(["sleep", "60"], rootfs)
    with anyio.move_on_after(delay):
        async with client.running(f"scoped-{int(delay * 100)}", spec) as task:
            await task.wait()
    assert await client.containers() == []
    assert fifo_files(state_dir) == []
    assert list((state_dir / client.namespace).glob("*")) == []


async def test_running_cleans_up_after_an_error(client: supervisor.Client, rootfs: str) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with client.running("oops", supervisor.default_spec(["sleep", "60"], rootfs)):
            raise RuntimeError("boom")
    assert await client.containers() == []


async def test_exec_with_args_inherits_the_container_process(
    client: supervisor.Client, rootfs: str
) -> None:
    spec = supervisor.default_spec(
        ["sleep", "60"], rootfs, env=["PATH=/bin:/usr/bin", "GREETING=hi"], cwd="/tmp"
    )
    async with client.running("inherit", spec) as task:
        proc = await task.exec(None, ["sh", "-c", 'echo "$GREETING $(pwd) $(id -u)"'])
        assert proc.id.startswith("exec-")
        assert task.execs == {proc.id: proc}
        await proc.start()
        out, _ = await proc.communicate()
        await proc.delete()
        assert task.execs == {}
    assert out == b"hi /tmp 0\n"


async def test_summary_names_every_process_with_its_exec(
    client: supervisor.Client, rootfs: str
) -> None:
    async with client.running("summed", supervisor.default_spec(["sleep", "60"], rootfs)) as task:
        proc = await task.exec("side", ["sleep", "30"])
        await proc.start()
        summary = {p.pid: p for p in await task.summary()}
        assert summary[task.pid].exec_id == "" and "sleep" in summary[task.pid].command
        assert summary[proc.pid].exec_id == "side" and summary[proc.pid].rss_bytes > 0
        assert all(p.created_at is not None for p in summary.values())
        await proc.delete(force=True)
