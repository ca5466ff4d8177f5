"""The on-disk record of exits the backend has handled."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from supervisor.events._ledger import ExitLedger
from tests._logs import capture_logs

AT = datetime(2026, 11, 25, 19, 0, 0, 123456, tzinfo=UTC)


def test_an_exit_is_handled_only_with_the_same_pid_and_time(tmp_path: Path) -> None:
    ledger = ExitLedger(tmp_path / "ns")
    assert not ledger.handled("c", "c", 10, AT)
    assert not ledger.has_records()  # no directory yet
    ledger.record("c", "c", 10, AT)
    assert ledger.has_records()
    assert ledger.handled("c", "c", 10, AT)
    assert not ledger.handled("c", "c", 11, AT)  # a later instance, same ids
    assert not ledger.handled("c", "c", 10, AT.replace(second=1))
    assert not ledger.handled("c", "exec-1", 10, AT)
    assert (tmp_path / "ns").stat().st_mode & 0o777 == 0o700
    ledger.forget("c", "c")
    assert not ledger.handled("c", "c", 10, AT)
    ledger.forget("c", "c")  # idempotent


def test_ids_with_dots_cannot_collide(tmp_path: Path) -> None:
    ledger = ExitLedger(tmp_path)
    ledger.record("a.b", "c", 1, None)
    assert not ledger.handled("a", "b.c", 1, None)
    assert ledger.handled("a.b", "c", 1, None)


def test_prune_keeps_only_live_containers(tmp_path: Path) -> None:
    ledger = ExitLedger(tmp_path)
    for cid, pid in (("live", "live"), ("live", "e1"), ("gone", "gone"), ("gone-2", "x")):
        ledger.record(cid, pid, 1, AT)
    assert ledger.prune({"live"}) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live@e1", "live@live"]
    ledger.prune_container("live")
    assert list(tmp_path.iterdir()) == []
    assert ExitLedger(tmp_path / "missing").prune(set()) == 0


def test_a_failed_write_is_logged_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    ledger = ExitLedger(blocker / "ns")
    with capture_logs() as logs:
        ledger.record("c", "c", 1, AT)
    assert [e["event"] for e in logs] == ["events.ledger_write_failed"]
    assert not ledger.handled("c", "c", 1, AT)
