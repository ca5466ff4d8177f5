"""A process on a terminal: the caller gets all of its output and its real
exit code, whether its input ends (``close_stdin``, ``communicate``,
``run(input=...)``) or its output goes to a logger.

A terminal has no end-of-file of its own: the shim's CloseIO closes the
terminal's master, which hangs it up (SIGHUP) and drops what the process
had not yet written out. Its end of input is the terminal's EOF key (^D),
as a user at a keyboard would type it."""

from __future__ import annotations

import anyio
import pytest

import supervisor

pytestmark = pytest.mark.asyncio

# Both need the input's end: ``cat`` ends only at end-of-file, and the
# shell's last word is only written after that.
_CAT_THEN = "cat; echo after"


async def _started(
    client: supervisor.Client, rootfs: str, cid: str, script: str
) -> tuple[supervisor.Container, supervisor.Task]:
    spec = supervisor.default_spec(["sh", "-c", script], rootfs, terminal=True)
    container = await client.new_container(cid, spec)
    task = await container.new_task(stdin=True, terminal=True)
    await task.start()
    return container, task


def _lines(out: bytes) -> list[str]:
    return out.decode().replace("\r\n", "\n").splitlines()


async def test_communicate_with_input_gives_all_output_and_the_real_exit_code(
    client: supervisor.Client, rootfs: str
) -> None:
    container, task = await _started(client, rootfs, "tty-comm", _CAT_THEN)
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
    container, task = await _started(client, rootfs, "tty-partial", "read x; echo got $x")
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
    container, task = await _started(client, rootfs, "tty-noinput", _CAT_THEN)
    with anyio.fail_after(30):
        out, _ = await task.communicate()
        status = await task.wait()
    await task.delete()
    await container.delete()
    assert _lines(out) == ["after"], out
    assert status.exit_code == 0


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
