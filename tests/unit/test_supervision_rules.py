"""Restart policies and health checks as values: docker's spellings, the
refusals of bad input, the restart rules and the back-off."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from supervisor import HealthCheck, RestartPolicy, errors
from supervisor.domain._supervised import LastExit, ProbeResult, checked_healthcheck, checked_policy
from supervisor.domain._supervised_state import Record
from supervisor.supervision._health import HealthState
from supervisor.supervision._rules import next_delay, should_restart


@pytest.mark.parametrize(
    "text,name,retries",
    [
        ("no", "no", 0),
        ("always", "always", 0),
        ("unless-stopped", "unless-stopped", 0),
        ("on-failure", "on-failure", 0),
        ("on-failure:5", "on-failure", 5),
        (None, "no", 0),
    ],
)
def test_docker_spellings(text: str | None, name: str, retries: int) -> None:
    policy = checked_policy(text, "c")
    assert (policy.name, policy.max_retries) == (name, retries)
    if text:
        assert str(policy) == text


@pytest.mark.parametrize(
    "bad",
    [
        "sometimes",
        "on-failure:-1",
        "on-failure:x",
        "on-failure:",
        "always:3",
        "",
        3,
        RestartPolicy("on-failure", -2),
        RestartPolicy("always", 2),
        RestartPolicy("always", initial_delay=0),
        RestartPolicy("always", initial_delay=1, max_delay=0.5),
        RestartPolicy("always", reset_after=float("nan")),
    ],
)
def test_malformed_policies_are_refused(bad: object) -> None:
    with pytest.raises(errors.InvalidArgument):
        checked_policy(bad, "c")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        {"test": []},
        {"test": "curl localhost"},
        {"test": ["CMD"]},
        {"test": ["CMD-SHELL"]},
        {"test": ["CMD-SHELL", "a", "b"]},
        {"test": ["WHAT", "x"]},
        {"test": ["CMD", "true"], "interval": 0},
        {"test": ["CMD", "true"], "timeout": -1},
        {"test": ["CMD", "true"], "start_period": -1},
        {"test": ["CMD", "true"], "retries": -1},
        {"test": ["CMD", "true"], "retries": 0},
        {"test": ["CMD", "true"], "retries": True},
        {"test": ["CMD", "true"], "bogus": 1},
        {"interval": 1},
        "CMD true",
    ],
)
def test_malformed_health_checks_are_refused(bad: object) -> None:
    with pytest.raises(errors.InvalidArgument):
        checked_healthcheck(bad, "c")  # type: ignore[arg-type]


def test_health_check_forms() -> None:
    assert checked_healthcheck({"test": ["NONE"]}, "c") is None
    shell = checked_healthcheck({"test": ["CMD-SHELL", "test -e /x"], "interval": 2}, "c")
    assert shell is not None and shell.argv == ["/bin/sh", "-c", "test -e /x"]
    assert shell.interval == 2.0 and shell.retries == 3
    cmd = checked_healthcheck(HealthCheck(("CMD", "true", "x")), "c")
    assert cmd is not None and cmd.argv == ["true", "x"]


@pytest.mark.parametrize(
    "policy,code,by_caller,count,expected",
    [
        ("no", 1, False, 0, False),
        ("always", 0, False, 99, True),
        ("always", 1, True, 0, False),
        ("unless-stopped", 0, False, 0, True),
        ("unless-stopped", 137, True, 0, False),
        ("on-failure", 0, False, 0, False),
        ("on-failure", 1, False, 1000, True),
        ("on-failure:2", 1, False, 1, True),
        ("on-failure:2", 1, False, 2, False),
        ("on-failure:2", 1, True, 0, False),
    ],
)
def test_what_is_restarted(
    policy: str, code: int, by_caller: bool, count: int, expected: bool
) -> None:
    rule = checked_policy(policy, "c")
    assert should_restart(rule, code, by_caller=by_caller, restart_count=count) is expected


def test_back_off_doubles_to_its_cap_and_starts_over_after_an_uptime() -> None:
    policy = RestartPolicy("always")
    delays = []
    delay = 0.0
    for _ in range(12):
        delay = next_delay(policy, delay, uptime=0.5)
        delays.append(delay)
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == 60.0 and max(delays) == 60.0
    assert next_delay(policy, 60.0, uptime=10.0) == 0.1


def test_a_record_round_trips() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    record = Record(
        policy=RestartPolicy("on-failure", 3, max_delay=5.0),
        healthcheck=HealthCheck(("CMD", "true"), interval=1.0, restart_unhealthy=True),
        settings={"output": "null", "log_path": None},
        restart_count=2,
        last_exit=LastExit(137, True, at, by_caller=True),
        caller_stopped=True,
        delay=0.4,
        started_at=at,
        pending={"attempt": 3, "delay": 0.4, "pid": 12},
        handled=[12, at.isoformat()],
    )
    again = Record.from_json(record.to_json(), "c")
    assert again == record


def _result(code: int) -> ProbeResult:
    now = datetime.now(UTC)
    return ProbeResult(code, "", now, now)


def test_health_verdicts_follow_docker() -> None:
    state = HealthState(HealthCheck(("CMD", "x"), retries=2, start_period=3600))
    # Failures in the start period do not count...
    assert not state.add(_result(1)) and not state.add(_result(1))
    assert state.status == "starting"
    # ...until a first success ends it.
    assert state.add(_result(0)) and state.status == "healthy"
    assert not state.add(_result(1)) and state.status == "healthy"
    assert state.add(_result(1)) and state.status == "unhealthy"
    assert state.health().failing_streak == 2
    for _ in range(10):
        state.add(_result(1))
    assert len(state.health().log) == 5


def test_an_unhealthy_verdict_says_what_the_last_probe_said() -> None:
    from datetime import UTC, datetime

    from supervisor.domain._supervised import Health, ProbeResult
    from supervisor.supervision._health import last_probe

    now = datetime.now(UTC)
    failed = ProbeResult(1, "  no such file\n", now, now)
    assert last_probe(Health("unhealthy", 3, (failed,))) == (
        "3 probes failed, the last exited 1: no such file"
    )
    assert last_probe(Health("unhealthy", 2, ())) == "2 probes failed"
