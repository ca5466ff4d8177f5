"""Logs you can read back: ``log_format="cri"`` written by both writers (the
client's pump and the shim-run logger), rotated, and read back with
``container.logs()`` / ``supervisor.read_logs()`` while the task runs, after
it exited, after the application restarted and after the container is gone;
``aiter_lines(stderr=True)``."""

from __future__ import annotations

import contextlib
import os
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import errors
from tests.integration.conftest import fifo_files, open_fds

pytestmark = pytest.mark.asyncio

WRITERS = ["client", "logger"]


def _records(path: Path) -> list[list[str]]:
    return [line.split(" ", 3) for line in path.read_text().splitlines()]


async def _run_logged(
    client: supervisor.Client,
    rootfs: str,
    cid: str,
    script: str,
    log: Path,
    writer: str,
    **kw: object,
) -> supervisor.Container:
    spec = supervisor.default_spec(["sh", "-c", script], rootfs)
    container = await client.new_container(cid, spec)
    task = await container.new_task(
        log_path=log,
        log_format="cri",
        log_writer=writer,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )
    await task.start()
    with anyio.fail_after(60):
        assert (await task.wait()).exit_code == 0
    return container


@pytest.mark.parametrize("writer", WRITERS)
async def test_each_stream_keeps_its_order_and_times_never_go_back(
    client: supervisor.Client, rootfs: str, tmp_path: Path, writer: str
) -> None:
    log = tmp_path / "order.log"
    script = "i=0; while [ $i -lt 200 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done"
    container = await _run_logged(client, rootfs, f"order-{writer}", script, log, writer)
    records = _records(log)
    assert all(r[2] == "F" for r in records)
    for stream, word in (("stdout", "out"), ("stderr", "err")):
        mine = [r for r in records if r[1] == stream]
        assert [r[3] for r in mine] == [f"{word}{i}" for i in range(200)]
    stamps = [r[0] for r in records]
    assert stamps == sorted(stamps)  # fixed-width RFC 3339: text order is time order
    lines = [line async for line in container.logs()]
    assert [(x.stream, x.text) for x in lines] == [(r[1], r[3]) for r in records]
    await (await container.task()).delete()
    await container.delete()


async def _touch(task: supervisor.Task, name: str) -> None:
    proc = await task.exec(None, ["touch", f"/tmp/{name}"], output="null")
    await proc.start()
    with anyio.fail_after(30):
        await proc.wait()
    await proc.delete()


@pytest.mark.parametrize("writer", WRITERS)
async def test_the_order_between_streams_holds_where_the_writer_waits_for_the_reader(
    client: supervisor.Client, rootfs: str, tmp_path: Path, writer: str
) -> None:
    # The process writes its next line, on the other stream, only once the
    # test has read the previous one back from the file: a handshake with no
    # sleep on our side, so the file's order is the writes' order.
    log = tmp_path / "handshake.log"
    steps = [("stdout", "a"), ("stderr", "b"), ("stdout", "c"), ("stderr", "d")]
    script = "".join(
        f"echo {word}{' >&2' if stream == 'stderr' else ''}; "
        f"while [ ! -e /tmp/go{i} ]; do usleep 2000; done; "
        for i, (stream, word) in enumerate(steps)
    )
    spec = supervisor.default_spec(["sh", "-c", script], rootfs)
    container = await client.new_container(f"handshake-{writer}", spec)
    task = await container.new_task(log_path=log, log_format="cri", log_writer=writer)  # type: ignore[arg-type]
    await task.start()
    seen = []
    with anyio.fail_after(60):
        async for line in container.logs(follow=True):
            seen.append((line.stream, line.text))
            await _touch(task, f"go{len(seen) - 1}")
    assert seen == steps
    assert [(r[1], r[3]) for r in _records(log)] == steps
    await task.delete()
    await container.delete()


async def test_since_until_tail_and_timestamps_through_the_container(
    client: supervisor.Client, rootfs: str, tmp_path: Path
) -> None:
    log = tmp_path / "q.log"
    script = "echo one; usleep 20000; echo two >&2; usleep 20000; echo three"
    container = await _run_logged(client, rootfs, "query", script, log, "client")
    lines = [line async for line in container.logs()]
    # What each filter must give, worked out from the lines' own times (two
    # close writes may be read in one go and share a time).
    assert sorted(x.text for x in lines) == ["one", "three", "two"]
    assert [(x.stream, x.text) for x in lines] == [(r[1], r[3]) for r in _records(log)]
    middle = lines[1].time_ns
    assert [x.text async for x in container.logs(tail=1)] == [lines[-1].text]
    assert [x.text async for x in container.logs(stdout=False)] == ["two"]
    assert [x.text async for x in container.logs(stderr=False)] == ["one", "three"]
    assert [x.text async for x in container.logs(since=middle)] == [
        x.text for x in lines if x.time_ns >= middle
    ]
    assert [x.text async for x in container.logs(until=middle)] == [
        x.text for x in lines if x.time_ns < middle
    ]
    stamped = [str(x) async for x in container.logs(timestamps=True, tail=1)]
    assert stamped == [f"{_records(log)[-1][0]} {lines[-1].text}"]
    await (await container.task()).delete()
    await container.delete()


@pytest.mark.parametrize("writer", WRITERS)
async def test_rotation_keeps_the_newest_output_readable_in_order(
    client: supervisor.Client, rootfs: str, tmp_path: Path, writer: str
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "rot.log"
    script = "i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done"
    container = await _run_logged(
        client, rootfs, f"rot-{writer}", script, log, writer, log_max_size=8192, log_max_files=3
    )
    assert sorted(p.name for p in logs.iterdir()) == ["rot.log", "rot.log.1", "rot.log.2"]
    assert all(p.stat().st_size <= 8192 for p in logs.iterdir())
    numbers = [int(x.text[4:]) async for x in container.logs()]
    assert numbers == list(range(numbers[0], 2000))
    await (await container.task()).delete()
    await container.delete()


async def test_reading_after_the_container_was_deleted(
    client: supervisor.Client, rootfs: str, tmp_path: Path
) -> None:
    log = tmp_path / "gone.log"
    container = await _run_logged(client, rootfs, "gone", "echo bye", log, "logger")
    await (await container.task()).delete()
    await container.delete()
    assert [x.text async for x in supervisor.read_logs(log)] == ["bye"]


async def test_reading_a_container_whose_task_was_deleted(
    client: supervisor.Client, rootfs: str, tmp_path: Path
) -> None:
    log = tmp_path / "notask.log"
    container = await _run_logged(client, rootfs, "notask", "echo kept", log, "client")
    await (await container.task()).delete()
    with anyio.fail_after(30):
        assert [x.text async for x in container.logs(follow=True)] == ["kept"]
    await container.delete()


async def test_follow_ends_when_the_task_has_exited_and_its_output_is_read(
    client: supervisor.Client, rootfs: str, tmp_path: Path
) -> None:
    log = tmp_path / "follow.log"
    script = "i=0; while [ $i -lt 20 ]; do echo tick$i; usleep 20000; i=$((i+1)); done"
    spec = supervisor.default_spec(["sh", "-c", script], rootfs)
    container = await client.new_container("follow", spec)
    task = await container.new_task(log_path=log, log_format="cri")
    await task.start()
    with anyio.fail_after(60):
        lines = [x.text async for x in container.logs(follow=True)]
    assert lines == [f"tick{i}" for i in range(20)]
    await task.delete()
    await container.delete()


async def test_a_container_without_a_cri_log_cannot_be_read_back(
    client: supervisor.Client, rootfs: str, tmp_path: Path
) -> None:
    spec = supervisor.default_spec(["true"], rootfs)
    container = await client.new_container("nolog", spec)
    with pytest.raises(errors.FailedPrecondition):
        container.logs()
    task = await container.new_task(log_path=tmp_path / "raw.log")
    with pytest.raises(errors.FailedPrecondition, match="raw"):
        container.logs()
    with pytest.raises(errors.InvalidArgument):
        container.logs(tail=-1)
    await task.delete()
    await container.delete()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"log_format": "json"},
        {"log_format": "cri", "log_max_size": 10},
        {"log_format": "cri", "log_max_files": 3},
        {"log_format": "cri", "log_max_size": 8192, "log_max_files": 0},
    ],
)
async def test_bad_log_options_create_nothing(
    client: supervisor.Client,
    rootfs: str,
    tmp_path: Path,
    state_dir: Path,
    kwargs: dict[str, object],
) -> None:
    spec = supervisor.default_spec(["true"], rootfs)
    container = await client.new_container("badopts", spec)
    before = open_fds()
    log = tmp_path / "never.log"
    with pytest.raises(errors.InvalidArgument):
        await container.new_task(log_path=log, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument):
        await container.new_task(log_format="cri")
    assert not log.exists()
    assert open_fds() == before
    assert fifo_files(state_dir) == []
    assert not container.bundle_dir.exists() or list(container.bundle_dir.iterdir()) == []
    await container.delete()


# The "first run" of an application: it starts a task logging in the CRI
# format and exits without deleting anything, as a crash or an upgrade would.
_FIRST_RUN = textwrap.dedent(
    """
    import sys, anyio, supervisor

    async def main(address, namespace, state, rootfs, script, log, writer):
        async with supervisor.connect(address, namespace=namespace, state_dir=state) as client:
            spec = supervisor.default_spec(["sh", "-c", script], rootfs)
            container = await client.new_container("restarted", spec)
            task = await container.new_task(log_path=log, log_format="cri", log_writer=writer)
            await task.start()

    anyio.run(main, *sys.argv[1:])
    """
)


@pytest.mark.parametrize("writer", WRITERS)
async def test_reading_back_after_the_application_restarted(
    containerd_address: str,
    namespace: str,
    state_dir: Path,
    rootfs: str,
    tmp_path: Path,
    writer: str,
) -> None:
    log = tmp_path / "restart.log"
    # Output written while no application runs: in the FIFOs for the client
    # writer (copied once the next run attaches), in the file for the logger.
    script = "usleep 300000; i=0; while [ $i -lt 500 ]; do echo o$i; echo e$i >&2; i=$((i+1)); done"
    args = [containerd_address, namespace, str(state_dir), rootfs, script, str(log), writer]
    with anyio.fail_after(60):
        await anyio.run_process([sys.executable, "-c", _FIRST_RUN, *args], check=True)
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as client:
        container = await client.load_container("restarted")
        with anyio.fail_after(60):
            lines = [x async for x in container.logs(follow=True)]
        assert [x.text for x in lines if x.stream == "stdout"] == [f"o{i}" for i in range(500)]
        assert [x.text for x in lines if x.stream == "stderr"] == [f"e{i}" for i in range(500)]
        task = await container.task()
        await task.delete()
        await container.delete()
    assert fifo_files(state_dir) == []


async def test_aiter_lines_with_stderr_tags_each_line(
    client: supervisor.Client, rootfs: str
) -> None:
    script = (
        "i=0; while [ $i -lt 100 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done; printf end"
    )
    spec = supervisor.default_spec(["sh", "-c", script], rootfs)
    async with client.running("tagged", spec) as task:
        with anyio.fail_after(60):
            lines = [line async for line in task.aiter_lines(stderr=True)]
    out = [x for x in lines if x.stream == "stdout"]
    err = [x for x in lines if x.stream == "stderr"]
    assert [x.text for x in out] == [f"out{i}" for i in range(100)] + ["end"]
    assert out[-1].partial and not out[0].partial
    assert [x.text for x in err] == [f"err{i}" for i in range(100)]
    assert [x.time_ns for x in lines] == sorted(x.time_ns for x in lines)


async def test_aiter_lines_stays_stdout_text_by_default(
    client: supervisor.Client, rootfs: str
) -> None:
    spec = supervisor.default_spec(["sh", "-c", "echo out; echo err >&2"], rootfs)
    async with client.running("plain", spec) as task:
        with anyio.fail_after(60):
            lines = [line async for line in task.aiter_lines()]
    assert lines == ["out"]


async def test_aiter_lines_with_stderr_refuses_a_logged_process(
    client: supervisor.Client, rootfs: str, tmp_path: Path
) -> None:
    spec = supervisor.default_spec(["true"], rootfs)
    container = await client.new_container("nopipes", spec)
    task = await container.new_task(log_path=tmp_path / "x.log")
    with pytest.raises(errors.FailedPrecondition):
        task.aiter_lines(stderr=True)
    with pytest.raises(errors.InvalidArgument):
        task.aiter_lines(stderr="yes")  # type: ignore[call-overload]
    await task.delete()
    await container.delete()


@pytest.mark.parametrize("writer", WRITERS)
async def test_an_exec_writes_the_cri_format_too(
    client: supervisor.Client, rootfs: str, tmp_path: Path, writer: str
) -> None:
    log = tmp_path / "exec.log"
    spec = supervisor.default_spec(["sleep", "300"], rootfs)
    async with client.running(f"execcri-{writer}", spec) as task:
        proc = await task.exec(
            None,
            ["sh", "-c", "echo out; echo err >&2"],
            log_path=log,
            log_format="cri",
            log_writer=writer,  # type: ignore[arg-type]
        )
        await proc.start()
        with anyio.fail_after(30):
            assert (await proc.wait()).exit_code == 0
        await proc.delete()
    lines = [x async for x in supervisor.read_logs(log)]
    assert sorted((x.stream, x.text) for x in lines) == [("stderr", "err"), ("stdout", "out")]


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
async def test_a_log_file_swapped_after_the_run_is_refused(
    client: supervisor.Client, rootfs: str, tmp_path: Path, kind: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("2026-12-07T04:09:40.1Z stdout F not for you\n")
    log = tmp_path / "swapped.log"
    container = await _run_logged(client, rootfs, f"swap-{kind}", "echo mine", log, "logger")
    await (await container.task()).delete()
    log.unlink()
    if kind == "symlink":
        log.symlink_to(secret)
    elif kind == "fifo":
        os.mkfifo(log)  # a reader that opened it blocking would wait forever
    else:
        log.mkdir()
    before = open_fds()
    with anyio.fail_after(30), pytest.raises(errors.InvalidArgument):
        async for _ in container.logs(follow=True):
            pass
    assert open_fds() == before
    await container.delete()


async def test_leaving_or_cancelling_a_follow_leaves_nothing_open(
    client: supervisor.Client, rootfs: str, tmp_path: Path
) -> None:
    log = tmp_path / "left.log"
    script = "while :; do echo tick; usleep 10000; done"
    spec = supervisor.default_spec(["sh", "-c", script], rootfs)
    container = await client.new_container("left", spec)
    task = await container.new_task(log_path=log, log_format="cri")
    await task.start()
    before = open_fds()
    with anyio.fail_after(30):
        async with contextlib.aclosing(container.logs(follow=True)) as lines:
            async for _ in lines:
                break
        assert open_fds() == before
        with anyio.CancelScope() as scope:
            async with contextlib.aclosing(container.logs(follow=True, tail=0)) as lines:
                async for _ in lines:
                    scope.cancel()
        assert open_fds() == before
    await task.delete(force=True)
    await container.delete()
