"""Shared fixtures.

Integration tests run against a real containerd and runc.  ``make test`` starts
one private containerd and passes its socket in ``SUPERVISOR_TEST_ADDRESS`` and
a busybox rootfs in ``SUPERVISOR_TEST_ROOTFS``; run bare (``pytest``), the
session starts its own.  Nothing is ever skipped for a missing containerd: the
session fails instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._containerd import REPO, PrivateContainerd, short_tmpdir


@pytest.fixture(scope="session")
def containerd_address() -> Iterator[str]:
    address = os.environ.get("SUPERVISOR_TEST_ADDRESS")
    if address:
        yield address
        return
    directory = short_tmpdir("sv-ctrd-")
    ctrd = PrivateContainerd(directory)
    ctrd.start()
    try:
        yield ctrd.address
    finally:
        ctrd.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def rootfs() -> str:
    path = os.environ.get("SUPERVISOR_TEST_ROOTFS")
    if path:
        return path
    target = REPO / ".build" / "rootfs"
    subprocess.run([str(REPO / "scripts" / "mkrootfs.sh"), str(target)], check=True)
    return str(target)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """The library's own state (FIFOs, bundles) for one test."""
    return tmp_path / "state"
