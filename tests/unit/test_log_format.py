"""The CRI log format as both writers write it, its rotation, and reading it
back (``supervisor.read_logs``): pure file logic, no containerd."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import errors
from supervisor.cli._log_args import parse_log_time
from supervisor.fifo._log_options import LogOptions, checked_log_options
from supervisor.fifo._log_writer import FormattedLog, cri_time


def _writer(path: Path, **kw: object) -> tuple[FormattedLog, int]:
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    return FormattedLog(fd, dir_fd=dir_fd, name=path.name, **kw), dir_fd  # type: ignore[arg-type]


async def _read(path: Path, **kw: object) -> list[supervisor.LogLine]:
    with anyio.fail_after(10):
        return [line async for line in supervisor.read_logs(path, **kw)]  # type: ignore[arg-type]


def _records(path: Path) -> list[list[str]]:
    return [line.split(" ", 3) for line in path.read_text().splitlines()]


def test_cri_records_say_stream_and_whole_or_partial_line(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    out, dir_fd = _writer(log, fmt="cri")
    out.write("stdout", b"one\ntw")
    out.write("stderr", b"oops\n")
    out.write("stdout", b"o\n\n")
    out.close()
    os.close(dir_fd)
    records = _records(log)
    assert [r[1:] for r in records] == [
        ["stdout", "F", "one"],
        ["stdout", "P", "tw"],
        ["stderr", "F", "oops"],
        ["stdout", "F", "o"],
        ["stdout", "F", ""],
    ]
    times = [r[0] for r in records]
    assert times == sorted(times)
    assert all(len(t) == len("2026-12-07T04:09:40.123456789Z") and t.endswith("Z") for t in times)


def test_raw_stays_the_bytes_as_written(tmp_path: Path) -> None:
    log = tmp_path / "r.log"
    out, dir_fd = _writer(log)
    out.write("stdout", b"a\nb")
    out.write("stderr", b"\0\xff")
    out.close()
    os.close(dir_fd)
    assert log.read_bytes() == b"a\nb\0\xff"


def test_rotation_keeps_max_files_each_under_max_size(tmp_path: Path) -> None:
    log = tmp_path / "rot.log"
    out, dir_fd = _writer(log, fmt="cri", max_size=4096, max_files=3)
    for i in range(1000):
        out.write("stdout" if i % 2 else "stderr", f"line {i:04d}\n".encode())
    out.close()
    os.close(dir_fd)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["rot.log", "rot.log.1", "rot.log.2"]
    assert all(p.stat().st_size <= 4096 for p in tmp_path.iterdir())


@pytest.mark.asyncio
async def test_reading_follows_across_rotated_files_oldest_first(tmp_path: Path) -> None:
    log = tmp_path / "rot.log"
    out, dir_fd = _writer(log, fmt="cri", max_size=4096, max_files=3)
    for i in range(1000):
        out.write("stdout", f"line {i:04d}\n".encode())
    out.close()
    os.close(dir_fd)
    numbers = [int(line.text.split()[1]) for line in await _read(log)]
    # The oldest files are gone; what is kept is the newest run, in order.
    assert numbers == list(range(numbers[0], 1000))
    kept = sum(len(p.read_bytes().splitlines()) for p in tmp_path.iterdir())
    assert len(numbers) == kept


@pytest.mark.asyncio
async def test_partial_records_are_joined_per_stream(tmp_path: Path) -> None:
    log = tmp_path / "p.log"
    out, dir_fd = _writer(log, fmt="cri")
    out.write("stdout", b"hel")
    out.write("stderr", b"err\n")
    out.write("stdout", b"lo\nunfinished")
    out.close()
    os.close(dir_fd)
    lines = await _read(log)
    assert [(line.stream, line.text, line.partial) for line in lines] == [
        ("stderr", "err", False),
        ("stdout", "hello", False),
        ("stdout", "unfinished", True),
    ]


@pytest.mark.asyncio
async def test_since_until_tail_streams_and_timestamps(tmp_path: Path) -> None:
    log = tmp_path / "q.log"
    base = 1_800_000_000 * 10**9
    with log.open("wb") as f:
        for i in range(10):
            stream = "stderr" if i % 3 == 0 else "stdout"
            f.write(cri_time(base + i * 10**9) + f" {stream} F l{i}\n".encode())
    since = dt.datetime.fromtimestamp(1_800_000_003, dt.UTC)
    until = base + 7 * 10**9
    assert [x.text for x in await _read(log, since=since, until=until)] == [
        "l3",
        "l4",
        "l5",
        "l6",
    ]
    assert [x.text for x in await _read(log, tail=2)] == ["l8", "l9"]
    assert [x.text for x in await _read(log, tail=0)] == []
    assert [x.text for x in await _read(log, stdout=False)] == ["l0", "l3", "l6", "l9"]
    first = (await _read(log, timestamps=True, tail=1))[0]
    assert str(first) == "2027-01-15T08:00:09.000000000Z l9"
    assert first.time == dt.datetime(2027, 1, 15, 8, 0, 9, tzinfo=dt.UTC)


@pytest.mark.asyncio
async def test_lines_not_in_the_format_are_skipped(tmp_path: Path) -> None:
    log = tmp_path / "junk.log"
    log.write_bytes(
        b"garbage\n"
        b"2026-12-07T04:09:40.1Z stdout F ok\n"
        b"2026-12-07T04:09:40.1Z stdpit F bad stream\n"
        b"2026-12-07T04:09:40.1Z stdout X bad tag\n"
        b"2026-13-99T04:09:40.1Z stdout F bad date\n"
        b"2026-12-07T05:09:40.5+01:00 stderr F offset\n"
    )
    lines = await _read(log)
    assert [(x.text, x.time_ns) for x in lines] == [
        ("ok", 1796616580_100000000),
        ("offset", 1796616580_500000000),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "kwargs",
    [
        {"tail": -1},
        {"tail": "x"},
        {"tail": True},
        {"stdout": False, "stderr": False},
        {"stdout": "yes"},
        {"since": 10, "until": 5},
        {"since": "yesterday"},
        {"follow": 1},
    ],
)
async def test_bad_arguments_are_refused_before_anything_is_opened(
    tmp_path: Path, kwargs: dict[str, object]
) -> None:
    fds = set(os.listdir("/proc/self/fd"))
    with pytest.raises(errors.InvalidArgument):
        supervisor.read_logs(tmp_path / "none.log", **kwargs)  # type: ignore[arg-type]
    assert set(os.listdir("/proc/self/fd")) == fds


@pytest.mark.asyncio
async def test_a_relative_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgument):
        supervisor.read_logs("relative.log")


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
async def test_hostile_log_files_are_typed_errors(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "secret"
    target.write_text("2026-12-07T04:09:40.1Z stdout F secret\n")
    log = tmp_path / "app.log"
    if kind == "symlink":
        log.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(log)
    else:
        log.mkdir()
    fds = set(os.listdir("/proc/self/fd"))
    with pytest.raises(errors.InvalidArgument):
        await _read(log)
    assert set(os.listdir("/proc/self/fd")) == fds


@pytest.mark.asyncio
async def test_a_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound):
        await _read(tmp_path / "missing.log")


@pytest.mark.asyncio
async def test_a_rotated_file_planted_as_a_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("2026-12-07T04:09:40.1Z stdout F secret\n")
    (tmp_path / "app.log").write_text("2026-12-07T04:09:41.1Z stdout F mine\n")
    (tmp_path / "app.log.1").symlink_to(tmp_path / "secret")
    with pytest.raises(errors.InvalidArgument):
        await _read(tmp_path / "app.log")


@pytest.mark.asyncio
async def test_following_a_file_picks_up_rotations(tmp_path: Path) -> None:
    log = tmp_path / "f.log"
    out, dir_fd = _writer(log, fmt="cri", max_size=4096, max_files=5)
    seen: list[int] = []
    try:
        out.write("stdout", b"line 0000\n")
        with anyio.fail_after(30):
            async for line in supervisor.read_logs(log, follow=True):
                number = int(line.text.split()[1])
                seen.append(number)
                if number == 299:
                    break
                if number % 50 == 0:
                    # Written while the reader follows: several rotations
                    # between two of its looks.
                    for i in range(number + 1, number + 51):
                        out.write("stdout", f"line {i:04d}\n".encode())
    finally:
        out.close()
        os.close(dir_fd)
    assert seen == list(range(300))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("json", None, None), "log_format"),
        (("cri", 100, None), "4096"),
        (("cri", -5, None), "log_max_size"),
        (("cri", None, 3), "needs log_max_size"),
        (("cri", 4096, 0), "log_max_files"),
        (("cri", 4096.0, None), "log_max_size"),
    ],
)
def test_bad_log_options_are_refused(args: tuple[object, object, object], message: str) -> None:
    with pytest.raises(errors.InvalidArgument, match=message):
        checked_log_options(*args, has_path=True, container_id="c", process_id="c")


def test_log_options_need_a_path() -> None:
    with pytest.raises(errors.InvalidArgument, match="need a log_path"):
        checked_log_options("cri", None, None, has_path=False, container_id="c", process_id="c")
    assert (
        checked_log_options("raw", None, None, has_path=False, container_id="c", process_id="c")
        == LogOptions()
    )


def test_log_options_survive_their_record() -> None:
    options = LogOptions("cri", 8192, 4)
    assert LogOptions.decode(options.encode()) == options
    assert LogOptions.decode(b"") == LogOptions()
    assert LogOptions.decode(b"json 1 2") == LogOptions()


def test_log_times() -> None:
    assert parse_log_time("10m") == dt.timedelta(minutes=10)
    assert parse_log_time("1h30m") == dt.timedelta(hours=1, minutes=30)
    assert parse_log_time("2026-12-07T04:09:40Z") == dt.datetime(
        2026, 12, 7, 4, 9, 40, tzinfo=dt.UTC
    )
    assert parse_log_time("2026-12-07T04:09:40.123456789Z") == 1796616580_123456789
    assert parse_log_time("2026-12-07T05:09:40.5+01:00") == 1796616580_500000000
    assert parse_log_time("1800000000") == dt.datetime.fromtimestamp(1_800_000_000, dt.UTC)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_log_time("")


def test_times_never_go_back_when_the_clock_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import supervisor.fifo._log_writer as writer_module

    log = tmp_path / "clock.log"
    out, dir_fd = _writer(log, fmt="cri")
    clock = iter([5_000_000_000, 3_000_000_000, 6_000_000_000])
    monkeypatch.setattr(writer_module.time, "time_ns", lambda: next(clock))
    for word in (b"a\n", b"b\n", b"c\n"):
        out.write("stdout", word)
    out.close()
    os.close(dir_fd)
    assert [r[0] for r in _records(log)] == [
        "1970-01-01T00:00:05.000000000Z",
        "1970-01-01T00:00:05.000000000Z",
        "1970-01-01T00:00:06.000000000Z",
    ]


def _run_logger(tmp_path: Path, record: bytes | None, out: bytes, err: bytes) -> Path:
    """The logger script as the shim runs it (pipes as fds 3 and 4, ready
    on fd 5), fed ``out`` and ``err``, to its end; its log file."""
    import subprocess
    import sys

    from supervisor.fifo._logger import LOGGER_SOURCE

    script = tmp_path / "logger.py"
    script.write_text(LOGGER_SOURCE)
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "out.log"
    prefix = tmp_path / "init.0123abcd"
    if record is not None:
        (tmp_path / "init.0123abcd-log").write_bytes(record)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    ready_r, ready_w = os.pipe()

    def fds() -> None:
        for want, fd in ((3, out_r), (4, err_r), (5, ready_w)):
            os.dup2(fd, want)

    proc = subprocess.Popen(
        [sys.executable, "-IS", str(script), str(log), str(prefix)],
        preexec_fn=fds,
        pass_fds=(3, 4, 5),
        close_fds=True,
    )
    os.close(ready_w)
    os.read(ready_r, 1)
    for fd in (ready_r, out_r, err_r):
        os.close(fd)
    for fd, data in ((out_w, out), (err_w, err)):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.close(fd)
    assert proc.wait(30) == 0
    return log


def test_the_logger_writes_the_format_and_rotation_its_record_names(tmp_path: Path) -> None:
    options = LogOptions("cri", 4096, 2).encode()
    out = b"".join(b"line %04d\n" % i for i in range(500))
    log = _run_logger(tmp_path, b"/x\n1:2\n" + options, out, b"oops\n")
    assert sorted(p.name for p in log.parent.iterdir()) == ["out.log", "out.log.1"]
    assert all(p.stat().st_size <= 4096 for p in log.parent.iterdir())
    records = [
        line.split(" ", 3)
        for p in (log.with_name("out.log.1"), log)
        for line in p.read_text().splitlines()
    ]
    numbers = [int(r[3].split()[1]) for r in records if r[1] == "stdout"]
    assert numbers == list(range(numbers[0], 500))
    assert all(r[2] == "F" for r in records)


def test_the_logger_without_options_writes_raw(tmp_path: Path) -> None:
    log = _run_logger(tmp_path, None, b"a\nb", b"c\n")
    # The bytes alone, as read: either stream first.
    assert log.read_bytes() in (b"a\nbc\n", b"c\na\nb", b"a\nc\nb")


@pytest.mark.asyncio
async def test_an_endless_line_comes_in_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import supervisor.fifo._log_read as read_module

    monkeypatch.setattr(read_module, "MAX_LINE", 1000)
    log = tmp_path / "long.log"
    out, dir_fd = _writer(log, fmt="cri")
    for _ in range(25):
        out.write("stdout", b"x" * 100)  # 2500 bytes, no newline: P records
    out.write("stdout", b"end\n")
    out.close()
    os.close(dir_fd)
    lines = await _read(log)
    assert [(len(x.data), x.partial) for x in lines] == [(1000, True), (1000, True), (503, False)]
    assert b"".join(x.data for x in lines) == b"x" * 2500 + b"end"


@pytest.mark.asyncio
async def test_a_record_too_long_for_any_writer_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import supervisor.fifo._log_read as read_module

    monkeypatch.setattr(read_module, "MAX_LINE", 1000)
    monkeypatch.setattr(read_module, "_CHUNK", 512)
    log = tmp_path / "hostile.log"
    good = b"2026-12-07T04:09:40.1Z stdout F ok\n"
    log.write_bytes(good + b"2026-12-07T04:09:40.1Z stdout F " + b"y" * 100_000 + b"\n" + good)
    assert [x.text for x in await _read(log)] == ["ok", "ok"]
