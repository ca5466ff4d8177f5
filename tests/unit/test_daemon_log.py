"""containerd's logfmt lines, parsed and forwarded with their level."""

from __future__ import annotations

from pathlib import Path

from supervisor._log import get_logger
from supervisor.daemon._log_follower import LogFollower, forward_line, parse_logfmt
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
    follower = LogFollower(log)
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
