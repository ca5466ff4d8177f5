"""Daemon and DaemonTimeouts refuse bad arguments with InvalidArgument, at
construction, before anything exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from supervisor import Daemon, DaemonConfig, DaemonTimeouts, errors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"binary": 5}, "binary must be a non-empty string"),
        ({"binary": None}, "binary must be a non-empty string"),
        ({"binary": ""}, "binary must be a non-empty string"),
        ({"binary": "contain\0erd"}, "binary must be a non-empty string"),
        ({"binary": Path("/usr/bin/containerd")}, "binary must be a non-empty string"),
        ({"root_dir": 5}, "root_dir must be a path, not int"),
        ({"root_dir": b"/tmp/x"}, "root_dir must be a path, not bytes"),
        ({"root_dir": ""}, "root_dir '' is empty"),
        ({"state_dir": None}, "state_dir must be a path, not NoneType"),
        ({"state_dir": "/tmp/a\0b"}, "contains a NUL byte"),
        ({"config": {"log_level": "debug"}}, "config must be a DaemonConfig, not dict"),
        ({"timeouts": {"start": 1}}, "timeouts must be a DaemonTimeouts, not dict"),
        ({"log_level": "verbose"}, "log_level 'verbose' is not one of"),
        ({"log_level": 10}, "log_level 10 is not one of"),
        ({"log_level": ["debug"]}, "log_level \\['debug'\\] is not one of"),
    ],
    ids=repr,
)
def test_bad_constructor_arguments(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    args = {"root_dir": tmp_path / "root", "state_dir": tmp_path / "state", **kwargs}
    with pytest.raises(errors.InvalidArgument, match=message.replace("\0", "\\x00")):
        Daemon(**args)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("level", ["trace", "debug", "info", "warn", "warning", "error", "fatal"])
def test_logrus_and_python_level_names_are_accepted(tmp_path: Path, level: str) -> None:
    Daemon(tmp_path / "root", tmp_path / "state", log_level=level)


def test_reload_refuses_what_is_not_a_daemon_config(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "root", tmp_path / "state")
    with pytest.raises(errors.InvalidArgument, match="must be a DaemonConfig, not str"):
        daemon.reload("log_level = 'debug'")  # type: ignore[arg-type]
    with pytest.raises(errors.FailedPrecondition, match="not been started"):
        daemon.reload(DaemonConfig())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": -1}, "start must be a finite number of seconds >= 0"),
        ({"stop": float("nan")}, "stop must be a finite number"),
        ({"kill": float("inf")}, "kill must be a finite number"),
        ({"health_interval": "1"}, "health_interval must be a finite number"),
        ({"dump_grace": True}, "dump_grace must be a finite number"),
        ({"start": 0}, "start must be more than 0 seconds"),
        ({"start_poll": 0}, "start_poll must be more than 0 seconds"),
        ({"log_poll": 0.0}, "log_poll must be more than 0 seconds"),
        ({"restart_initial": 0}, "restart_initial must be more than 0 seconds"),
        ({"health_failures": 0}, "health_failures must be a positive integer"),
        ({"health_failures": 1.5}, "health_failures must be a positive integer"),
        ({"health_failures": True}, "health_failures must be a positive integer"),
        ({"restart_initial": 2, "restart_max": 1}, "restart_max (1) is less than"),
    ],
    ids=repr,
)
def test_bad_timeouts(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        DaemonTimeouts(**kwargs)
    assert message in str(info.value)


def test_good_timeouts() -> None:
    t = DaemonTimeouts(start=1, stop=0, kill=0.5, dump_grace=0, stable=0)
    assert (t.start, t.stop, t.kill) == (1, 0, 0.5)
    assert DaemonTimeouts() == DaemonTimeouts()
