"""``log_path``: every byte a process wrote is in its file once ``wait()``
returned, whether the application stayed up or was restarted meanwhile, and a
refused or hostile ``log_path`` leaves nothing behind.

The shim's own ``file://`` copy loses late stderr (its stdout copier closes the
shared file under the stderr copier), so the library copies the output from
FIFOs itself (:mod:`supervisor.fifo._log_pump`)."""

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

_INTERLEAVED = "echo out1; echo err1 >&2; echo out2; echo err2 >&2"


async def _interleaved_run(client: supervisor.Client, rootfs: str, log: Path, cid: str) -> None:
    spec = supervisor.default_spec(["sh", "-c", _INTERLEAVED], rootfs)
    container = await client.new_container(cid, spec)
    task = await container.new_task(log_path=log)
    await task.start()
    status = await task.wait()
    # Read before delete(): wait() alone promises the whole output.
    words = log.read_text().split()
    await task.delete()
    await container.delete()
    assert status.exit_code == 0
    assert sorted(words) == ["err1", "err2", "out1", "out2"], words


async def test_both_streams_are_whole_in_the_file_once_wait_returns(
    client: supervisor.Client, rootfs: str, tmp_path: Path
) -> None:
    # The shim's file:// copy lost both stderr lines in a few runs of 30.
    limiter = anyio.Semaphore(6)

    async def one(i: int) -> None:
        async with limiter:
            await _interleaved_run(client, rootfs, tmp_path / f"{i}.log", f"inter-{i}")

    with anyio.fail_after(240):
        async with anyio.create_task_group() as tg:
            for i in range(60):
                tg.start_soon(one, i)


async def test_an_exec_logs_both_streams_too(
    client: supervisor.Client, rootfs: str, tmp_path: Path
) -> None:
    spec = supervisor.default_spec(["sleep", "300"], rootfs)
    log = tmp_path / "exec.log"
    async with client.running("execlog", spec) as task:
        for _ in range(10):
            proc = await task.exec(None, ["sh", "-c", _INTERLEAVED], log_path=log)
            await proc.start()
            with anyio.fail_after(30):
                assert (await proc.wait()).exit_code == 0
            await proc.delete()
    words = log.read_text().split()
    assert sorted(words) == sorted(["out1", "out2", "err1", "err2"] * 10)


# The "first run" of an application: it starts a logged task and exits
# without deleting anything, as a crash or an upgrade would leave it.
_FIRST_RUN = textwrap.dedent(
    """
    import sys, anyio, supervisor

    async def main(address, namespace, state, rootfs, script, log):
        async with supervisor.connect(address, namespace=namespace, state_dir=state) as client:
            spec = supervisor.default_spec(["sh", "-c", script], rootfs)
            container = await client.new_container("logged", spec)
            task = await container.new_task(log_path=log)
            await task.start()

    anyio.run(main, *sys.argv[1:])
    """
)


async def test_output_written_while_the_application_was_down_reaches_the_file(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, tmp_path: Path
) -> None:
    log = tmp_path / "down.log"
    # More than a default pipe's 64 KiB on each stream, written after the
    # first run has gone: it waits in the FIFOs for the next run.
    script = (
        "sleep 0.5; head -c 300000 /dev/zero | tr '\\0' o; echo; "
        "head -c 200000 /dev/zero | tr '\\0' e >&2; echo end >&2"
    )
    args = [containerd_address, namespace, str(state_dir), rootfs, script, str(log)]
    with anyio.fail_after(60):
        await anyio.run_process([sys.executable, "-c", _FIRST_RUN, *args], check=True)
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as client:
        ((container, task),) = await client.restore()
        assert task is not None and task.log_path == log
        with pytest.raises(errors.FailedPrecondition):
            _ = task.stdout
        with anyio.fail_after(60):
            status = await task.wait()
        data = log.read_bytes()
        await task.delete()
        await container.delete()
    assert status.exit_code == 0
    assert data.count(b"o") == 300000 and data.count(b"e") == 200000 + 1
    assert data.endswith(b"end\n") or b"end\n" in data
    assert fifo_files(state_dir) == []


async def test_a_log_path_that_is_a_symlink_is_refused_and_not_followed(
    client: supervisor.Client, rootfs: str, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("keep\n")
    link = tmp_path / "link.log"
    link.symlink_to(secret)
    spec = supervisor.default_spec(["sh", "-c", "echo planted"], rootfs)
    container = await client.new_container("linked", spec)
    before = open_fds()
    with pytest.raises(errors.InvalidArgument, match="link.log"):
        await container.new_task(log_path=link)
    assert open_fds() == before
    assert secret.read_text() == "keep\n"
    assert [p.name for p in container.bundle_dir.iterdir()] == []
    await container.delete()


async def test_a_refused_task_leaves_no_log_file_fifo_or_record(
    client: supervisor.Client, rootfs: str, tmp_path: Path
) -> None:
    spec = supervisor.default_spec(["sleep", "300"], rootfs)
    container = await client.new_container("twice", spec)
    task = await container.new_task(log_path=tmp_path / "first.log")
    files = sorted(p.name for p in container.bundle_dir.iterdir())
    before = open_fds()
    second = tmp_path / "second.log"
    with pytest.raises(errors.AlreadyExists):
        await container.new_task(log_path=second)
    assert not second.exists()
    assert sorted(p.name for p in container.bundle_dir.iterdir()) == files
    assert open_fds() == before
    await task.delete(force=True)
    await container.delete()


async def test_an_existing_log_file_is_appended_to_and_kept_on_refusal(
    client: supervisor.Client, rootfs: str, tmp_path: Path
) -> None:
    log = tmp_path / "kept.log"
    log.write_text("earlier\n")
    spec = supervisor.default_spec(["sh", "-c", "echo later"], rootfs)
    container = await client.new_container("appends", spec)
    task = await container.new_task(log_path=log)
    await task.start()
    with anyio.fail_after(30):
        await task.wait()
    await task.delete()
    await container.delete()
    assert log.read_text() == "earlier\nlater\n"
    assert os.stat(log).st_nlink == 1


# -- log_writer="logger": a logger process that the shim runs ------------------------


def _loggers(state_dir: Path) -> list[int]:
    """Pids of live logger processes run from this state directory's script."""
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


async def test_a_logger_has_both_streams_whole_once_wait_returns(
    client: supervisor.Client, rootfs: str, tmp_path: Path, state_dir: Path
) -> None:
    spec = supervisor.default_spec(["sh", "-c", _INTERLEAVED], rootfs)
    for i in range(20):
        log = tmp_path / f"{i}.log"
        container = await client.new_container(f"logger-{i}", spec)
        task = await container.new_task(log_path=log, log_writer="logger")
        with pytest.raises(errors.FailedPrecondition):
            _ = task.stdout
        await task.start()
        with anyio.fail_after(30):
            assert (await task.wait()).exit_code == 0
        words = log.read_text().split()
        await task.delete()
        await container.delete()
        assert sorted(words) == ["err1", "err2", "out1", "out2"], (i, words)
    # The shim waits for its logger at delete: none is left.
    assert _loggers(state_dir) == []
    assert fifo_files(state_dir) == []


async def test_running_passes_log_writer_to_the_task(
    client: supervisor.Client, rootfs: str, tmp_path: Path, state_dir: Path
) -> None:
    spec = supervisor.default_spec(["sh", "-c", _INTERLEAVED], rootfs)
    log = tmp_path / "running.log"
    async with client.running("runlogger", spec, log_path=log, log_writer="logger") as task:
        # The logger is run by the shim before the task exists.
        assert _loggers(state_dir) != []
        with anyio.fail_after(30):
            assert (await task.wait()).exit_code == 0
    assert sorted(log.read_text().split()) == ["err1", "err2", "out1", "out2"]
    assert _loggers(state_dir) == []


_FIRST_RUN_LOGGER = _FIRST_RUN.replace("log_path=log)", 'log_path=log, log_writer="logger")')


async def test_a_logger_writes_on_while_no_application_runs(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, tmp_path: Path
) -> None:
    log = tmp_path / "alone.log"
    # Far more than the FIFOs could hold: with nobody copying, the process
    # would block; the logger takes it all while no application runs.
    script = "head -c 4000000 /dev/zero | tr '\\0' o; echo; echo done >&2"
    args = [containerd_address, namespace, str(state_dir), rootfs, script, str(log)]
    assert "log_writer" in _FIRST_RUN_LOGGER
    with anyio.fail_after(60):
        await anyio.run_process([sys.executable, "-c", _FIRST_RUN_LOGGER, *args], check=True)
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir, events=False
    ) as observer:
        # Nobody reads: the task still ends, because the logger drains it.
        ((container, task),) = await observer.restore(attach=False)
        assert task is not None and task.log_path == log
        with anyio.fail_after(60):
            status = await task.wait()
        data = log.read_bytes()
        await task.delete()
        await container.delete()
    assert status.exit_code == 0
    assert b"done\n" in data
    assert data.replace(b"done\n", b"", 1).replace(b"\n", b"") == b"o" * 4_000_000
    assert _loggers(state_dir) == []


@pytest.mark.parametrize(
    "kwargs",
    [{"log_writer": "shim"}, {"log_writer": "logger"}, {"log_writer": None}],
)
async def test_bad_log_writer_choices_are_refused_before_anything_is_made(
    client: supervisor.Client, rootfs: str, kwargs: dict[str, object]
) -> None:
    spec = supervisor.default_spec(["true"], rootfs)
    container = await client.new_container("badwriter", spec)
    before = open_fds()
    with pytest.raises(errors.InvalidArgument, match="log_writer"):
        await container.new_task(**kwargs)  # type: ignore[arg-type]
    assert open_fds() == before
    assert not container.bundle_dir.exists() or list(container.bundle_dir.iterdir()) == []
    await container.delete()


def _open_paths(before: set[str]) -> list[str]:
    found = []
    for fd in open_fds() - before:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("/"):
                found.append(target)
    return found


async def test_a_closed_client_stops_copying_and_the_next_one_goes_on(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, tmp_path: Path
) -> None:
    log = tmp_path / "handover.log"
    spec = supervisor.default_spec(["sh", "-c", "head -c 3000000 /dev/zero; echo end >&2"], rootfs)
    before = open_fds()
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as first:
        container = await first.new_container("handover", spec)
        task = await container.new_task(log_path=log)
        await task.start()
    # Nothing of the first client's copying is left open on this loop: no
    # FIFO end, no log file (no reader callback copying after its close).
    assert _open_paths(before) == []
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as second:
        ((container, task),) = await second.restore()
        assert task is not None
        with anyio.fail_after(60):
            assert (await task.wait()).exit_code == 0
        data = log.read_bytes()
        await task.delete()
        await container.delete()
    assert data.count(b"\0") == 3_000_000 and data.endswith(b"end\n") or b"end\n" in data
