"""default_spec's docker-run settings: PATH kept, limits, mounts, user,
aliases; a bad value is InvalidArgument."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import supervisor
from supervisor import errors

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_env_keeps_the_default_path() -> None:
    spec = supervisor.default_spec(["sh"], "/r", env=["FOO=1"])
    assert spec["process"]["env"] == [PATH, "FOO=1"]


def test_env_with_its_own_path_replaces_it() -> None:
    spec = supervisor.default_spec(["sh"], "/r", env=["PATH=/bin", "FOO=1"])
    assert spec["process"]["env"] == ["PATH=/bin", "FOO=1"]


def test_process_spec_keeps_the_default_path() -> None:
    assert supervisor.process_spec(["sh"], env=["A=b"])["env"] == [PATH, "A=b"]


def test_limits_user_cwd_hostname_read_only(tmp_path: Path) -> None:
    spec = supervisor.default_spec(
        ["sh"],
        "/r",
        cpus=1.5,
        memory=64 << 20,
        pids_limit=20,
        user="1000:100",
        cwd="/tmp",
        hostname="box",
        read_only=False,
        mounts=[f"{tmp_path}:/data:ro", {"type": "tmpfs", "target": "/scratch"}],
    )
    resources = spec["linux"]["resources"]
    assert resources["memory"] == {"limit": 64 << 20}
    assert resources["cpu"] == {"quota": 150_000, "period": 100_000}
    assert resources["pids"] == {"limit": 20}
    assert spec["process"]["user"] == {"uid": 1000, "gid": 100}
    assert spec["process"]["cwd"] == "/tmp"
    assert spec["hostname"] == "box"
    assert spec["root"]["readonly"] is False
    data, scratch = spec["mounts"][-2:]
    assert data == {
        "destination": "/data",
        "type": "bind",
        "source": str(tmp_path),
        "options": ["rbind", "rprivate", "ro"],
    }
    assert scratch["destination"] == "/scratch" and scratch["type"] == "tmpfs"


def test_memory_limit_is_an_alias_of_memory() -> None:
    spec = supervisor.default_spec(["sh"], "/r", memory_limit=32 << 20)
    assert spec["linux"]["resources"]["memory"] == {"limit": 32 << 20}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"env": ["NOEQUALS"]},
        {"env": "A=b"},
        {"cpus": 0},
        {"cpus": float("nan")},
        {"memory": -1},
        {"memory": 1.5},
        {"pids_limit": 0},
        {"user": "nobody"},
        {"user": "1:"},
        {"user": "99999999999"},
        {"cwd": "relative"},
        {"mounts": ["relative:/x"]},
        {"mounts": ["/nonexistent-for-sure:/x"]},
        {"mounts": ["/tmp:/"]},
        {"mounts": ["/tmp"]},
        {"mounts": [{"type": "volume", "target": "/x"}]},
        {"mounts": "/tmp:/x"},
        {"memory": 1 << 24, "memory_limit": 1 << 25},
        {"read_only": True, "readonly_rootfs": False},
    ],
)
def test_bad_values_are_invalid_argument(kwargs: dict[str, Any]) -> None:
    with pytest.raises(errors.InvalidArgument):
        supervisor.default_spec(["sh"], "/r", **kwargs)


def test_the_command_builds_specs_through_public_names_only() -> None:
    import re

    cli = Path(supervisor.__file__).parent / "cli"
    private = re.compile(r"from \.\.(images|spec)\._")
    found = [
        f"{path.name}: {line.strip()}"
        for path in sorted(cli.glob("*.py"))
        for line in path.read_text().splitlines()
        if private.search(line)
    ]
    assert found == []
