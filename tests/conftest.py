"""Shared fixtures: the project's own suite runs on its pytest plugin
(``supervisor.testing``), under the names its tests have always used.

``make test`` starts one private containerd and passes its socket in
``SUPERVISOR_TEST_ADDRESS`` and a busybox rootfs in ``SUPERVISOR_TEST_ROOTFS``;
run bare (``pytest``), the plugin starts a private containerd for the session
and builds the rootfs itself. Nothing is ever skipped for a missing
containerd: the project's pytest options include ``--containerd-required``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.testing import Containerd


def pytest_configure(config: pytest.Config) -> None:
    # The Makefile's names for the plugin's --containerd-address and --busybox-rootfs.
    address = os.environ.get("SUPERVISOR_TEST_ADDRESS")
    if address and not config.getoption("containerd_address"):
        config.option.containerd_address = address
    rootfs = os.environ.get("SUPERVISOR_TEST_ROOTFS")
    if rootfs and not config.getoption("busybox_rootfs"):
        config.option.busybox_rootfs = rootfs


@pytest.fixture(scope="session")
def containerd_address(containerd_daemon: Containerd) -> str:
    return containerd_daemon.address


@pytest.fixture(scope="session")
def rootfs(busybox_rootfs: Path) -> str:
    return str(busybox_rootfs)


@pytest.fixture
def state_dir(supervisor_state_dir: Path) -> Path:
    """The library's own state (FIFOs, bundles) for one test."""
    return supervisor_state_dir
