"""The plugin's parts that need no containerd: names, owners, the rootfs
builder's checks, the log tap, the import cost."""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor import errors
from supervisor._ids import validate_id
from supervisor._log import get_logger
from supervisor.testing import _containerd, _rootfs
from supervisor.testing._namespaces import Namespaces, Owner, Session, new_token
from supervisor.testing._record import TestRecord, current
from tests._containerd import REPO


@pytest.mark.parametrize(
    "name",
    [
        "test_x",
        "test_bad_ids[caf\u00e9-\\xe9]",
        "test_" + "very_long_name_" * 10,
        "test_trailing[---]",
        "TEST_UPPER[a.b/c]",
    ],
)
def test_namespaces_are_valid_ids_of_at_most_60_characters(name: str, tmp_path: Path) -> None:
    owner = Owner.me()
    session = Session(new_token(owner), owner, "unused", tmp_path, Namespaces("unused"))
    first, second = session.namespace(name), session.namespace(name)
    for namespace in (first, second):
        assert validate_id(namespace) == namespace
        assert len(namespace) <= 60
        assert namespace.startswith(session.token + "-")
    assert first != second  # the same test name twice (parametrized, rerun)


def test_an_owner_is_gone_only_when_certainly_dead() -> None:
    me = Owner.me()
    assert not me.is_gone(me)
    child = subprocess.Popen(["true"])
    child.wait()
    dead = Owner(child.pid, me.start, me.boot, me.pidns)
    assert dead.is_gone(me)
    reused = Owner(me.pid, str(int(me.start) + 1), me.boot, me.pidns)
    assert reused.is_gone(me)  # same pid, another process
    assert not Owner(child.pid, me.start, "other-boot", me.pidns).is_gone(me)
    assert not Owner(child.pid, me.start, me.boot, "1").is_gone(me)
    assert Owner.from_labels(me.labels()) == me
    assert Owner.from_labels({"supervisor.pytest/pid": "x"}) is None


def test_a_dynamically_linked_busybox_is_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.FailedPrecondition, match="busybox-static"):
        _rootfs.build_busybox_rootfs(tmp_path, busybox=Path(sys.executable))
    with pytest.raises(errors.FailedPrecondition, match="no busybox at"):
        _rootfs.build_busybox_rootfs(tmp_path, busybox=tmp_path / "missing")
    assert not list(tmp_path.iterdir())


def test_the_rootfs_is_built_once_and_complete(tmp_path: Path) -> None:
    rootfs = _rootfs.build_busybox_rootfs(tmp_path)
    assert (rootfs / "bin" / "busybox").read_bytes() == Path("/bin/busybox").read_bytes()
    assert os.readlink(rootfs / "bin" / "sh") == "busybox"
    assert not (rootfs / "bin" / "busybox").is_symlink()
    assert (rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (rootfs / "etc" / "passwd").read_text().startswith("root:x:0:0:")
    stamp = (rootfs / "bin" / "sh").lstat().st_mtime_ns
    assert _rootfs.build_busybox_rootfs(tmp_path) == rootfs
    assert (rootfs / "bin" / "sh").lstat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [rootfs.name]  # no temporary left


def test_without_root_the_reason_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert _containerd.missing_requirement() == (
        "a private containerd needs root, and this runs as uid 1000"
    )


def test_the_log_tap_keeps_the_tests_lines_and_shows_pytest_what_it_showed(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    log = get_logger("plugin-test")
    record = TestRecord("ns-mine", tmp_path)
    record.enter()
    try:
        assert current.get() is record
        log.debug("mine.debug", container_id="a")
        log.warning("mine.warning", container_id="a")
        log.info("theirs", namespace="ns-theirs")
        log.info("named", namespace="ns-mine")
    finally:
        record.leave()
    log.warning("after")
    assert current.get() is None
    kept = [line.split()[3] for line in record.log_lines]
    assert kept == ["mine.debug", "mine.warning", "named"]
    # pytest's capture saw what the application's levels let through: the
    # root logger's WARNING here, as without the plugin.
    assert [r.getMessage().split()[0] for r in caplog.records] == ["mine.warning", "after"]
    assert logging.getLogger("supervisor").level == logging.NOTSET


def test_the_log_tap_leaves_a_level_set_meanwhile_alone(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    log = get_logger("plugin-test")
    record = TestRecord("ns-mine", tmp_path)
    record.enter()
    try:
        with caplog.at_level(logging.DEBUG, logger="supervisor"):
            log.debug("wanted")
        log.debug("unwanted")
    finally:
        record.leave()
    assert [r.getMessage() for r in caplog.records] == ["wanted"]
    assert logging.getLogger("supervisor").level == logging.NOTSET


def test_importing_the_plugin_loads_no_grpclib_and_starts_nothing() -> None:
    code = (
        "import sys, threading\n"
        "import supervisor.testing.plugin\n"
        "bad = [m for m in ('grpclib', 'betterproto2', 'supervisor._proto', 'supervisor.daemon',"
        " 'pytest_asyncio', 'supervisor.testing._factory') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "assert threading.active_count() == 1\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_the_unread_output_is_taken_without_waiting_and_bounded() -> None:
    from supervisor.testing import _unread

    read_end, write_end = os.pipe()
    try:
        # A blocking fd is never read: the report must not hang a run.
        os.write(write_end, b"kept\n")
        assert _unread._read_ready(read_end) == b""
        os.set_blocking(read_end, False)
        assert _unread._read_ready(read_end) == b"kept\n"
        assert _unread._read_ready(read_end) == b""  # empty, writer open: no wait
        os.set_blocking(write_end, False)
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4 * _unread._MAX_BYTES)
        written = 0
        with pytest.raises(BlockingIOError):
            while True:  # fill the pipe, more than one report takes
                written += os.write(write_end, b"x" * 4096)
        assert written > _unread._MAX_BYTES
        assert len(_unread._read_ready(read_end)) == _unread._MAX_BYTES
    finally:
        os.close(read_end)
        os.close(write_end)
    assert _unread._read_ready(read_end) == b""  # closed: nothing, no error
    shown = _unread._show("[c] stdout", b"line\n" * 300)
    assert shown.splitlines()[:2] == ["[c] stdout", "[... earlier lines left out ...]"]
    assert len(shown.splitlines()) == 2 + _unread._MAX_LINES
