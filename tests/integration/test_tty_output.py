"""A process on a terminal: the caller gets all of its output and its real
exit code, whether its input ends (``close_stdin``, ``communicate``,
``run(input=...)``) or its output goes to a logger.

A terminal has no end-of-file of its own: the shim's CloseIO closes the
terminal's master, which hangs it up (SIGHUP) and drops what the process
had not yet written out. Its end of input is the terminal's EOF key (^D),
as a user at a keyboard would type it."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor.fifo._logger import make_logger_stdio
from tests._logs import capture_logs
from tests.integration.helpers import started_with_stdin

pytestmark = pytest.mark.asyncio

# Both need the input's end: ``cat`` ends only at end-of-file, and the
# shell's last word is only written after that.
_CAT_THEN = "cat; echo after"


def _lines(out: bytes) -> list[str]:
    return out.decode().replace("\r\n", "\n").splitlines()


async def test_communicate_with_input_gives_all_output_and_the_real_exit_code(
    client: supervisor.Client, rootfs: str
) -> None:
    container, task = await started_with_stdin(client, rootfs, "tty-comm", _CAT_THEN, terminal=True)
    with anyio.fail_after(30):
        out, err = await task.communicate(b"hello\nworld\n")
        status = await task.wait()
    await task.delete()
    await container.delete()
    # The terminal echoes the input, then cat writes it back.
    assert _lines(out) == ["hello", "world", "hello", "world", "after"], out
    assert err == b""
    assert status.exit_code == 0


async def test_input_without_a_final_newline_still_ends(
    client: supervisor.Client, rootfs: str
) -> None:
    container, task = await started_with_stdin(
        client, rootfs, "tty-partial", "read x; echo got $x", terminal=True
    )
    with anyio.fail_after(30):
        out, _ = await task.communicate(b"abc")
        status = await task.wait()
    await task.delete()
    await container.delete()
    # read(1) of sh gets "abc" without a newline, then end-of-file: it
    # still sets x (and returns 1, which the echo after it hides).
    assert out.replace(b"\r\n", b"\n").endswith(b"got abc\n"), out
    assert status.exit_code == 0


async def test_communicate_without_input_ends_the_input(
    client: supervisor.Client, rootfs: str
) -> None:
    container, task = await started_with_stdin(
        client, rootfs, "tty-noinput", _CAT_THEN, terminal=True
    )
    with anyio.fail_after(30):
        out, _ = await task.communicate()
        status = await task.wait()
    await task.delete()
    await container.delete()
    assert _lines(out) == ["after"], out
    assert status.exit_code == 0


async def test_communicate_ends_when_the_process_leaves_input_unread(
    client: supervisor.Client, rootfs: str
) -> None:
    # More input than the FIFO and the terminal hold, never read: the shim's
    # copy into the terminal blocks for good once the process is gone, so
    # our write never finished.
    container, task = await started_with_stdin(
        client, rootfs, "tty-unread", "echo marker", terminal=True
    )
    with anyio.fail_after(60):
        out, _ = await task.communicate(b"x" * 300_000 + b"\n")
        status = await task.wait()
    await task.delete()
    await container.delete()
    assert b"marker\r\n" in out
    assert status.exit_code == 0


async def test_close_stdin_ends_when_the_process_is_gone_and_the_input_full(
    client: supervisor.Client, rootfs: str
) -> None:
    # The EOF key goes after the input; with the FIFO full and the process
    # gone, the shim never takes it, and close_stdin must not wait for that.
    container, task = await started_with_stdin(
        client, rootfs, "tty-full", "sleep 600", terminal=True
    )
    assert task.stdin is not None
    await task.kill(9)
    status = await task.wait()
    # The shim's copy into the terminal of a process that is gone waits for
    # good: after its first chunk the FIFO fills, and the send gives up there.
    with anyio.fail_after(60), pytest.raises(supervisor.errors.StdinNotRead):
        await task.stdin.send(b"x" * 1_000_000)
    with anyio.fail_after(60):
        await task.close_stdin()
    await task.delete()
    await container.delete()
    assert status.exit_code == 137


async def test_close_stdin_before_start_ends_the_input_once_started(
    client: supervisor.Client, rootfs: str
) -> None:
    spec = supervisor.default_spec(["sh", "-c", _CAT_THEN], rootfs, terminal=True)
    container = await client.new_container("tty-early", spec)
    task = await container.new_task(stdin=True, terminal=True)
    await task.close_stdin()
    await task.start()
    with anyio.fail_after(30):
        out, _ = await task.communicate()
        status = await task.wait()
    await task.delete()
    await container.delete()
    assert _lines(out) == ["after"], out
    assert status.exit_code == 0


async def test_run_with_input_on_a_terminal(client: supervisor.Client, rootfs: str) -> None:
    spec = supervisor.default_spec(["sh", "-c", _CAT_THEN], rootfs, terminal=True)
    with anyio.fail_after(30):
        result = await client.run("tty-run", spec, input=b"one\n", terminal=True)
    assert _lines(result.stdout) == ["one", "one", "after"], result.stdout
    assert result.exit_code == 0


async def test_an_exec_on_a_terminal_gets_its_input_and_ends(
    client: supervisor.Client, rootfs: str
) -> None:
    spec = supervisor.default_spec(["sleep", "60"], rootfs)
    container = await client.new_container("tty-exec", spec)
    task = await container.new_task()
    await task.start()
    try:
        proc = await task.exec("e1", ["sh", "-c", _CAT_THEN], stdin=True, terminal=True)
        await proc.start()
        with anyio.fail_after(30):
            out, _ = await proc.communicate(b"x\n")
            status = await proc.wait()
        await proc.delete()
    finally:
        await task.delete(force=True)
        await container.delete()
    assert _lines(out) == ["x", "x", "after"], out
    assert status.exit_code == 0


# -- log_writer="logger" on a terminal ----------------------------------------------


def _high(fd: int) -> int:
    # Out of the way of 3, 4 and 5, which the logger gets them as.
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    finally:
        os.close(fd)


def _spawn_logger(script: Path, log: Path, prefix: Path) -> tuple[int, int]:
    """The logger as the shim starts it on a terminal: stdout and stderr
    pipes as fds 3 and 4, its readiness pipe as fd 5; our write end of
    stdout (the shim's copy out of the terminal), and its pid."""
    out_r, out_w = (_high(fd) for fd in os.pipe())
    err_r, err_w = (_high(fd) for fd in os.pipe())
    ready_r, ready_w = (_high(fd) for fd in os.pipe())
    actions = [(os.POSIX_SPAWN_DUP2, fd, n) for fd, n in ((out_r, 3), (err_r, 4), (ready_w, 5))]
    pid = os.posix_spawn(
        str(script), [str(script), str(log), str(prefix)], {}, file_actions=actions
    )
    for fd in (out_r, err_r, ready_w, err_w):
        # The shim drops its stderr write end on a terminal: nothing goes there.
        os.close(fd)
    try:
        while os.read(ready_r, 1):
            pass  # ready when it closes fd 5
    finally:
        os.close(ready_r)
    return out_w, pid


def _reap(pid: int) -> None:
    os.kill(pid, 9)
    os.waitpid(pid, 0)


async def test_the_logger_answers_a_terminal_s_drain_after_stdout_ended(
    tmp_path: Path,
) -> None:
    # The shim copies a terminal's output into the logger's pipe after the
    # exit is known; a drain that answered at an empty pipe lost its tail.
    log = tmp_path / "out.log"
    stdio = make_logger_stdio(tmp_path / "state", tmp_path, "init.0123abcd", log, terminal=True)
    script = next((tmp_path / "state" / ".logger").iterdir())
    out_w, pid = _spawn_logger(script, log, tmp_path / "init.0123abcd")
    try:
        os.write(out_w, b"head\n")
        seen: list[tuple[bool, bytes]] = []
        answered = anyio.Event()

        async def drain() -> None:
            drained = await stdio.wait_drained(30)
            seen.append((drained, log.read_bytes()))
            answered.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain)
            # A logger that answers at once does so well within this bound;
            # the tail follows either way.
            with anyio.move_on_after(1):
                await answered.wait()
            os.write(out_w, b"tail\n")
            os.close(out_w)
            out_w = -1
        assert seen == [(True, b"head\ntail\n")]
    finally:
        if out_w >= 0:
            os.close(out_w)
        _reap(pid)
        stdio.remove()


async def test_a_logger_that_exits_without_answering_counts_as_drained(
    tmp_path: Path,
) -> None:
    # On a terminal the logger ends by itself once both pipes reached
    # end-of-file, which may be just after our request went in: it never
    # answers, and the caller waited the whole bound for nothing.
    log = tmp_path / "out.log"
    stdio = make_logger_stdio(tmp_path / "state", tmp_path, "init.0123abcd", log, terminal=True)
    logger = os.open(tmp_path / "init.0123abcd-ctl", os.O_RDWR | os.O_NONBLOCK)
    try:
        requests: list[bytes] = []
        results: list[bool] = []

        async def drain() -> None:
            results.append(await stdio.wait_drained(10))

        with capture_logs() as logs, anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(drain)
                await anyio.wait_readable(logger)
                requests.append(os.read(logger, 100))
                os.close(logger)  # gone, without an answer
                logger = -1
        assert results == [True]
        assert requests[0].endswith(b" eof\n"), requests
        assert [e for e in logs if e["event"].startswith("process.log_")] == []
    finally:
        if logger >= 0:
            os.close(logger)
        stdio.remove()


async def test_a_terminal_s_whole_output_is_in_the_logger_s_file_once_wait_returns(
    client: supervisor.Client, rootfs: str, tmp_path: Path
) -> None:
    # The real shim: its copy out of the terminal ends, so the logger's
    # answer comes (no drain gives up), with every line in the file.
    script = "echo out1; echo out2; echo out3"
    spec = supervisor.default_spec(["sh", "-c", script], rootfs, terminal=True)
    limiter = anyio.Semaphore(4)

    async def one(i: int) -> None:
        async with limiter:
            log = tmp_path / f"{i}.log"
            container = await client.new_container(f"tty-log-{i}", spec)
            task = await container.new_task(terminal=True, log_path=log, log_writer="logger")
            await task.start()
            status = await task.wait()
            text = log.read_bytes()
            await task.delete()
            await container.delete()
            assert text == b"out1\r\nout2\r\nout3\r\n", (i, text)
            assert status.exit_code == 0

    with capture_logs() as logs:
        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for i in range(24):
                    tg.start_soon(one, i)
    assert [e for e in logs if e["event"].startswith("process.log_")] == []


async def test_an_exec_on_a_terminal_through_a_logger(
    client: supervisor.Client, rootfs: str, tmp_path: Path
) -> None:
    spec = supervisor.default_spec(["sleep", "60"], rootfs)
    container = await client.new_container("tty-log-exec", spec)
    task = await container.new_task()
    await task.start()
    log = tmp_path / "exec.log"
    try:
        with capture_logs() as logs:
            proc = await task.exec(
                "e1",
                ["sh", "-c", "echo one; echo two"],
                terminal=True,
                log_path=log,
                log_writer="logger",
            )
            await proc.start()
            with anyio.fail_after(30):
                status = await proc.wait()
            text = log.read_bytes()
            await proc.delete()
    finally:
        await task.delete(force=True)
        await container.delete()
    assert text == b"one\r\ntwo\r\n"
    assert status.exit_code == 0
    assert [e for e in logs if e["event"].startswith("process.log_")] == []
