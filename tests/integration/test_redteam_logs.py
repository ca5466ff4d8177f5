"""Red-team checks of ``log_path`` against the real containerd: hostile
files between the application's runs, a full disk, odd output, leftover
children, cancellation, many loggers at once.

Each test guards against a defect that the pass found (all mended), or
holds what held already."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import supervisor
from supervisor import errors
from tests._logs import capture_logs
from tests.integration.conftest import fifo_files, open_fds

pytestmark = pytest.mark.asyncio

WRITERS = ["client", "logger"]


def _loggers(state_dir: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(state_dir / ".logger").encode() in cmdline:
            found.append(int(entry.name))
    return found


def _open_under(*roots: Path) -> list[str]:
    """Our fds on files under ``roots`` (FIFO ends, log files)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if any(target.startswith(str(root)) for root in roots):
            found.append(target)
    return found


def _left_in(state_dir: Path) -> list[str]:
    """Files of ours left under the state directory (the logger's script aside)."""
    if not state_dir.exists():
        return []
    return sorted(
        str(p.relative_to(state_dir))
        for p in state_dir.rglob("*")
        if ".logger" not in p.parts and not p.is_dir()
    )


# The first run of an application: a logged task started, the application
# gone without deleting anything.
_FIRST_RUN = textwrap.dedent(
    """
    import sys, anyio, supervisor

    async def main(address, namespace, state, rootfs, script, log, writer):
        async with supervisor.connect(address, namespace=namespace, state_dir=state) as client:
            spec = supervisor.default_spec(["sh", "-c", script], rootfs)
            container = await client.new_container("logged", spec)
            task = await container.new_task(log_path=log, log_writer=writer)
            await task.start()

    anyio.run(main, *sys.argv[1:])
    """
)

_RESTORE = textwrap.dedent(
    """
    import sys, anyio, supervisor

    async def main(address, namespace, state):
        async with supervisor.connect(address, namespace=namespace, state_dir=state) as client:
            for container, task in await client.restore():
                if task is not None:
                    await task.delete(force=True)
                await container.delete()
        print("restored")

    anyio.run(main, *sys.argv[1:])
    """
)


async def _first_run(
    address: str, namespace: str, state_dir: Path, rootfs: str, script: str, log: Path, writer: str
) -> None:
    args = [address, namespace, str(state_dir), rootfs, script, str(log), writer]
    with anyio.fail_after(60):
        await anyio.run_process([sys.executable, "-c", _FIRST_RUN, *args], check=True)


def _record(state_dir: Path, namespace: str) -> Path:
    (record,) = (state_dir / namespace / "logged").glob("init.*-log")
    return record


# -- hostile files between two runs -----------------------------------------------


@pytest.mark.parametrize("writer", WRITERS)
async def test_restore_with_a_fifo_for_a_record_does_not_hang(
    containerd_address: str,
    namespace: str,
    state_dir: Path,
    rootfs: str,
    tmp_path: Path,
    writer: str,
) -> None:
    log = tmp_path / "job.log"
    await _first_run(containerd_address, namespace, state_dir, rootfs, "sleep 300", log, writer)
    record = _record(state_dir, namespace)
    record.unlink()
    os.mkfifo(record, 0o600)
    # In a process of its own: the defect blocks the whole event loop.
    args = [containerd_address, namespace, str(state_dir)]
    async with await anyio.open_process(
        [sys.executable, "-c", _RESTORE, *args], stderr=subprocess.DEVNULL
    ) as proc:
        assert proc.stdout is not None
        out = b""
        with anyio.move_on_after(30):
            async for chunk in proc.stdout:
                out += chunk
            await proc.wait()
        if proc.returncode is None:
            # Free the blocked open (a writer that comes and goes), then let it end.
            os.close(os.open(record, os.O_WRONLY | os.O_NONBLOCK))
            with anyio.fail_after(60):
                await proc.wait()
            pytest.fail("restore() blocked on a FIFO record")
    assert proc.returncode == 0 and b"restored" in out


_NEW_TASK = textwrap.dedent(
    """
    import sys, anyio, supervisor

    async def main(address, namespace, state, rootfs, log, writer):
        async with supervisor.connect(address, namespace=namespace, state_dir=state) as client:
            spec = supervisor.default_spec(["true"], rootfs)
            container = await client.new_container("fifolog", spec)
            try:
                await container.new_task(log_path=log, log_writer=writer)
            except supervisor.errors.InvalidArgument:
                print("refused")
            await container.delete()

    anyio.run(main, *sys.argv[1:])
    """
)


@pytest.mark.parametrize("writer", WRITERS)
async def test_a_fifo_as_log_path_is_refused_without_blocking(
    containerd_address: str,
    namespace: str,
    state_dir: Path,
    rootfs: str,
    tmp_path: Path,
    writer: str,
) -> None:
    log = tmp_path / "job.log"
    os.mkfifo(log, 0o600)
    args = [containerd_address, namespace, str(state_dir), rootfs, str(log), writer]
    async with await anyio.open_process(
        [sys.executable, "-c", _NEW_TASK, *args], stderr=subprocess.DEVNULL
    ) as proc:
        assert proc.stdout is not None
        out = b""
        with anyio.move_on_after(30):
            async for chunk in proc.stdout:
                out += chunk
            await proc.wait()
        if proc.returncode is None:
            # Free the blocked open (a reader that comes and goes), then let it end.
            os.close(os.open(log, os.O_RDONLY | os.O_NONBLOCK))
            with anyio.fail_after(60):
                await proc.wait()
            pytest.fail("new_task() blocked on a FIFO log_path")
    assert proc.returncode == 0 and out == b"refused\n"
    assert _left_in(state_dir) == []


@pytest.mark.parametrize("writer", WRITERS)
async def test_a_record_naming_another_file_is_written_by_us_only_if_ours(
    containerd_address: str,
    namespace: str,
    state_dir: Path,
    rootfs: str,
    tmp_path: Path,
    writer: str,
) -> None:
    # A record given away to another user names a file the library must not
    # append to: restore() takes it for not ours.
    if os.geteuid() != 0:
        pytest.skip("needs root to give the record away")
    log = tmp_path / "job.log"
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep\n")
    script = "sleep 1; echo planted; echo planted >&2"
    await _first_run(containerd_address, namespace, state_dir, rootfs, script, log, writer)
    record = _record(state_dir, namespace)
    record.unlink()
    record.write_bytes(os.fsencode(victim))
    os.chown(record, 65534, 65534)
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as client:
        ((container, task),) = await client.restore()
        assert task is not None
        with anyio.fail_after(60):
            await task.wait()
        await task.delete()
        await container.delete()
    assert victim.read_bytes() == b"keep\n"
    assert _left_in(state_dir) == []


async def test_a_log_file_swapped_for_a_symlink_is_not_followed_at_restore(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, tmp_path: Path
) -> None:
    log = tmp_path / "job.log"
    target = tmp_path / "target"
    script = "sleep 1; echo late; echo late >&2"
    await _first_run(containerd_address, namespace, state_dir, rootfs, script, log, "client")
    log.unlink()
    log.symlink_to(target)
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as client:
        ((container, task),) = await client.restore()
        assert task is not None
        with anyio.fail_after(60):
            await task.wait()
        await task.delete()
        await container.delete()
    assert not target.exists()
    assert _left_in(state_dir) == []


async def test_a_refused_log_file_at_restore_is_reported(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, tmp_path: Path
) -> None:
    log = tmp_path / "job.log"
    await _first_run(containerd_address, namespace, state_dir, rootfs, "sleep 300", log, "client")
    log.unlink()
    log.symlink_to(tmp_path / "target")
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as client:
        with capture_logs() as events:
            ((container, task),) = await client.restore()
        assert task is not None
        await task.delete(force=True)
        await container.delete()
    warned = [e for e in events if e["log_level"] in ("warning", "error")]
    assert task.log_path == log or any("log" in str(e["event"]) for e in warned), events


async def test_a_parent_directory_swapped_for_a_symlink_is_not_written_through(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = "sleep 1; echo late; echo late >&2"
    await _first_run(
        containerd_address, namespace, state_dir, rootfs, script, logs / "job.log", "client"
    )
    logs.rename(tmp_path / "logs.old")
    logs.symlink_to(elsewhere)
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as client:
        ((container, task),) = await client.restore()
        assert task is not None
        with anyio.fail_after(60):
            await task.wait()
        await task.delete()
        await container.delete()
    assert list(elsewhere.iterdir()) == []


# -- hostile environment while the process runs -----------------------------------


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    mount = tmp_path / "full"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("writer", WRITERS)
async def test_a_full_filesystem_drops_output_but_nothing_hangs_or_stays(
    client: supervisor.Client, rootfs: str, state_dir: Path, tiny_fs: Path, writer: str
) -> None:
    log = tiny_fs / "job.log"
    script = "head -c 1000000 /dev/zero | tr '\\0' o; echo end; echo err >&2"
    spec = supervisor.default_spec(["sh", "-c", script], rootfs)
    container = await client.new_container("full", spec)
    with capture_logs() as events:
        task = await container.new_task(log_path=log, log_writer=writer)
        await task.start()
        with anyio.fail_after(60):
            assert (await task.wait()).exit_code == 0
            await task.delete()
    await container.delete()
    assert log.stat().st_size == 64 * 1024  # as much as fitted
    if writer == "client":
        failed = [e for e in events if e["event"] == "process.log_write_failed"]
        assert len(failed) == 1  # said once, not per chunk
    assert _loggers(state_dir) == []
    assert _left_in(state_dir) == []


@pytest.mark.parametrize("writer", WRITERS)
async def test_a_log_file_deleted_while_the_process_writes(
    client: supervisor.Client, rootfs: str, state_dir: Path, tmp_path: Path, writer: str
) -> None:
    log = tmp_path / "job.log"
    # stdin is refused with log_path: the process waits for a file an exec makes.
    spec = supervisor.default_spec(
        ["sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.05; done; head -c 3000000 /dev/zero"],
        rootfs,
    )
    container = await client.new_container("deleted", spec)
    task = await container.new_task(log_path=log, log_writer=writer)
    await task.start()
    log.unlink()
    go = await task.exec(None, ["touch", "/tmp/go"])
    await go.start()
    await go.wait()
    await go.delete()
    with anyio.fail_after(60):
        assert (await task.wait()).exit_code == 0
        await task.delete()
    await container.delete()
    assert not log.exists()  # never made again behind the caller's back
    assert _loggers(state_dir) == []
    assert _left_in(state_dir) == []


@pytest.mark.parametrize("writer", WRITERS)
async def test_binary_output_without_newlines_and_10_mb_bursts_arrive_whole(
    client: supervisor.Client, rootfs: str, state_dir: Path, tmp_path: Path, writer: str
) -> None:
    log = tmp_path / "burst.log"
    # 10 MB on stdout in one go, every byte value, no newline at the end;
    # then stderr, also without a newline.
    script = (
        "i=0; while [ $i -lt 40 ]; do cat /bin/busybox; i=$((i+1)); done | head -c 10000000; "
        "printf '\\001\\377tail' >&2"
    )
    spec = supervisor.default_spec(["sh", "-c", script], rootfs)
    container = await client.new_container("burst", spec)
    task = await container.new_task(log_path=log, log_writer=writer)
    await task.start()
    with anyio.fail_after(120):
        assert (await task.wait()).exit_code == 0
    data = log.read_bytes()
    await task.delete()
    await container.delete()
    busybox = (Path(rootfs) / "bin" / "busybox").read_bytes()
    expected = (busybox * (10_000_000 // len(busybox) + 1))[:10_000_000]
    tail = b"\x01\xfftail"
    # Chunks of the two streams interleave; stderr's is small enough to be
    # one chunk, so taking it out leaves stdout whole.
    assert len(data) == len(expected) + len(tail)
    assert tail in data
    assert data.replace(tail, b"", 1) == expected
    assert _left_in(state_dir) == []


async def test_an_exec_whose_child_keeps_stdout_open_ends_within_output_drain(
    containerd_address: str, namespace: str, rootfs: str, state_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "exec.log"
    timeouts = supervisor.Timeouts(output_drain=1.0)
    spec = supervisor.default_spec(["sleep", "300"], rootfs)
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir, timeouts=timeouts
    ) as client:
        async with client.running("leftover", spec) as task:
            proc = await task.exec(
                None, ["sh", "-c", "echo before; (sleep 300) & echo after"], log_path=log
            )
            await proc.start()
            with capture_logs() as events:
                # Bounded by output_drain (1 s), far below this bound.
                with anyio.fail_after(20):
                    assert (await proc.wait()).exit_code == 0
            assert log.read_bytes() == b"before\nafter\n"
            assert any(e["event"] == "process.log_not_drained" for e in events)
            await proc.delete()
    assert _left_in(state_dir) == []


async def test_deleting_a_logger_exec_whose_child_keeps_stdout_open_is_prompt(
    client: supervisor.Client, rootfs: str, state_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "exec.log"
    spec = supervisor.default_spec(["sleep", "300"], rootfs)
    async with client.running("leftover", spec) as task:
        proc = await task.exec(
            None,
            ["sh", "-c", "echo before; (sleep 300) & echo after"],
            log_path=log,
            log_writer="logger",
        )
        await proc.start()
        with anyio.fail_after(20):
            assert (await proc.wait()).exit_code == 0
        assert log.read_bytes() == b"before\nafter\n"
        # A shielded delete outlives a cancel scope's deadline, so the bound is
        # read off the clock: output_drain (5 s) plus slack; the defect takes 12 s.
        started = anyio.current_time()
        await proc.delete()
        assert anyio.current_time() - started < 8
    assert _loggers(state_dir) == []


# -- cancellation -----------------------------------------------------------------

DELAYS = [0, 0.001, 0.003, 0.006, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.25]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("delay", DELAYS)
async def test_a_cancelled_logged_lifecycle_leaves_nothing(
    client: supervisor.Client,
    rootfs: str,
    state_dir: Path,
    tmp_path: Path,
    writer: str,
    delay: float,
) -> None:
    fds = open_fds()
    held: dict[str, Any] = {}
    log = tmp_path / "job.log"
    spec = supervisor.default_spec(["sh", "-c", "echo out; echo err >&2"], rootfs)
    held["container"] = await client.new_container("c", spec)
    with anyio.move_on_after(delay):
        held["task"] = task = await held["container"].new_task(log_path=log, log_writer=writer)
        await task.start()
        await task.wait()
        await task.delete()
        del held["task"]
    if "task" in held:
        try:
            await held["task"].delete(force=True)
        except errors.NotFound:
            pass
    await held["container"].delete()
    assert await client.containers() == []
    assert fifo_files(state_dir) == []
    assert _left_in(state_dir) == []
    assert _loggers(state_dir) == []
    assert open_fds() == fds


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("delay", DELAYS)
async def test_a_cancelled_logged_exec_leaves_nothing(
    client: supervisor.Client,
    rootfs: str,
    state_dir: Path,
    tmp_path: Path,
    writer: str,
    delay: float,
) -> None:
    log = tmp_path / "exec.log"
    spec = supervisor.default_spec(["sleep", "300"], rootfs)
    async with client.running("host", spec) as task:
        before = sorted(p.name for p in task.container.bundle_dir.iterdir())
        fds = open_fds()
        held: dict[str, Any] = {}
        with anyio.move_on_after(delay):
            held["exec"] = proc = await task.exec(
                "e", ["sh", "-c", "echo out; echo err >&2"], log_path=log, log_writer=writer
            )
            await proc.start()
            await proc.wait()
            await proc.delete()
            del held["exec"]
        if "exec" in held:
            try:
                await held["exec"].delete(force=True)
            except errors.NotFound:
                pass
        assert sorted(p.name for p in task.container.bundle_dir.iterdir()) == before
        assert open_fds() == fds
        assert [p.pid for p in await task.pids()] == [task.pid]
    assert _loggers(state_dir) == []


# -- several clients, many loggers --------------------------------------------------


async def test_two_clients_restoring_one_logged_task_lose_and_double_nothing(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, tmp_path: Path
) -> None:
    log = tmp_path / "shared.log"
    script = "sleep 1; i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done; echo end >&2"
    await _first_run(containerd_address, namespace, state_dir, rootfs, script, log, "client")
    async with (
        supervisor.connect(containerd_address, namespace=namespace, state_dir=state_dir) as one,
        supervisor.connect(containerd_address, namespace=namespace, state_dir=state_dir) as two,
    ):
        found: list[Any] = []

        async def restore(client: supervisor.Client) -> None:
            found.append(await client.restore())

        async with anyio.create_task_group() as tg:
            tg.start_soon(restore, one)
            tg.start_soon(restore, two)
        tasks = [entries[0][1] for entries in found]
        with anyio.fail_after(60):
            for task in tasks:
                await task.wait()
        data = log.read_text()
        await tasks[0].delete()
        await tasks[0].container.delete()
    lines = data.split()
    assert sorted(lines) == sorted([f"line{i}" for i in range(2000)] + ["end"])
    out = [line for line in lines if line != "end"]
    assert out == [f"line{i}" for i in range(2000)]  # one loop: chunks stay in order
    assert _open_under(state_dir, tmp_path) == []
    assert _left_in(state_dir) == []


async def test_a_hundred_logger_tasks_at_once(
    client: supervisor.Client, rootfs: str, state_dir: Path, tmp_path: Path
) -> None:
    spec = supervisor.default_spec(["sh", "-c", "echo out; echo err >&2"], rootfs)
    limiter = anyio.Semaphore(100)
    results: dict[int, bytes] = {}

    async def one(i: int) -> None:
        async with limiter:
            log = tmp_path / f"{i}.log"
            container = await client.new_container(f"many-{i}", spec)
            task = await container.new_task(log_path=log, log_writer="logger")
            await task.start()
            await task.wait()
            results[i] = log.read_bytes()
            await task.delete()
            await container.delete()

    with anyio.fail_after(300):
        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(one, i)
    assert {i: sorted(d.split()) for i, d in results.items()} == {
        i: [b"err", b"out"] for i in range(100)
    }
    assert _loggers(state_dir) == []
    assert _left_in(state_dir) == []


async def test_a_logger_whose_control_fifo_was_removed_still_lets_wait_and_delete_end(
    client: supervisor.Client, rootfs: str, state_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "noctl.log"
    spec = supervisor.default_spec(["sh", "-c", "sleep 0.5; echo out; echo err >&2"], rootfs)
    container = await client.new_container("noctl", spec)
    task = await container.new_task(log_path=log, log_writer="logger")
    (ctl,) = container.bundle_dir.glob("init.*-ctl")
    ctl.unlink()
    await task.start()
    with anyio.fail_after(30):
        await task.wait()
        await task.delete()
    await container.delete()
    # The logger drains to end-of-file when the shim lets go: delete() has all.
    assert sorted(log.read_text().split()) == ["err", "out"]
    assert _loggers(state_dir) == []
    assert _left_in(state_dir) == []


async def test_a_removed_control_fifo_never_lets_wait_promise_a_whole_file_silently(
    client: supervisor.Client, rootfs: str, state_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "stopped.log"
    spec = supervisor.default_spec(["sh", "-c", "echo out; echo err >&2"], rootfs)
    container = await client.new_container("stopped", spec)
    task = await container.new_task(log_path=log, log_writer="logger")
    (ctl,) = container.bundle_dir.glob("init.*-ctl")
    ctl.unlink()
    (logger,) = _loggers(state_dir)
    # A logger that is slow to copy (stopped here, so the outcome is certain).
    os.kill(logger, signal.SIGSTOP)
    try:
        await task.start()
        with capture_logs() as events:
            with anyio.fail_after(30):
                await task.wait()
        data = log.read_bytes()
    finally:
        os.kill(logger, signal.SIGCONT)
    await task.delete()
    await container.delete()
    warned = [e["event"] for e in events if e["log_level"] in ("warning", "error")]
    # Either every byte is there, as wait() promises, or the caller is told.
    assert sorted(data.split()) == [b"err", b"out"] or warned, (data, warned)


async def test_closing_the_client_while_wait_drains_ends_the_wait(
    containerd_address: str, namespace: str, rootfs: str, state_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "closing.log"
    timeouts = supervisor.Timeouts(output_drain=120.0)
    spec = supervisor.default_spec(["sleep", "300"], rootfs)
    ended = anyio.Event()

    async def waiter(proc: Any) -> None:
        try:
            await proc.wait()
        except errors.Closed:
            pass
        finally:
            ended.set()

    async with anyio.create_task_group() as tg:
        async with supervisor.connect(
            containerd_address, namespace=namespace, state_dir=state_dir, timeouts=timeouts
        ) as client:
            container = await client.new_container("closing", spec)
            task = await container.new_task()
            await task.start()
            # A child keeps stdout open: the drain would last output_drain.
            proc = await task.exec(
                "e", ["sh", "-c", "echo before; (sleep 300) & echo after"], log_path=log
            )
            await proc.start()
            tg.start_soon(waiter, proc)
            with anyio.fail_after(30):
                while await proc.status() != supervisor.ProcessState.STOPPED:
                    await anyio.sleep(0.05)
        # The client is closed: the wait ends, far within output_drain.
        with anyio.fail_after(20):
            await ended.wait()
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as again:
        for container, task in await again.restore():
            if task is not None:
                await task.delete(force=True)
            await container.delete()
    assert log.read_bytes() == b"before\nafter\n"
    assert _left_in(state_dir) == []


@pytest.mark.parametrize("writer", ["client", "logger"])
@pytest.mark.parametrize("kind", ["task", "exec"])
async def test_deleting_a_logged_process_that_never_started_waits_for_nothing(
    containerd_address: str,
    namespace: str,
    rootfs: str,
    state_dir: Path,
    tmp_path: Path,
    writer: str,
    kind: str,
) -> None:
    log = tmp_path / "never.log"
    timeouts = supervisor.Timeouts(output_drain=3.0)
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir, timeouts=timeouts
    ) as client:
        if kind == "task":
            spec = supervisor.default_spec(["echo", "never"], rootfs)
            container = await client.new_container("never", spec)
            task = await container.new_task(log_path=log, log_writer=writer)
            with capture_logs() as events:
                await task.delete()
            await container.delete()
        else:
            spec = supervisor.default_spec(["sleep", "300"], rootfs)
            async with client.running("never", spec) as task:
                proc = await task.exec(None, ["echo", "never"], log_path=log, log_writer=writer)
                with capture_logs() as events:
                    await proc.delete()
    # Nothing was ever written: there is nothing to wait for.
    assert [e for e in events if e["event"] == "process.log_not_drained"] == []
    assert log.read_bytes() == b""
    assert _left_in(state_dir) == []
