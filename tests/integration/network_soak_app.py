"""The application of the network soak (``test_network_soak.py``), run as a
process of its own so that the test can SIGKILL it: it takes up what an
earlier run left (restore, then every container force-deleted), then
workers run container lives on the default network with a published port
until it is killed. One line on stdout per finished life.

    python -m tests.integration.network_soak_app ADDRESS NAMESPACE STATE_DIR ROOTFS GENERATION
"""

from __future__ import annotations

import sys

import anyio

import supervisor
from supervisor import errors

WORKERS = 3
OUTAGE = (errors.Unavailable, errors.DeadlineExceeded, errors.Cancelled)


async def _retry(action, what: str):  # type: ignore[no-untyped-def]
    """``action()`` again while containerd is away (it is restarted)."""
    with anyio.fail_after(60):
        while True:
            try:
                return await action()
            except OUTAGE:
                await anyio.sleep(0.1)


async def _life(client: supervisor.Client, rootfs: str, cid: str) -> None:
    spec = supervisor.default_spec(["sh", "-c", "cat /etc/hostname"], rootfs)
    container = await client.new_container(cid, spec, network="bridge", ports=["127.0.0.1:0:80"])
    task = await container.new_task(output="null")
    await task.start()
    with anyio.fail_after(30):
        await task.wait()
    await task.delete()
    await container.delete()


async def _clean(client: supervisor.Client, cid: str) -> None:
    async def delete() -> None:
        try:
            await (await client.load_container(cid)).delete(force=True)
        except errors.NotFound:
            pass

    await _retry(delete, "clean")


async def _worker(client: supervisor.Client, rootfs: str, name: str) -> None:
    n = 0
    while True:
        cid = f"{name}-{n}"
        n += 1
        try:
            await _life(client, rootfs, cid)
            print(f"done {cid}", flush=True)
        except (errors.SupervisorError, TimeoutError) as exc:
            print(f"disturbed {cid} {type(exc).__name__}", flush=True)
            await _clean(client, cid)


async def main(address: str, namespace: str, state_dir: str, rootfs: str, gen: str) -> None:
    async def connect_and_run() -> None:
        async with supervisor.connect(address, namespace=namespace, state_dir=state_dir) as client:
            # An earlier run's containers go; what gone ones held is released.
            for container, _ in await _retry(client.restore, "restore"):
                await _clean(client, container.id)
            print("ready", flush=True)
            async with anyio.create_task_group() as tg:
                for k in range(WORKERS):
                    tg.start_soon(_worker, client, rootfs, f"g{gen}w{k}")

    while True:  # until the test kills it
        try:
            await connect_and_run()
        except OUTAGE:
            await anyio.sleep(0.1)


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:6])
