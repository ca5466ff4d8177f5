"""containerd's logfmt lines, parsed and forwarded with their level."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor._log import get_logger
from supervisor.daemon._log_follower import LogFollower, forward_line, parse_logfmt, unquote
from tests._logs import capture_logs


def test_parse_quoted_bare_and_escaped_values() -> None:
    line = (
        'time="2026-11-25T19:10:53.394Z" level=warning msg="cleanup warnings time=\\"x\\" a b" '
        "id=demo empty= path=/run/x"
    )
    assert parse_logfmt(line) == {
        "time": "2026-11-25T19:10:53.394Z",
        "level": "warning",
        "msg": 'cleanup warnings time="x" a b',
        "id": "demo",
        "empty": "",
        "path": "/run/x",
    }


def test_forward_keeps_level_and_renames_reserved_keys() -> None:
    log = get_logger("containerd")
    with capture_logs() as logs:
        forward_line(log, 'time="t" level=error msg="boom" event=x error="bad thing"\n')
        forward_line(log, 'time="t" level=debug msg=quiet\n')
        forward_line(log, 'time="t" level=fatal msg=dead\n')
        forward_line(log, "panic: runtime error: index out of range\n")
        forward_line(log, "   \n")
    assert [(e["log_level"], e.get("msg")) for e in logs] == [
        ("error", "boom"),
        ("debug", "quiet"),
        ("critical", "dead"),
        ("warning", None),
    ]
    assert logs[0]["containerd_event"] == "x" and logs[0]["error"] == "bad thing"
    assert logs[0]["containerd_time"] == "t" and logs[0]["event"] == "containerd.log"
    assert logs[3]["line"] == "panic: runtime error: index out of range"


def test_follower_forwards_complete_lines_from_where_the_file_ended(tmp_path: Path) -> None:
    log = tmp_path / "containerd.log"
    log.write_text('time="t" level=info msg=before-us\n')  # an earlier run's lines
    follower = LogFollower(log, poll=0.1)
    with capture_logs() as logs:
        follower.drain()  # opens at the end: nothing of the earlier run
        with log.open("a") as f:
            f.write('time="t" level=warning msg=one\ntime="t" level=error msg=tw')
        follower.drain()
        with log.open("a") as f:
            f.write("o\n")  # the rest of the half-written line
        follower.drain()
        log.write_text('time="t" level=info msg=after-truncation\n')  # emptied under us
        follower.drain()
    follower.close()
    assert [(e["log_level"], e["msg"]) for e in logs] == [
        ("warning", "one"),
        ("error", "two"),
        ("info", "after-truncation"),
    ]
    assert list(follower.tail)[-1] == 'time="t" level=info msg=after-truncation'


@pytest.mark.parametrize(
    ("quoted", "text"),
    [
        (r"line one\nline two", "line one\nline two"),
        (r"a\tb\rc", "a\tb\rc"),
        (r"say \"hi\"", 'say "hi"'),
        (r"C:\\path\\n", "C:\\path\\n"),  # an escaped backslash, then a plain n
        (r"\x1b[31m", "\x1b[31m"),
        (r"bad byte \xff", "bad byte \ufffd"),
        (r"\xc3\xa9", "\u00e9"),  # bytes of UTF-8, as Go writes them
        (r"\u00e9\U0001f600", "\u00e9\U0001f600"),
        (r"bell\a", "bell\a"),
        (r"\q stays", r"\q stays"),  # no such escape in Go: kept
        ("plain", "plain"),
    ],
)
def test_unquote_decodes_go_escapes(quoted: str, text: str) -> None:
    assert unquote(quoted) == text


def test_a_quoted_multi_line_error_keeps_its_lines() -> None:
    # logrus quotes an error that spans lines with \n inside the value.
    line = r'time="t" level=error msg="shim failed" error="exit status 1:\n\tunknown flag\n"'
    fields = parse_logfmt(line)
    assert fields["error"] == "exit status 1:\n\tunknown flag\n"
    assert fields["msg"] == "shim failed"


def test_follower_never_follows_a_symlink_and_says_so_once(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text('time="t" level=error msg=not-ours\n')
    log = tmp_path / "containerd.log"
    log.symlink_to(victim)
    follower = LogFollower(log, poll=0.1)
    with capture_logs() as logs:
        follower.drain()
        with victim.open("a") as f:
            f.write('time="t" level=error msg=still-not-ours\n')
        follower.drain()
        follower.drain()
    follower.close()
    assert [e.get("msg") for e in logs if e["event"] == "containerd.log"] == []
    unreadable = [e for e in logs if e["event"] == "daemon.log_unreadable"]
    assert len(unreadable) == 1 and "symlink" in unreadable[0]["error"]


def test_follower_survives_a_log_it_cannot_open_and_resumes(tmp_path: Path) -> None:
    log = tmp_path / "containerd.log"
    log.mkdir()  # not a file: open fails at every poll until it is one
    follower = LogFollower(log, poll=0.1)
    with capture_logs() as logs:
        follower.drain()
        follower.drain()
        log.rmdir()
        log.write_text('time="t" level=info msg=back\n')
        follower.drain()
    follower.close()
    assert [e.get("msg") for e in logs if e["event"] == "containerd.log"] == ["back"]
    assert [e["event"] for e in logs].count("daemon.log_unreadable") == 1


def test_follower_moves_to_a_log_file_made_anew(tmp_path: Path) -> None:
    log = tmp_path / "containerd.log"
    log.write_text("")
    follower = LogFollower(log, poll=0.1)
    with capture_logs() as logs:
        follower.drain()
        with log.open("a") as f:
            f.write('time="t" level=info msg=old-file\n')
        os.unlink(log)  # removed and made again (logrotate's "create")
        log.write_text('time="t" level=info msg=new-file\n')
        follower.drain()
        with log.open("a") as f:
            f.write('time="t" level=info msg=new-file-2\n')
        follower.drain()
    follower.close()
    msgs = [e.get("msg") for e in logs if e["event"] == "containerd.log"]
    assert msgs == ["old-file", "new-file", "new-file-2"]


def test_follower_reads_a_log_made_after_its_first_look_from_its_start(tmp_path: Path) -> None:
    # The daemon looks before containerd starts: a containerd that writes
    # and dies at once before the next poll must still have its lines shown.
    log = tmp_path / "containerd.log"
    follower = LogFollower(log, poll=0.1)
    with capture_logs() as logs:
        follower.drain()  # no file yet
        log.write_text('time="t" level=fatal msg="cannot start"\n')
        follower.drain()
    follower.close()
    assert [e.get("msg") for e in logs if e["event"] == "containerd.log"] == ["cannot start"]
    assert list(follower.tail) == ['time="t" level=fatal msg="cannot start"']
