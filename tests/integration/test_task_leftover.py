"""A task create that a task directory left by a killed containerd refuses,
on a containerd the library does not run: a FailedPrecondition that names
the directory and what to do, and the directory is left alone (it is the
state of a containerd the library does not own).

The directory is left as containerd 1.6 killed mid-create leaves it (see
``test_daemon_leftovers``): a real task, then what the shim's create wrote
taken away, its shim and containerd killed, and containerd started again.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import supervisor
from supervisor import errors
from supervisor.daemon._orphans import shims_of
from tests._containerd import PrivateContainerd, short_tmpdir

pytestmark = [pytest.mark.asyncio, pytest.mark.disruptive]


@pytest.fixture
def containerd() -> Iterator[PrivateContainerd]:
    directory = short_tmpdir("sv-tlo-")
    daemon = PrivateContainerd(directory)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_create_refused_by_a_leftover_says_so_and_leaves_it(
    containerd: PrivateContainerd, rootfs: str
) -> None:
    ns, cid = f"tlo-{os.getpid()}", "wedged"
    bundle = containerd.dir / "state" / "io.containerd.runtime.v2.task" / ns / cid
    spec = supervisor.default_spec(["sleep", "600"], rootfs)
    state = containerd.dir / "sv"
    async with supervisor.connect(containerd.address, namespace=ns, state_dir=state) as client:
        container = await client.new_container(cid, spec)
        await container.new_task(output="null")
        (shim,) = shims_of(containerd.address)
        for name in ("runtime", "init.pid", "options.json", "log.json"):
            (bundle / name).unlink(missing_ok=True)
        shutil.rmtree(containerd.dir / "runc" / ns / cid)
        children = Path(f"/proc/{shim.pid}/task/{shim.pid}/children").read_text().split()
        for pid in [*map(int, children), shim.pid]:
            os.kill(pid, signal.SIGKILL)
    containerd.kill()
    containerd.start()
    async with supervisor.connect(containerd.address, namespace=ns, state_dir=state) as client:
        container = await client.load_container(cid)
        with pytest.raises(errors.FailedPrecondition, match="left behind") as caught:
            await container.new_task(output="null")
        assert str(bundle) in str(caught.value)
        assert caught.value.container_id == cid
        assert isinstance(caught.value.__cause__, errors.AlreadyExists)  # containerd's words
        assert bundle.is_dir()
        with pytest.raises(errors.NotFound):
            await container.task()
        await container.delete()
