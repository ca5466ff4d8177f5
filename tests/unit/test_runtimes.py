from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import typing
from pathlib import Path
from typing import Any

import pytest

from supervisor._proto.containerd.linux import runc as pb_runc_v1
from supervisor._proto.containerd.runc import v1 as pb_runc
from supervisor.daemon._runtimes import (
    DEFAULT_RUNTIME,
    SHIM_OPTION_FIELDS,
    SHIM_V1,
    SHIM_V2,
    STOCK_RUNTIMES,
    Runtime,
    clean_stale_wrappers,
    resolve,
    wrapper_name,
    wrapper_script,
    write_wrapper,
)
from supervisor.errors import FailedPrecondition, InvalidArgument

HEX64 = "0" * 64


@pytest.fixture
def wrappers(tmp_path: Path) -> Path:
    return tmp_path / "wrappers"


# -- stock runtimes -----------------------------------------------------------


def test_stock_runtimes() -> None:
    assert set(STOCK_RUNTIMES) == {"runc", SHIM_V2, SHIM_V1}
    assert DEFAULT_RUNTIME == SHIM_V2 == "io.containerd.runc.v2"
    assert SHIM_V1 == "io.containerd.runtime.v1.linux"
    assert STOCK_RUNTIMES["runc"] == Runtime("runc", shim=SHIM_V2, path="runc")
    assert STOCK_RUNTIMES[SHIM_V2] == Runtime(SHIM_V2, shim=SHIM_V2, path="runc")
    assert STOCK_RUNTIMES[SHIM_V1] == Runtime(SHIM_V1, shim=SHIM_V1, path="runc")
    for name, runtime in STOCK_RUNTIMES.items():
        assert runtime.name == name
        assert runtime.args == ()
        assert dict(runtime.options) == {}
    with pytest.raises(TypeError):
        STOCK_RUNTIMES["x"] = Runtime("x")  # type: ignore[index]


def test_stock_runtimes_resolve_without_scripts_or_options(wrappers: Path) -> None:
    for runtime in STOCK_RUNTIMES.values():
        r = resolve(runtime, wrappers)
        assert (r.name, r.shim, r.binary, r.script) == (runtime.name, runtime.shim, "runc", None)
        assert dict(r.options) == {}
    assert not wrappers.exists()  # nothing needed writing


# -- validation ---------------------------------------------------------------


def test_option_tables_match_the_generated_protos() -> None:
    # _runtimes keeps its own copy of the shims' option fields (generated code
    # stays behind the backend); this is what keeps the copy honest.
    for shim, message in ((SHIM_V2, pb_runc.Options), (SHIM_V1, pb_runc_v1.RuncOptions)):
        hints = typing.get_type_hints(message)
        proto = {f.name: hints[f.name] for f in dataclasses.fields(message)}
        ours = {k: (int if v == "uint32" else v) for k, v in SHIM_OPTION_FIELDS[shim].items()}
        assert ours == proto


def test_valid_runtime_is_frozen_and_normalized() -> None:
    options: dict[str, Any] = {"systemd_cgroup": True, "io_uid": 1000}
    args: Any = ["--debug", "--log-format=json"]
    r = Runtime("fast", path="/usr/sbin/runc", args=args, options=options)
    assert r.args == ("--debug", "--log-format=json")
    options["root"] = "/changed"  # the caller's dict is copied, not kept
    assert dict(r.options) == {"systemd_cgroup": True, "io_uid": 1000}
    with pytest.raises(TypeError):
        r.options["root"] = "/x"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.path = "/x"  # type: ignore[misc]
    # Equal runtimes hash alike even though options is an unhashable proxy.
    twin = Runtime("fast", path="/usr/sbin/runc", args=tuple(args), options=dict(r.options))
    assert twin == r and hash(twin) == hash(r)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": ""},
        {"name": "has space"},
        {"name": "../escape"},
        {"name": "a/b"},
        {"name": ".hidden"},
        {"name": "x" * 77},
        {"name": 3},
        {"shim": "io.containerd.kata.v2"},
        {"shim": ""},
        {"path": ""},
        {"path": "-runc"},
        {"path": "run\0c"},
        {"path": 5},
        {"args": "--debug"},
        {"args": ["--ok", 3]},
        {"args": ["nul\0byte"]},
        {"args": None},
        {"options": {"no_such_field": True}},
        {"options": {"runtime": "x"}},  # a shim v1 field, not v2
        {"options": {"binary_name": "/usr/bin/crun"}},  # use path
        {"options": {"systemd_cgroup": "yes"}},
        {"options": {"systemd_cgroup": 1}},
        {"options": {"root": 5}},
        {"options": {"io_uid": -1}},
        {"options": {"io_uid": 2**32}},
        {"options": {"io_uid": True}},
        {"options": {1: True}},
        {"options": [("root", "/x")]},
        {"shim": SHIM_V1, "options": {"binary_name": "x"}},  # a v2 field
        {"shim": SHIM_V1, "options": {"runtime": "/usr/bin/crun"}},  # use path
    ],
    ids=repr,
)
def test_invalid_runtime(kwargs: dict[str, Any]) -> None:
    kwargs.setdefault("name", "custom")
    with pytest.raises(InvalidArgument):
        Runtime(**kwargs)


def test_v1_options_are_v1_fields() -> None:
    r = Runtime("old", shim=SHIM_V1, options={"runtime_root": "/run/old", "systemd_cgroup": True})
    assert dict(r.options) == {"runtime_root": "/run/old", "systemd_cgroup": True}


# -- the wrapper script -------------------------------------------------------


def test_script_text_quotes_every_word() -> None:
    r = Runtime("q", path="/opt/my runc", args=("--root", "/run/it's here", "$HOME"))
    assert wrapper_script(r) == (
        b"#!/bin/sh\nexec '/opt/my runc' --root '/run/it'\"'\"'s here' '$HOME' \"$@\"\n"
    )


def test_script_runs_binary_with_args_then_callers_args(wrappers: Path) -> None:
    tricky = ("first", "two  words", "$HOME", "it's", "`id`", "*", "")
    r = Runtime("echo", path="/bin/echo", args=tricky)
    script = write_wrapper(wrappers, r)
    out = subprocess.run(
        [str(script), "caller-1", "caller $2"], check=True, capture_output=True, text=True
    ).stdout
    assert out == " ".join([*tricky, "caller-1", "caller $2"]) + "\n"


def test_written_file_is_named_by_content_and_executable(wrappers: Path) -> None:
    r = Runtime("fast", path="/usr/sbin/runc", args=("--debug",))
    path = write_wrapper(wrappers, r)
    contents = wrapper_script(r)
    assert path == wrappers / wrapper_name(r, contents)
    assert path.name.startswith("fast-") and len(path.name) == len("fast-") + 64
    assert path.read_bytes() == contents
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert stat.S_IMODE(wrappers.stat().st_mode) == 0o700


def test_longest_name_fits_name_max(wrappers: Path) -> None:
    r = Runtime("n" * 76, args=("-x",))
    path = write_wrapper(wrappers, r)
    assert len(path.name.encode()) <= 255 and path.exists()


def test_same_runtime_twice_same_file_untouched(wrappers: Path) -> None:
    r = Runtime("fast", path="/usr/sbin/runc", args=("--debug",))
    first = write_wrapper(wrappers, r)
    before = first.stat()
    second = write_wrapper(wrappers, Runtime("fast", path="/usr/sbin/runc", args=("--debug",)))
    after = second.stat()
    assert second == first
    assert (after.st_ino, after.st_mtime_ns, after.st_ctime_ns) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_ctime_ns,
    )
    assert os.listdir(wrappers) == [first.name]


def test_existing_file_is_never_rewritten(wrappers: Path) -> None:
    # Even if what is there differs (it cannot, short of tampering), it stays.
    r = Runtime("fast", args=("--debug",))
    path = write_wrapper(wrappers, r)
    path.write_bytes(b"#!/bin/sh\nexit 7\n")
    assert write_wrapper(wrappers, r) == path
    assert path.read_bytes() == b"#!/bin/sh\nexit 7\n"


def test_different_args_different_path(wrappers: Path) -> None:
    a = write_wrapper(wrappers, Runtime("fast", args=("--debug",)))
    b = write_wrapper(wrappers, Runtime("fast", args=("--debug", "--systemd-cgroup")))
    c = write_wrapper(wrappers, Runtime("fast", path="/usr/bin/crun", args=("--debug",)))
    assert len({a, b, c}) == 3
    assert all(p.exists() for p in (a, b, c))


def test_write_leaves_no_temporary_files(wrappers: Path) -> None:
    for i in range(5):
        write_wrapper(wrappers, Runtime("fast", args=(f"--n={i}",)))
    names = os.listdir(wrappers)
    assert len(names) == 5
    assert not [n for n in names if n.startswith(".") or n.endswith(".tmp")]


def test_failed_write_leaves_nothing(wrappers: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    wrappers.mkdir(mode=0o700)
    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        write_wrapper(wrappers, Runtime("fast", args=("--debug",)))
    assert os.listdir(wrappers) == []


def test_falls_back_to_rename_without_hard_links(
    wrappers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: str, dst: Path) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    r = Runtime("fast", args=("--debug",))
    path = write_wrapper(wrappers, r)
    assert path.read_bytes() == wrapper_script(r)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert os.listdir(wrappers) == [path.name]


def test_refuses_a_directory_others_can_write(wrappers: Path) -> None:
    wrappers.mkdir()
    wrappers.chmod(0o777)
    with pytest.raises(FailedPrecondition):
        write_wrapper(wrappers, Runtime("fast", args=("--debug",)))


def test_resolve_with_args_v2(wrappers: Path) -> None:
    rt = Runtime("fast", path="/usr/sbin/runc", args=("--debug",), options={"root": "/run/f"})
    r = resolve(rt, wrappers)
    assert r.script is not None and r.script.parent == wrappers
    assert r.binary == str(r.script)
    assert (r.name, r.shim) == ("fast", SHIM_V2)
    assert dict(r.options) == {"root": "/run/f", "binary_name": r.binary}
    assert resolve(rt, wrappers) == r


def test_resolve_with_args_v1(wrappers: Path) -> None:
    r = resolve(Runtime("old", shim=SHIM_V1, args=("--debug",)), wrappers)
    assert r.script is not None
    assert dict(r.options) == {"runtime": str(r.script)}


def test_resolve_without_args(wrappers: Path) -> None:
    r = resolve(Runtime("crun", path="/usr/bin/crun", options={"systemd_cgroup": True}), wrappers)
    assert (r.binary, r.script) == ("/usr/bin/crun", None)
    assert dict(r.options) == {"systemd_cgroup": True, "binary_name": "/usr/bin/crun"}
    plain = resolve(Runtime("plain", options={"systemd_cgroup": True}), wrappers)
    assert dict(plain.options) == {"systemd_cgroup": True}  # "runc" is the shim's default
    assert not wrappers.exists()


# -- cleaning -----------------------------------------------------------------


def test_clean_stale_wrappers_removes_only_stale_wrappers(wrappers: Path) -> None:
    keep = write_wrapper(wrappers, Runtime("keep", args=("--a",)))
    stale = [
        write_wrapper(wrappers, Runtime("keep", args=("--old",))),
        write_wrapper(wrappers, Runtime("gone-away", args=("--a",))),
    ]
    crashed = wrappers / f".gone-{HEX64}.k2x_9a.tmp"
    crashed.write_bytes(b"partial")
    others = [
        wrappers / "README",
        wrappers / f"gone-{HEX64}.bak",
        wrappers / f"gone-{'0' * 63}",
        wrappers / f"gone-{'A' * 64}",
        wrappers / f"-{HEX64}",
    ]
    for p in others:
        p.write_text("not ours")
    not_a_file = wrappers / f"dir-{HEX64}"
    not_a_file.mkdir()
    link = wrappers / f"link-{HEX64}"
    link.symlink_to(keep)

    removed = clean_stale_wrappers(wrappers, [keep])

    assert removed == sorted([*stale, crashed])
    assert keep.exists() and not any(p.exists() for p in removed)
    assert all(p.exists() for p in others)
    assert not_a_file.is_dir() and link.is_symlink()
    assert clean_stale_wrappers(wrappers, [keep]) == []


def test_clean_stale_wrappers_missing_directory(tmp_path: Path) -> None:
    assert clean_stale_wrappers(tmp_path / "absent", []) == []
