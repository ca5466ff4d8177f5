"""The ``containers`` fixture with a health check: ``run(...,
wait_healthy=True)`` returns once the check passes, and a restart policy
reaches the container. Run as in ``test_plugin.py``: a throwaway test file
in a pytest of its own, against this session's containerd."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.testing import Containerd
from tests.plugin.test_plugin import app, run

pytest_plugins = ["pytester"]

__all__ = ["app"]  # the fixture, shared with test_plugin.py


def test_run_waits_until_healthy(
    app: pytest.Pytester, containerd_daemon: Containerd, busybox_rootfs: Path
) -> None:
    app.makepyfile(
        """
        import supervisor

        async def test_healthy(containers):
            check = supervisor.HealthCheck(
                ["CMD-SHELL", "test -e /tmp/up"], interval=0.1, start_period=60
            )
            running = await containers.run(
                ["sh", "-c", "sleep 0.3; touch /tmp/up; exec sleep 60"],
                healthcheck=check,
                restart="unless-stopped",
                wait_healthy=True,
            )
            assert running.task.health().status == "healthy"
            assert str(running.container.restart_policy) == "unless-stopped"
        """
    )
    result = run(app, containerd_daemon, busybox_rootfs)
    result.assert_outcomes(passed=1)
