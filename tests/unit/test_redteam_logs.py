"""Red-team checks of the log-file machinery without containerd: hostile
records beside the FIFOs, and the shim-run logger driven as the shim drives
it (fds 3, 4 and 5, SIGTERM after the shim let go of the pipes).

Each test guards against a defect that the pass found (all mended), or
holds what held already."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from supervisor import errors
from supervisor.fifo._log_pump import open_log_file, read_log_record
from supervisor.fifo._logger import LOGGER_SOURCE, LoggerStdio, logger_stdio_for

_NOBODY = 65534


def _write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return path


# -- hostile records ----------------------------------------------------------------


def test_a_record_naming_an_absolute_path_of_ours_is_read(tmp_path: Path) -> None:
    record = _write(tmp_path / "init.0123abcd-log", b"/var/log/job.log")
    assert read_log_record(record) == Path("/var/log/job.log")


@pytest.mark.parametrize(
    "data",
    [
        b"relative/job.log",
        b"",
        b"/tmp/a\0/etc/shadow",
        b"/" + b"x" * 5000,
    ],
    ids=["relative", "empty", "nul", "huge"],
)
def test_a_malformed_record_is_not_believed(tmp_path: Path, data: bytes) -> None:
    record = _write(tmp_path / "init.0123abcd-log", data)
    assert read_log_record(record) is None


def test_a_record_that_is_a_symlink_is_not_followed(tmp_path: Path) -> None:
    target = _write(tmp_path / "elsewhere", b"/etc/shadow")
    record = tmp_path / "init.0123abcd-log"
    record.symlink_to(target)
    assert read_log_record(record) is None


def test_a_record_of_another_owner_is_not_believed(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the record away")
    record = _write(tmp_path / "init.0123abcd-log", b"/etc/shadow")
    os.chown(record, _NOBODY, _NOBODY)
    assert read_log_record(record) is None


def test_a_record_that_is_a_directory_is_not_believed(tmp_path: Path) -> None:
    record = tmp_path / "init.0123abcd-log"
    record.mkdir()
    assert read_log_record(record) is None


def test_a_record_that_is_a_fifo_does_not_block(tmp_path: Path) -> None:
    record = tmp_path / "init.0123abcd-log"
    os.mkfifo(record, 0o600)
    done = threading.Event()

    def read() -> Path | None:
        try:
            return read_log_record(record)
        finally:
            done.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    # A correct read returns at once (the open does not wait for a writer);
    # the defect blocks in open() until someone opens the FIFO for writing.
    finished = done.wait(5)
    if not finished:
        # Unblock the reader: a writer that opens and closes at once.
        fd = os.open(record, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(10)
    assert finished, "read_log_record blocked on a FIFO record"


def test_a_logger_record_that_is_a_fifo_does_not_block(tmp_path: Path) -> None:
    prefix = tmp_path / "init.0123abcd"
    os.mkfifo(f"{prefix}-log", 0o600)
    uri = f"binary:///s/logger.py?/var/log/x.log={prefix}"
    done = threading.Event()

    def look() -> None:
        try:
            logger_stdio_for(tmp_path, "c", init=True, uri=uri, terminal=False)
        finally:
            done.set()

    thread = threading.Thread(target=look, daemon=True)
    thread.start()
    finished = done.wait(5)
    if not finished:
        os.close(os.open(f"{prefix}-log", os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10)
    assert finished, "logger_stdio_for blocked on a FIFO record"


def test_a_log_path_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    os.mkfifo(log, 0o600)
    done = threading.Event()
    outcome: list[BaseException | int] = []

    def open_it() -> None:
        try:
            outcome.append(open_log_file(log))
        except BaseException as exc:
            outcome.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=open_it, daemon=True)
    thread.start()
    finished = done.wait(5)
    if not finished:
        # Free the blocked open: a reader that comes and goes.
        os.close(os.open(log, os.O_RDONLY | os.O_NONBLOCK))
        thread.join(10)
    for result in outcome:
        if isinstance(result, int):
            os.close(result)
    assert finished, "open_log_file blocked on a FIFO"
    assert len(outcome) == 1 and isinstance(outcome[0], errors.InvalidArgument)


def test_a_log_path_that_is_a_device_is_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgument):
        open_log_file(Path(os.devnull))


def test_the_logger_file_comes_from_our_record_never_from_the_uri(tmp_path: Path) -> None:
    prefix = tmp_path / "init.0123abcd"
    _write(Path(f"{prefix}-log"), b"/var/log/recorded.log")
    uri = f"binary:///s/logger.py?/etc/shadow={prefix}"
    found = logger_stdio_for(tmp_path, "c", init=True, uri=uri, terminal=False)
    assert found is not None and found.log_path == Path("/var/log/recorded.log")
    # A prefix outside the bundle directory, or of another process, is not ours.
    for other in ("/tmp/init.0123abcd", f"{tmp_path}/exec.e.0123abcd"):
        uri = f"binary:///s/logger.py?/var/log/x.log={other}"
        assert logger_stdio_for(tmp_path, "c", init=True, uri=uri, terminal=False) is None


# -- the logger's control FIFO ------------------------------------------------------


@pytest.mark.asyncio
async def test_a_removed_control_fifo_is_not_taken_for_a_finished_logger(
    tmp_path: Path,
) -> None:
    prefix = tmp_path / "init.0123abcd"
    stdio = LoggerStdio("binary:///x", tmp_path / "x.log", prefix, terminal=False)
    # No <prefix>-ctl: someone removed it while the logger runs.
    with anyio.fail_after(10):
        drained = await stdio.wait_drained(0.2)
    assert drained is False
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no ack FIFO left


@pytest.mark.asyncio
async def test_a_drain_nobody_answers_ends_at_its_bound_and_leaves_no_ack_fifo(
    tmp_path: Path,
) -> None:
    prefix = tmp_path / "init.0123abcd"
    stdio = LoggerStdio("binary:///x", tmp_path / "x.log", prefix, terminal=False)
    os.mkfifo(f"{prefix}-ctl", 0o600)
    # A reader that never answers (a stopped logger).
    silent = os.open(f"{prefix}-ctl", os.O_RDONLY | os.O_NONBLOCK)
    try:
        with anyio.fail_after(10):
            assert await stdio.wait_drained(0.2) is False
        assert os.read(silent, 100).endswith(b"\n")  # it was asked
    finally:
        os.close(silent)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["init.0123abcd-ctl"]


@pytest.mark.asyncio
async def test_a_cancelled_drain_leaves_no_ack_fifo(tmp_path: Path) -> None:
    prefix = tmp_path / "init.0123abcd"
    stdio = LoggerStdio("binary:///x", tmp_path / "x.log", prefix, terminal=False)
    os.mkfifo(f"{prefix}-ctl", 0o600)
    fds = set(os.listdir("/proc/self/fd"))
    silent = os.open(f"{prefix}-ctl", os.O_RDONLY | os.O_NONBLOCK)
    try:
        with anyio.move_on_after(0.1):
            await stdio.wait_drained(30)
    finally:
        os.close(silent)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["init.0123abcd-ctl"]
    assert set(os.listdir("/proc/self/fd")) == fds


# -- the logger as the shim runs it -------------------------------------------------


class _Shim:
    """The runc shim's side of a ``binary://`` logger: two pipes given as fds 3
    and 4, a ready pipe as fd 5, the process's write ends kept by us."""

    def __init__(self, tmp_path: Path) -> None:
        self.script = tmp_path / "logger.py"
        self.script.write_text(LOGGER_SOURCE)
        self.log = tmp_path / "out.log"
        self.prefix = tmp_path / "init.0123abcd"
        os.mkfifo(f"{self.prefix}-ctl", 0o600)
        self.out_r, self.out_w = os.pipe()
        self.err_r, self.err_w = os.pipe()
        ready_r, ready_w = os.pipe()

        def fds() -> None:
            for want, fd in ((3, self.out_r), (4, self.err_r), (5, ready_w)):
                os.dup2(fd, want)

        self.proc = subprocess.Popen(
            [sys.executable, "-IS", str(self.script), str(self.log), str(self.prefix)],
            preexec_fn=fds,
            pass_fds=(3, 4, 5),
            close_fds=True,
        )
        os.close(ready_w)
        os.read(ready_r, 1)  # the logger is ready once it closed fd 5
        os.close(ready_r)
        os.close(self.out_r)
        os.close(self.err_r)

    def close(self) -> None:
        for fd in (self.out_w, self.err_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


@pytest.fixture
def shim(tmp_path: Path) -> Iterator[_Shim]:
    fake = _Shim(tmp_path)
    try:
        yield fake
    finally:
        fake.close()


@pytest.mark.asyncio
async def test_the_logger_copies_binary_output_without_newlines_and_answers(
    shim: _Shim, tmp_path: Path
) -> None:
    blob = bytes(range(256)) * 4096  # 1 MiB, no line structure, every byte value
    # Written from a thread: the logger must read while we write.
    writer = threading.Thread(target=lambda: _write_all(shim.out_w, blob))
    writer.start()
    _write_all(shim.err_w, b"\0\xff no newline")
    writer.join(60)
    stdio = LoggerStdio("binary:///x", shim.log, shim.prefix, terminal=False)
    with anyio.fail_after(30):
        assert await stdio.wait_drained(20) is True
    data = shim.log.read_bytes()
    assert len(data) == len(blob) + len(b"\0\xff no newline")
    assert data.replace(b"\0\xff no newline", b"", 1) == blob
    assert [p.name for p in tmp_path.iterdir() if "-ack-" in p.name] == []


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def test_the_logger_drains_to_the_end_when_the_shim_closes_the_pipes(shim: _Shim) -> None:
    _write_all(shim.out_w, b"last words")
    os.close(shim.out_w)
    os.close(shim.err_w)
    shim.proc.send_signal(signal.SIGTERM)  # what the shim does next
    assert shim.proc.wait(30) == 0
    assert shim.log.read_bytes() == b"last words"


def test_the_logger_ends_on_sigterm_when_a_leftover_child_holds_the_pipe(
    shim: _Shim,
) -> None:
    _write_all(shim.out_w, b"before the exit")
    leftover = os.dup(shim.out_w)  # a child of the process still holds stdout
    try:
        os.close(shim.out_w)
        os.close(shim.err_w)
        shim.proc.send_signal(signal.SIGTERM)
        try:
            code = shim.proc.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        assert code is not None, "the logger did not end on SIGTERM"
        # Whatever the process wrote before is in the file all the same.
        assert shim.log.read_bytes() == b"before the exit"
    finally:
        os.close(leftover)
