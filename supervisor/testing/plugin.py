"""The pytest plugin (entry point ``pytest11``, name ``supervisor``).

Only options, two hooks and fixture definitions live here; everything that
does work is imported by the fixtures when a test first asks for one. The
async fixtures need pytest-asyncio: without it they fail with a message
saying so, and the plugin stays out of the way of projects that never use it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from ._record import RECORD, TestRecord

if TYPE_CHECKING:
    from ._containerd import Containerd

ENV_ADDRESS = "SUPERVISOR_CONTAINERD_ADDRESS"
ENV_ROOTFS = "SUPERVISOR_BUSYBOX_ROOTFS"

_PROBLEMS = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("supervisor", "containerd for tests (containerd-supervisor)")
    group.addoption(
        "--containerd-address",
        dest="containerd_address",
        default=None,
        metavar="SOCKET",
        help=f"use the containerd at SOCKET (default: ${ENV_ADDRESS}, "
        "else start a private one for the session)",
    )
    group.addoption(
        "--containerd-required",
        dest="containerd_required",
        action="store_true",
        default=False,
        help="fail, not skip, the tests that need containerd when it cannot run (for CI)",
    )
    group.addoption(
        "--busybox-rootfs",
        dest="busybox_rootfs",
        default=None,
        metavar="DIR",
        help=f"a prepared busybox root filesystem (default: ${ENV_ROOTFS}, "
        "else one built from /bin/busybox into a cache directory)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_PROBLEMS] = []
    try:
        import pytest_asyncio  # noqa: F401 - loaded already wherever it is installed
    except ImportError:
        config.pluginmanager.register(_WithoutAsyncio(), "supervisor-async-fixtures")
    else:
        from . import _fixtures

        config.pluginmanager.register(_fixtures, "supervisor-async-fixtures")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    record = item.stash.get(RECORD, None)
    if record is None:
        return report
    if report.failed:
        if report.when != "teardown":
            record.failed = True
        for title, text in record.sections():
            report.sections.append((f"Captured {title} {report.when}", text))
    if report.when == "teardown":
        record.finish()
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    problems = config.stash.get(_PROBLEMS, [])
    if problems:
        terminalreporter.section("supervisor: clean-up problems")
        for line in problems:
            terminalreporter.line(line)


def _unavailable(config: pytest.Config, reason: str) -> NoReturn:
    if config.getoption("containerd_required"):
        pytest.fail(f"containerd is required (--containerd-required), but {reason}", pytrace=False)
    pytest.skip(f"containerd is not available: {reason}")


@pytest.fixture(scope="session")
def containerd_daemon(pytestconfig: pytest.Config) -> Iterator[Containerd]:
    """The session's containerd (see :class:`supervisor.testing.Containerd`)."""
    from .. import errors
    from ._containerd import (
        Containerd,
        PrivateDaemon,
        base_dir,
        missing_requirement,
        probe,
        reap_directories,
        write_owner,
    )
    from ._namespaces import Owner, Session, new_token

    problems = pytestconfig.stash[_PROBLEMS]
    address = pytestconfig.getoption("containerd_address") or os.environ.get(ENV_ADDRESS)
    if not address:
        reason = missing_requirement()
        if reason is not None:
            _unavailable(pytestconfig, reason)
    try:
        base = base_dir()
    except (errors.SupervisorError, OSError) as exc:
        _unavailable(pytestconfig, f"no directory for it: {exc}")
    me = Owner.me()
    problems += reap_directories(base, me)
    token = new_token(me)
    directory = base / token
    directory.mkdir(mode=0o700)
    write_owner(directory, me)
    daemon = None
    try:
        if address:
            reason = probe(address, directory / "admin")
            if reason is not None:
                _unavailable(pytestconfig, reason)
        else:
            daemon = PrivateDaemon(directory)
            try:
                address = daemon.start()
            except (errors.SupervisorError, OSError) as exc:
                problems += daemon.stop()
                _unavailable(pytestconfig, f"the private containerd did not start: {exc}")
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    session = Session(token, me, address, directory / "admin")
    found = Containerd(address, daemon is not None, directory, session, daemon)
    try:
        problems += session.open()
        yield found
    finally:
        problems += found.close()


@pytest.fixture(scope="session")
def busybox_rootfs(pytestconfig: pytest.Config) -> Path:
    """A busybox root filesystem, shared read-only by the session's containers."""
    from .. import errors
    from ._rootfs import build_busybox_rootfs

    given = pytestconfig.getoption("busybox_rootfs") or os.environ.get(ENV_ROOTFS)
    if given:
        path = Path(given).absolute()
        if not (path / "bin" / "sh").exists():
            _unavailable(pytestconfig, f"the rootfs {path} has no /bin/sh")
        return path
    try:
        return build_busybox_rootfs()
    except (errors.SupervisorError, OSError) as exc:
        _unavailable(pytestconfig, f"no busybox rootfs: {exc}")


@pytest.fixture(scope="session")
def oci_spec(busybox_rootfs: Path) -> Callable[..., dict[str, Any]]:
    """``oci_spec(args, **options)``: :func:`supervisor.default_spec` for
    ``args`` in the busybox rootfs (``options`` as that function takes)."""
    from .. import default_spec

    def make(args: list[str], **options: Any) -> dict[str, Any]:
        return default_spec(args, str(busybox_rootfs), **options)

    return make


@pytest.fixture
def supervisor_state_dir(tmp_path: Path) -> Path:
    """Where the test's client keeps bundles and FIFOs."""
    return tmp_path / "supervisor-state"


@pytest.fixture
def supervisor_namespace(
    containerd_daemon: Containerd, supervisor_state_dir: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A containerd namespace of the test's own (from its name, with the
    session's token); emptied and removed afterwards. A task still live then
    fails a test that passed, at teardown."""
    from .. import errors
    from ._namespaces import blocking, purge
    from ._network import release_networks
    from ._record import RECORD

    session = containerd_daemon.session
    namespace = session.namespace(request.node.name)
    record = TestRecord(namespace, supervisor_state_dir)
    request.node.stash[RECORD] = record
    record.enter()
    try:
        yield namespace
    finally:
        try:
            try:
                live = blocking(purge, containerd_daemon.address, namespace, session.admin_dir)
                session.remove(namespace)
                # What its containers held on a network (silently: a purged
                # container was reported above if it still ran).
                blocking(release_networks, supervisor_state_dir, namespace)
            except errors.SupervisorError as exc:
                live = [f"cannot empty namespace {namespace}: {exc}"]
            record.leaks += live
        finally:
            record.leave()
        # A test that failed halfway leaves things behind as a matter of
        # course: they are cleaned up, but only a passing test is failed for it.
        if record.leaks and not record.failed:
            pytest.fail(
                f"{request.node.nodeid} left behind:\n  - " + "\n  - ".join(record.leaks),
                pytrace=False,
            )


class _WithoutAsyncio:
    """Stand-ins for the async fixtures when pytest-asyncio is missing."""

    @pytest.fixture
    def supervisor_client(self) -> None:
        pytest.fail("supervisor_client needs pytest-asyncio (pip install pytest-asyncio)")

    @pytest.fixture
    def containers(self) -> None:
        pytest.fail("containers needs pytest-asyncio (pip install pytest-asyncio)")

    @pytest.fixture
    def supervisor_client_factory(self) -> None:
        pytest.fail("supervisor_client_factory needs pytest-asyncio (pip install pytest-asyncio)")
