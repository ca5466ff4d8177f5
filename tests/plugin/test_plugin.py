"""The pytest plugin (``supervisor.testing``), run as an application runs it:
throwaway test files in a pytest of their own (``pytester``), against this
session's containerd unless the test is about starting one."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import supervisor
from supervisor.testing import Containerd
from supervisor.testing._namespaces import Namespaces, alive, blocking

pytest_plugins = ["pytester"]

_INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = {scope}
asyncio_default_test_loop_scope = {scope}
"""


@pytest.fixture
def app(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A throwaway project; its pytest knows only what it is told."""
    for name in ("SUPERVISOR_CONTAINERD_ADDRESS", "SUPERVISOR_BUSYBOX_ROOTFS"):
        monkeypatch.delenv(name, raising=False)
    pytester.makeini(_INI.format(scope="function"))
    return pytester


def run(
    app: pytest.Pytester, containerd: Containerd | None, rootfs: Path | None, *args: str
) -> pytest.RunResult:
    """The throwaway project's pytest, as a process of its own."""
    # "--option=value": pytest takes a separate value that looks like a path
    # for a test path when it looks for the rootdir and the ini file.
    given = ["-p", "no:cacheprovider", "-rA"]
    if containerd is not None:
        given.append(f"--containerd-address={containerd.address}")
    if rootfs is not None:
        given.append(f"--busybox-rootfs={rootfs}")
    return app.runpytest_subprocess(*given, *args, timeout=300)


def section(result: pytest.RunResult, test: str) -> str:
    """The failure report of one test (up to the next one's header)."""
    text = result.stdout.str()
    start = text.index(f"_ {test} _")
    end = re.compile(r"^_+ .* _+$|^=+ ", re.M).search(text, text.index("\n", start))
    return text[start : end.start() if end else len(text)]


def containers_named(address: str, slug: str, state_dir: Path) -> dict[str, list[str]]:
    """Every namespace whose name holds ``slug``, with its containers."""

    async def inside(namespace: str) -> list[str]:
        async with supervisor.connect(
            address, namespace=namespace, events=False, state_dir=state_dir
        ) as client:
            return [c.id for c in await client.containers()]

    return {name: blocking(inside, name) for name in Namespaces(address).list() if slug in name}


# -- fixtures, for real ---------------------------------------------------------


@pytest.mark.parametrize("scope", ["function", "session"])
def test_a_throwaway_test_file_passes(
    app: pytest.Pytester,
    containerd_daemon: Containerd,
    scope: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The rootfs is built from /bin/busybox, into a cache of the test's own.
    monkeypatch.setenv("XDG_CACHE_HOME", str(app.path / "cache"))
    app.makeini(_INI.format(scope=scope))
    app.makepyfile(
        """
        import supervisor

        async def test_run_and_wait_for_a_line(containers, busybox_rootfs):
            assert (busybox_rootfs / "bin" / "sh").exists()
            web = await containers.run(
                ["sh", "-c", "echo starting; echo oops >&2; echo listening on 8080; sleep 60"]
            )
            match = await containers.wait_for_line(web, r"listening on (\\d+)", timeout=30)
            assert match.group(1) == "8080"
            await web.wait_for_line("oops", timeout=30)
            assert b"starting" in web.stdout and b"oops" in web.stderr

        async def test_exit_status_and_output(containers):
            job = await containers.run(["sh", "-c", "echo done; exit 3"])
            assert (await job.wait()).exit_code == 3
            await job.wait_for_line("done", timeout=30)
            assert job.output == b"done\\n"

        async def test_wait_for_a_line_that_never_comes(containers):
            quick = await containers.run(["echo", "bye"])
            try:
                await quick.wait_for_line("never", timeout=30)
            except supervisor.errors.FailedPrecondition as exc:
                assert "bye" in str(exc)
            else:
                raise AssertionError("no error")

        async def test_client_and_spec(supervisor_client, supervisor_namespace, oci_spec):
            assert supervisor_client.namespace == supervisor_namespace
            container = await supervisor_client.new_container("plain", oci_spec(["true"]))
            task = await container.new_task()
            await task.start()
            assert (await task.wait()).exit_code == 0
            await task.delete()
            await container.delete()
        """
    )
    result = run(app, containerd_daemon, None)
    result.assert_outcomes(passed=4)
    assert list((app.path / "cache" / "containerd-supervisor").glob("busybox-*/bin/sh"))


def test_a_failing_test_shows_its_containers_output_and_its_own_log_only(
    app: pytest.Pytester, containerd_daemon: Containerd, busybox_rootfs: Path
) -> None:
    app.makepyfile(
        """
        async def test_theirs(containers):
            other = await containers.run(["sh", "-c", "echo THEIR-OUTPUT"], id="theirs")
            await other.wait_for_line("THEIR-OUTPUT", timeout=30)

        async def test_mine(containers):
            mine = await containers.run(
                ["sh", "-c", "echo MY-OUTPUT-1; echo MY-ERROR-2 >&2; sleep 60"], id="mine"
            )
            await mine.wait_for_line("MY-ERROR-2", timeout=30)
            await mine.wait_for_line("MY-OUTPUT-1", timeout=30)
            assert False, "the test failed"
        """
    )
    result = run(app, containerd_daemon, busybox_rootfs)
    result.assert_outcomes(passed=1, failed=1)
    report = section(result, "test_mine")
    assert "Captured containers stdout/stderr call" in report
    assert "[mine] sh -c echo MY-OUTPUT-1" in report
    assert "MY-OUTPUT-1" in report and "MY-ERROR-2" in report
    log = report[report.index("Captured supervisor log call") :]
    namespace = log.splitlines()[1].removeprefix("namespace ")
    assert "-test-mine" in namespace
    assert "container.create container_id=mine" in log
    assert "process.start container_id=mine" in log
    assert "theirs" not in report and "-test-theirs" not in report
    # pytest's own log capture is as the application's levels make it.
    assert "DEBUG    supervisor." not in result.stdout.str()


def test_leaks_fail_a_passing_test_naming_them(
    app: pytest.Pytester, containerd_daemon: Containerd, busybox_rootfs: Path
) -> None:
    app.makepyfile(
        """
        import asyncio

        async def test_leaks_a_running_task(supervisor_client, oci_spec):
            container = await supervisor_client.new_container("leaky", oci_spec(["sleep", "600"]))
            task = await container.new_task()
            await task.start()

        async def test_leaks_an_asyncio_task(supervisor_client):
            asyncio.get_running_loop().create_task(asyncio.sleep(600), name="forgotten")

        async def test_leaks_an_undeleted_task(supervisor_client, oci_spec):
            container = await supervisor_client.new_container("undeleted", oci_spec(["true"]))
            task = await container.new_task()
            await task.start()
            await task.wait()

        async def test_fails_and_leaks(supervisor_client, oci_spec):
            container = await supervisor_client.new_container("halfway", oci_spec(["sleep", "600"]))
            task = await container.new_task()
            await task.start()
            assert False, "failed halfway"

        async def test_cleans_up(supervisor_client, containers, oci_spec):
            await containers.run(["sleep", "600"])  # the factory's own: not a leak
            container = await supervisor_client.new_container("tidy", oci_spec(["true"]))
            task = await container.new_task()
            await task.start()
            await task.wait()
            await task.delete()
            await container.delete()
        """
    )
    result = run(app, containerd_daemon, busybox_rootfs)
    result.assert_outcomes(passed=4, failed=1, errors=3)
    out = result.stdout.str()
    running = section(result, "ERROR at teardown of test_leaks_a_running_task")
    assert "left behind" in running
    assert re.search(r"task of container 'leaky' \(running, pid \d+\), killed and deleted", running)
    # The closed client let go of the FIFOs' fds: the task is what is named.
    assert "open FIFO" not in running
    pending = section(result, "ERROR at teardown of test_leaks_an_asyncio_task")
    assert "pending asyncio task 'forgotten' running sleep" in pending
    undeleted = section(result, "ERROR at teardown of test_leaks_an_undeleted_task")
    assert (
        "task of container 'undeleted' (stopped), never deleted, deleted with its stdio"
        in undeleted
    )
    assert "open FIFO" not in undeleted
    assert "ERROR at teardown of test_fails_and_leaks" not in out
    assert "ERROR at teardown of test_cleans_up" not in out
    # and nothing is left in containerd
    assert containers_named(containerd_daemon.address, "-test-leaks", app.path / "look") == {}
    assert (
        containers_named(containerd_daemon.address, "-test-fails-and-leaks", app.path / "look")
        == {}
    )


def test_two_tests_never_see_each_others_containers(
    app: pytest.Pytester, containerd_daemon: Containerd, busybox_rootfs: Path
) -> None:
    app.makepyfile(
        """
        seen = []

        async def test_one(supervisor_client, supervisor_namespace, oci_spec):
            seen.append(supervisor_namespace)
            # a container without a task is no leak, but it must not reach test_two
            await supervisor_client.new_container("same-id", oci_spec(["true"]))
            assert [c.id for c in await supervisor_client.containers()] == ["same-id"]

        async def test_two(supervisor_client, supervisor_namespace, containers):
            seen.append(supervisor_namespace)
            assert await supervisor_client.containers() == []
            await containers.run(["sleep", "60"], id="same-id")
            assert [c.id for c in await supervisor_client.containers()] == ["same-id"]

        def test_their_namespaces_differ():
            one, two = seen
            assert one != two and "-test-one" in one and "-test-two" in two
        """
    )
    result = run(app, containerd_daemon, busybox_rootfs)
    result.assert_outcomes(passed=3)


# -- a killed run ---------------------------------------------------------------

_HANGS = """
import os, time

async def test_hangs(containers, supervisor_namespace, containerd_daemon):
    await containers.run(["sleep", "600"], id="orphan")
    with open(os.environ["MARKER"] + ".tmp", "w") as f:
        f.write(f"{supervisor_namespace} {containerd_daemon.address}"
                f" {containerd_daemon.directory}")
    os.rename(os.environ["MARKER"] + ".tmp", os.environ["MARKER"])
    time.sleep(600)
"""


def _run_until_marker(
    app: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str
) -> list[str]:
    """Start the project's pytest, wait for its test to write a marker file,
    SIGKILL it; return what the marker says."""
    marker = app.path / "started"
    monkeypatch.setenv("MARKER", str(marker))  # popen passes os.environ on
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    proc = app.popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, "the test run ended before its test started"
            assert time.monotonic() < deadline, "the test run did not start its container"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    return marker.read_text().split()


def test_the_next_run_reaps_what_a_killed_run_left(
    app: pytest.Pytester,
    containerd_daemon: Containerd,
    busybox_rootfs: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app.makepyfile(test_hangs=_HANGS)
    address = containerd_daemon.address
    namespace, _, directory = _run_until_marker(
        app, monkeypatch, f"--containerd-address={address}", f"--busybox-rootfs={busybox_rootfs}"
    )
    token = "-".join(namespace.split("-")[:3])
    assert containers_named(address, namespace, app.path / "look") == {namespace: ["orphan"]}
    assert token in Namespaces(address).list()  # the killed session's anchor
    # The next session, whatever it runs, cleans up before it starts.
    app.makepyfile(test_hangs="async def test_nothing(containerd_daemon):\n    pass\n")
    run(app, containerd_daemon, busybox_rootfs).assert_outcomes(passed=1)
    assert containers_named(address, token, app.path / "look") == {}
    assert not Path(directory).exists()


def test_the_next_run_reaps_a_killed_runs_private_containerd(
    app: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.makepyfile(test_hangs=_HANGS)
    namespace, address, directory = _run_until_marker(app, monkeypatch)
    pid = int((Path(directory) / "state" / "containerd.pid").read_text())
    assert alive(pid)
    assert containers_named(address, namespace, app.path / "look") == {namespace: ["orphan"]}
    app.makepyfile(test_hangs="async def test_nothing(containerd_daemon):\n    pass\n")
    run(app, None, None).assert_outcomes(passed=1)
    assert not alive(pid)
    assert not Path(directory).exists()
    shims = [
        p for p in Path("/proc").iterdir() if p.name.isdigit() and namespace.encode() in _cmdline(p)
    ]
    assert shims == []


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


# -- the private containerd, the skip and the failure ------------------------------


def test_a_private_containerd_for_the_session(app: pytest.Pytester) -> None:
    app.makepyfile(
        """
        import os
        from pathlib import Path

        seen = []

        def test_the_daemon(containerd_daemon):
            assert containerd_daemon.private
            assert len(os.fsencode(containerd_daemon.address)) <= 107
            seen.append(containerd_daemon)

        async def test_it_runs_containers(containers):
            job = await containers.run(["echo", "hi"])
            await job.wait_for_line("hi", timeout=30)

        def test_record():
            Path("seen").write_text(
                f"{seen[0].directory} "
                + (seen[0].directory / "state" / "containerd.pid").read_text()
            )
        """
    )
    run(app, None, None).assert_outcomes(passed=3)
    directory, pid = (app.path / "seen").read_text().split()
    assert not Path(directory).exists()
    assert not alive(int(pid))


def test_without_containerd_tests_are_skipped_saying_why(
    app: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = app.mkdir("empty-path")
    monkeypatch.setenv("PATH", str(empty))
    app.makepyfile(
        """
        def test_needs_containerd(containerd_daemon):
            pass

        async def test_needs_a_client(supervisor_client):
            pass

        def test_needs_nothing():
            pass
        """
    )
    result = run(app, None, None)
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["SKIPPED*containerd is not available: containerd is not on PATH*"])


def test_with_containerd_required_they_fail_instead(
    app: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(app.mkdir("empty-path")))
    app.makepyfile(
        """
        def test_needs_containerd(containerd_daemon):
            pass

        def test_needs_nothing():
            pass
        """
    )
    result = run(app, None, None, "--containerd-required")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*containerd is required (--containerd-required), but containerd is not on PATH*"]
    )


def test_an_unanswering_address_is_named(app: pytest.Pytester) -> None:
    app.makepyfile("def test_needs_containerd(containerd_daemon):\n    pass\n")
    missing = app.path / "nothing.sock"
    result = app.runpytest_subprocess(
        "-p", "no:cacheprovider", "-rA", f"--containerd-address={missing}", timeout=120
    )
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"*containerd at {missing} does not answer*"])


def test_without_pytest_asyncio_the_async_fixtures_say_what_they_need(
    app: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    app.makepyfile(
        """
        def test_needs_a_client(supervisor_client):
            pass

        def test_needs_nothing():
            pass
        """
    )
    code = (
        "import sys; sys.modules['pytest_asyncio'] = None\n"  # as if not installed
        "import pytest\n"
        "sys.exit(pytest.main(['-p', 'supervisor', '-p', 'no:cacheprovider', '-rA']))\n"
    )
    result = app.run(sys.executable, "-c", code, timeout=120)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*supervisor_client needs pytest-asyncio*"])


def test_the_plugin_is_inert_until_asked(app: pytest.Pytester) -> None:
    app.makepyfile(
        """
        import sys

        def test_nothing_loaded():
            assert "supervisor.testing.plugin" in sys.modules
            for name in ("grpclib", "supervisor.daemon", "supervisor._proto"):
                assert name not in sys.modules, name
        """
    )
    run(app, None, None).assert_outcomes(passed=1)
