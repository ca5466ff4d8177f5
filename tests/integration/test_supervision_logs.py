"""A restarted task writes its log file as the caller's first task did:
the same format and rotation, not raw bytes into a CRI file."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import EventType, RestartPolicy
from tests.integration.helpers import Recorder

pytestmark = pytest.mark.asyncio


async def test_a_restarted_task_keeps_the_log_format(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, tmp_path: Path
) -> None:
    rec = Recorder()
    log = tmp_path / "out.log"
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        spec = supervisor.default_spec(["sh", "-c", "echo run; exit 3"], rootfs)
        policy = RestartPolicy("on-failure", 1, initial_delay=0.05, max_delay=0.1)
        container = await client.new_container("logged", spec, restart=policy)
        task = await container.new_task(log_path=log, log_format="cri")
        await task.start()
        await rec.wait_for(
            lambda: len([e for e, _ in rec.of("logged") if e is EventType.EXIT]) == 2
        )
        last = [i for e, i in rec.of("logged") if e is EventType.EXIT][-1]
        # The supervisor records the last exit once its wait() returned, and
        # wait() returns once the output is all in the file.
        with anyio.fail_after(30):
            while container.last_exit is None or container.last_exit.exited_at != last.exited_at:
                await anyio.sleep(0.02)
        lines = [line async for line in container.logs()]
        assert [(line.stream, line.text) for line in lines] == [("stdout", "run")] * 2
        # Every line of the file is a CRI record: time, stream, tag, text.
        for raw in log.read_text().splitlines():
            stamp, stream, tag, text = raw.split(" ", 3)
            assert (stream, tag, text) == ("stdout", "F", "run"), raw
        await container.delete(force=True)
