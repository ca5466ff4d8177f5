"""The plugin's helpers for an application's tests: output as text, a
second client on the test's namespace (the application restarted), images
in the ``containers`` fixture, and what a failing test left unread in the
pipes of processes it made itself. Run as in ``test_plugin.py``: throwaway
test files in a pytest of their own, against this session's containerd."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from supervisor.testing import Containerd
from tests._registry import build_layout, busybox_layer
from tests.plugin.test_plugin import app, containers_named, run, section

pytest_plugins = ["pytester"]

__all__ = ["app"]  # the fixture, shared with test_plugin.py


def test_running_container_output_as_text(
    app: pytest.Pytester, containerd_daemon: Containerd, busybox_rootfs: Path
) -> None:
    app.makepyfile(
        """
        async def test_text(containers):
            printf = "printf 'h\\\\303\\\\251llo\\\\n\\\\377\\\\n'"
            running = await containers.run(["sh", "-c", printf])
            assert (await running.wait()).exit_code == 0
            await running.wait_for_line("llo", timeout=30)
            assert isinstance(running.output, bytes)
            assert running.text == "h\\u00e9llo\\n\\ufffd\\n"
            assert running.lines == ["h\\u00e9llo", "\\ufffd"]
        """
    )
    result = run(app, containerd_daemon, busybox_rootfs)
    result.assert_outcomes(passed=1)


def test_a_second_client_finds_what_the_first_left_running(
    app: pytest.Pytester, containerd_daemon: Containerd, busybox_rootfs: Path
) -> None:
    app.makepyfile(
        """
        import signal

        # supervisor_client: its teardown fails the test for a FIFO left open
        async def test_restart(
            supervisor_client_factory, supervisor_client, supervisor_namespace, oci_spec
        ):
            async with supervisor_client_factory() as first:
                assert first.namespace == supervisor_namespace
                container = await first.new_container("app", oci_spec(["sleep", "600"]))
                task = await container.new_task()
                await task.start()
            # the application "restarted": a new client on the same state directory
            async with supervisor_client_factory(events=False) as second:
                [(found, task)] = await second.restore()
                assert found.id == "app" and task is not None
                assert (await task.status()).value == "running"
                await task.kill(signal.SIGKILL)
                assert (await task.wait()).exit_code == 128 + 9
                await task.delete()
                await found.delete()
        """
    )
    result = run(app, containerd_daemon, busybox_rootfs)
    result.assert_outcomes(passed=1)
    assert containers_named(containerd_daemon.address, "-test-restart", app.path / "look") == {}


def test_containers_run_an_image(
    app: pytest.Pytester, containerd_daemon: Containerd, busybox_rootfs: Path, tmp_path: Path
) -> None:
    layout = build_layout(tmp_path / "layout", busybox_layer())
    archive = tmp_path / "image.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout.path, arcname=".")
    app.makepyfile(
        f"""
        import pytest
        from supervisor import errors

        async def test_image(supervisor_client, containers):
            [image] = await supervisor_client.import_image({str(archive)!r}, name="local/bb:1")
            own = await containers.run(image=image.name)
            await own.wait_for_line("hello from the image", timeout=30)
            other = await containers.run(["sh", "-c", "echo $GREETING in $(pwd)"], image=image.name)
            await other.wait_for_line("the image in /tmp", timeout=30)
            # options go to new_container, merged onto the image's config
            env = await containers.run(image=image.name, env=["GREETING=a test"], workdir="/")
            await env.wait_for_line("hello from a test", timeout=30)
            with pytest.raises(errors.InvalidArgument, match="memory_limit"):
                await containers.run(image=image.name, memory_limit=1 << 20)
            with pytest.raises(errors.InvalidArgument):
                await containers.run()
            made = [c.id for c in await supervisor_client.containers()]
            assert sorted(made) == ["bb-1-1", "bb-1-3", "sh-2"]
            for running in containers:
                await running.wait()
            await supervisor_client.remove_image(image.name)
        """
    )
    result = run(app, containerd_daemon, busybox_rootfs)
    result.assert_outcomes(passed=1)


def test_a_failing_test_shows_what_it_left_unread(
    app: pytest.Pytester, containerd_daemon: Containerd, busybox_rootfs: Path
) -> None:
    app.makepyfile(
        """
        import anyio

        async def test_quiet(supervisor_client, containers, oci_spec):
            await containers.run(["sh", "-c", "echo FIXTURE-OUTPUT"], id="theirs")
            container = await supervisor_client.new_container(
                "quiet", oci_spec(["sh", "-c", "echo UNREAD-OUT; echo UNREAD-ERR >&2; sleep 600"])
            )
            task = await container.new_task()
            await task.start()
            with anyio.fail_after(60):  # the shim copies into the pipes: wait until it did
                await anyio.wait_readable(task.stdout.fileno)
                await anyio.wait_readable(task.stderr.fileno)
            assert False, "the test failed"

        async def test_passes(supervisor_client, oci_spec):
            container = await supervisor_client.new_container(
                "tidy", oci_spec(["sh", "-c", "echo NOT-SHOWN"])
            )
            task = await container.new_task()
            await task.start()
            await task.wait()
            await task.delete()
            await container.delete()
        """
    )
    result = run(app, containerd_daemon, busybox_rootfs)
    result.assert_outcomes(passed=1, failed=1)
    report = section(result, "test_quiet")
    start = report.index("Captured unread container output call")
    unread = report[start : report.index("Captured supervisor log call", start)]
    assert "[quiet] stdout\nUNREAD-OUT\n" in unread
    assert "[quiet] stderr\nUNREAD-ERR\n" in unread
    assert "theirs" not in unread  # the containers fixture shows its own
    assert "FIXTURE-OUTPUT" in report[: report.index("Captured unread container output")]
    assert "NOT-SHOWN" not in result.stdout.str()
