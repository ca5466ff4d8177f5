"""Live restore: after the application's own restart, the stdio of live
processes is reopened, nothing written meanwhile is lost or doubled, and
exits that happened meanwhile are reported once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import EventType
from tests.integration.conftest import fifo_files, open_fds
from tests.integration.helpers import Recorder, read_all

pytestmark = pytest.mark.asyncio

# The "first run" of the application: it starts what it is told, reads some
# bytes of the init process's stdout, writes them to a file and exits without
# deleting anything (as a crash or an upgrade would leave things).
_FIRST_RUN = textwrap.dedent(
    """
    import sys, anyio, supervisor

    async def main(address, namespace, state, rootfs, script, want, read_to):
        async with supervisor.connect(address, namespace=namespace, state_dir=state) as client:
            spec = supervisor.default_spec(["sh", "-c", script], rootfs)
            container = await client.new_container("live", spec)
            task = await container.new_task()
            await task.start()
            proc = await task.exec("side", ["sh", "-c", "sleep 0.2; exit 7"])
            await proc.start()
            got = b""
            while len(got) < int(want):
                got += await task.stdout.receive()
            with open(read_to, "wb") as f:
                f.write(got)

    anyio.run(main, *sys.argv[1:])
    """
)


def _first_run(
    address: str, namespace: str, state: Path, rootfs: str, script: str, want: int, out: Path
) -> None:
    args = [address, namespace, str(state), rootfs, script, str(want), str(out)]
    subprocess.run([sys.executable, "-c", _FIRST_RUN, *args], check=True, timeout=60)


async def test_restore_reads_on_where_the_last_run_stopped(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, tmp_path: Path
) -> None:
    script = "i=1; while [ $i -le 60 ]; do echo line-$i; i=$((i+1)); sleep 0.05; done"
    first = tmp_path / "first"
    _first_run(containerd_address, namespace, state_dir, rootfs, script, 20, first)
    rec = Recorder()
    async with supervisor.connect(
        containerd_address, namespace=namespace, backend=rec, state_dir=state_dir
    ) as client:
        ((container, task),) = await client.restore()
        assert task is not None and container.id == "live"
        with anyio.fail_after(30):
            rest = await read_all(task.stdout)
            status = await task.wait()
        assert status.exit_code == 0
        expected = "".join(f"line-{i}\n" for i in range(1, 61)).encode()
        assert first.read_bytes() + rest == expected
        # The exec exited while nobody listened: reported once, with its code.
        side = task.execs["side"]
        with anyio.fail_after(30):
            assert (await side.wait()).exit_code == 7
        await rec.wait_for(lambda: rec.exits()[("live", "side")] == 1)
        await rec.wait_for(lambda: rec.exits()[("live", "live")] == 1)
        exits = [i for e, i in rec.of("live") if e is EventType.EXIT and i.process_id == "side"]
        assert [i.exit_code for i in exits] == [7]
        await side.delete()
        await task.delete()
        await container.delete()
    assert fifo_files(state_dir) == []


async def test_a_container_blocked_on_a_full_pipe_resumes_after_restore(
    containerd_address: str, namespace: str, state_dir: Path, rootfs: str, tmp_path: Path
) -> None:
    script = "head -c 1000000 /dev/zero; echo end"
    first = tmp_path / "first"
    _first_run(containerd_address, namespace, state_dir, rootfs, script, 1, first)
    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as client:
        ((container, task),) = await client.restore()
        assert task is not None
        assert await task.status() is supervisor.ProcessState.RUNNING  # blocked, not done
        with anyio.fail_after(60):
            rest = await read_all(task.stdout)
            status = await task.wait()
        assert status.exit_code == 0
        assert len(first.read_bytes()) + len(rest) == 1_000_000 + len(b"end\n")
        assert rest.endswith(b"end\n")
        for proc in task.execs.values():
            await proc.delete()
        await task.delete()
        await container.delete()


async def test_a_look_only_restore_leaves_the_output_to_its_reader(
    client: supervisor.Client, containerd_address: str, namespace: str, state_dir: Path, rootfs: str
) -> None:
    # Another client on the same state directory (a status page, a second
    # process of the application) restores again and again while the owner
    # reads: with attach=False it opens no FIFO, so nothing is taken from
    # the owner's stream and no fds pile up.
    script = "i=1; while [ $i -le 40 ]; do echo line-$i; i=$((i+1)); sleep 0.02; done"
    container = await client.new_container(
        "watched", supervisor.default_spec(["sh", "-c", script], rootfs)
    )
    task = await container.new_task()
    await task.start()
    out = b""

    async def read() -> None:
        nonlocal out
        out = await read_all(task.stdout)

    async with supervisor.connect(
        containerd_address, namespace=namespace, state_dir=state_dir
    ) as observer:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                for _ in range(10):
                    before = open_fds()
                    ((seen, seen_task),) = await observer.restore(attach=False)
                    assert open_fds() == before
                    assert seen.id == "watched" and seen_task is not None
                    assert seen_task.pid == task.pid
                    with pytest.raises(supervisor.errors.FailedPrecondition):
                        seen_task.stdout  # noqa: B018
                    await anyio.sleep(0.05)
    with anyio.fail_after(30):
        assert (await task.wait()).exit_code == 0
    assert out == "".join(f"line-{i}\n" for i in range(1, 41)).encode()
    await task.delete()
    await container.delete()
    assert fifo_files(state_dir) == []
