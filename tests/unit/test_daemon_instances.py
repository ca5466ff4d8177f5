"""What a client names per containerd (bundle directories, cgroups, runc's
root) is scoped by the containerd it talks to, so that two containerds on one
machine (two Daemons) never share it; the machine's default containerd keeps
the names everybody uses."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from supervisor import _platform
from supervisor._platform import LINUX_ADDRESS, SYSTEM_INSTANCE, Instance, detect
from supervisor.daemon import _containerd_toml

LINUX = detect("linux")
WINDOWS = detect("win32")
PIPE = "\\\\.\\pipe\\containerd-containerd"
NOBODY = 65534


@pytest.fixture
def private(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o711)
    return directory


def test_the_default_containerd_has_no_scope() -> None:
    assert _platform.instance_scope(LINUX_ADDRESS, LINUX) is None
    assert _platform.instance_scope(PIPE, WINDOWS) is None
    # Pipe names are case-insensitive.
    assert _platform.instance_scope(PIPE.upper(), WINDOWS) is None
    assert _platform.instance_of(LINUX_ADDRESS, LINUX) == SYSTEM_INSTANCE


def test_other_containerds_get_short_stable_distinct_scopes(tmp_path: Path) -> None:
    a = _platform.instance_scope(str(tmp_path / "a" / "containerd.sock"), LINUX)
    b = _platform.instance_scope(str(tmp_path / "b" / "containerd.sock"), LINUX)
    assert a is not None and b is not None and a != b
    assert len(a) == 12 and int(a, 16) >= 0
    assert _platform.instance_scope(str(tmp_path / "a" / "containerd.sock"), LINUX) == a
    pipe = _platform.instance_scope("\\\\.\\pipe\\other", WINDOWS)
    assert pipe is not None and pipe == _platform.instance_scope("\\\\.\\PIPE\\Other", WINDOWS)


def test_two_spellings_of_one_socket_are_one_containerd(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    direct = _platform.instance_scope(str(tmp_path / "real" / "containerd.sock"), LINUX)
    linked = _platform.instance_scope(str(tmp_path / "link" / "containerd.sock"), LINUX)
    dotted = _platform.instance_scope(str(tmp_path / "real" / "." / "containerd.sock"), LINUX)
    assert direct == linked == dotted


def test_the_default_state_dir_is_scoped_for_other_containerds(tmp_path: Path) -> None:
    env = {"XDG_RUNTIME_DIR": "/run/user/1000", "LOCALAPPDATA": "C:\\Users\\u\\AppData\\Local"}
    base = _platform.default_state_dir(LINUX, env)
    assert _platform.default_state_dir(LINUX, env, address=LINUX_ADDRESS) == base
    sock = str(tmp_path / "containerd.sock")
    scope = _platform.instance_scope(sock, LINUX)
    assert _platform.default_state_dir(LINUX, env, address=sock) == base / f"@{scope}"
    win = _platform.default_state_dir(WINDOWS, env)
    assert _platform.default_state_dir(WINDOWS, env, address=PIPE) == win
    other = _platform.default_state_dir(WINDOWS, env, address="\\\\.\\pipe\\mine")
    assert other.parent == win and other.name.startswith("@")


def test_runc_root_lies_beside_a_private_socket(private: Path) -> None:
    sock = str(private / "containerd.sock")
    instance = _platform.instance_of(sock, LINUX)
    assert instance == Instance(
        scope=_platform.instance_scope(sock, LINUX), runc_root=str(private / "runc")
    )
    # No runc root on Windows (runhcs), whatever the pipe.
    assert _platform.instance_of("\\\\.\\pipe\\mine", WINDOWS).runc_root is None


@pytest.mark.parametrize("problem", ["world-writable", "group-writable", "another owner", "gone"])
def test_no_runc_root_where_others_could_write(tmp_path: Path, problem: str) -> None:
    directory = tmp_path / "shared"
    if problem != "gone":
        directory.mkdir()
        if problem == "another owner":
            os.chown(directory, NOBODY, NOBODY)
            directory.chmod(0o755)
        else:
            directory.chmod(0o777 if problem == "world-writable" else 0o775)
    instance = _platform.instance_of(str(directory / "containerd.sock"), LINUX)
    # Still scoped (cgroups, bundles); runc keeps its own default root.
    assert instance.scope is not None and instance.runc_root is None


def test_cgroups_path_default_is_scoped_by_the_containerd() -> None:
    plain: dict[str, object] = {}
    _platform.default_spec_section(plain, "ns", "web", LINUX)
    assert plain == {"linux": {"cgroupsPath": "/ns/web"}}
    system: dict[str, object] = {}
    _platform.default_spec_section(system, "ns", "web", LINUX, SYSTEM_INSTANCE)
    assert system == plain
    scoped: dict[str, object] = {}
    _platform.default_spec_section(scoped, "ns", "web", LINUX, Instance("0123456789ab", None))
    assert scoped == {"linux": {"cgroupsPath": "/containerd-0123456789ab/ns/web"}}
    own: dict[str, object] = {"linux": {"cgroupsPath": "/mine"}}
    _platform.default_spec_section(own, "ns", "web", LINUX, Instance("0123456789ab", None))
    assert own == {"linux": {"cgroupsPath": "/mine"}}
    windows: dict[str, object] = {}
    _platform.default_spec_section(windows, "ns", "web", WINDOWS, Instance("0123456789ab", None))
    assert windows == {}


def test_runc_shims_get_the_root_unless_the_caller_gave_one() -> None:
    instance = Instance(scope="0123456789ab", runc_root="/d/runc")
    assert _platform.default_runtime_options("io.containerd.runc.v2", None, instance) == {
        "root": "/d/runc"
    }
    assert _platform.default_runtime_options(
        "io.containerd.runc.v1", {"binary_name": "crun"}, instance
    ) == {"binary_name": "crun", "root": "/d/runc"}
    assert _platform.default_runtime_options("io.containerd.runtime.v1.linux", {}, instance) == {
        "runtime_root": "/d/runc"
    }
    mine = {"root": "/mine"}
    assert _platform.default_runtime_options("io.containerd.runc.v2", mine, instance) is mine
    other = {"x": 1}
    assert _platform.default_runtime_options("io.containerd.kata.v2", other, instance) is other
    # The default containerd, or one whose runc root could not be placed: untouched.
    for unscoped in (None, SYSTEM_INSTANCE, Instance(scope="0123456789ab", runc_root=None)):
        assert _platform.default_runtime_options("io.containerd.runc.v2", None, unscoped) is None


def test_the_v1_shim_is_told_runc_root_in_containerds_config(tmp_path: Path) -> None:
    args = {
        "root": tmp_path / "root",
        "state": tmp_path / "state",
        "address": str(tmp_path / "containerd.sock"),
        "debug_address": str(tmp_path / "debug.sock"),
        "log_level": "info",
    }
    with_root = tomllib.loads(_containerd_toml.render(**args, runc_root=tmp_path / 'r"unc'))
    assert with_root["plugins"]["io.containerd.runtime.v1.linux"] == {
        "runtime_root": str(tmp_path / 'r"unc')
    }
    assert "plugins" not in tomllib.loads(_containerd_toml.render(**args))
