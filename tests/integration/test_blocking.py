"""The blocking reader (``supervisor ps``'s way to containerd) against the
real containerd: the same records as the grpclib transport for containers in
every state, a reply larger than HTTP/2's initial windows, namespaces kept
apart, and containerd's own errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

import supervisor
from supervisor import errors
from supervisor._types import ContainerRecord, ProcessState, TaskRecord
from supervisor.backends.blocking import Channel, list_containers, list_tasks
from supervisor.backends.containerd import ContainerdTransport
from tests.integration.conftest import purge_namespace

pytestmark = pytest.mark.asyncio

Listing = tuple[list[ContainerRecord], list[TaskRecord]]


def _read(address: str, namespace: str) -> Listing:
    with Channel(address, namespace, timeout=20) as channel:
        return list_containers(channel), list_tasks(channel)


async def _both(
    address: str, namespace: str
) -> tuple[
    tuple[list[ContainerRecord], list[TaskRecord]], tuple[list[ContainerRecord], list[TaskRecord]]
]:
    transport = ContainerdTransport.open(address, namespace)
    try:
        expected = (await transport.list_containers(), await transport.list_tasks())
    finally:
        await transport.aclose()
    got = await anyio.to_thread.run_sync(_read, address, namespace)

    def ordered(
        listing: tuple[list[ContainerRecord], list[TaskRecord]],
    ) -> tuple[list[ContainerRecord], list[TaskRecord]]:
        return sorted(listing[0], key=lambda c: c.id), sorted(
            listing[1], key=lambda t: t.container_id
        )

    return ordered(got), ordered(expected)


async def test_every_state_reads_as_the_transport_reads_it(
    client: supervisor.Client, containerd_address: str, namespace: str, rootfs: str
) -> None:
    labels = {"app": "web", "owner": "équipe", "empty": ""}
    await client.new_container("no-task", supervisor.default_spec(["true"], rootfs), labels=labels)
    created = await client.new_container("created", supervisor.default_spec(["true"], rootfs))
    created_task = await created.new_task(output="null")
    sleep = ["sleep", "60"]
    running = await client.new_container("running", supervisor.default_spec(sleep, rootfs))
    running_task = await running.new_task(output="null")
    await running_task.start()
    paused = await client.new_container("paused", supervisor.default_spec(sleep, rootfs))
    paused_task = await paused.new_task(output="null")
    await paused_task.start()
    await paused_task.pause()
    exited = await client.new_container(
        "exited", supervisor.default_spec(["sh", "-c", "exit 7"], rootfs)
    )
    exited_task = await exited.new_task(output="null")
    await exited_task.start()
    with anyio.fail_after(20):
        assert (await exited_task.wait()).exit_code == 7

    try:
        got, expected = await _both(containerd_address, namespace)
        assert got == expected
        containers, tasks = got
        assert [c.id for c in containers] == ["created", "exited", "no-task", "paused", "running"]
        # containerd drops a label whose value is empty
        assert containers[2].labels == {"app": "web", "owner": "équipe"}
        assert containers[4].spec["process"]["args"] == ["sleep", "60"]
        states = {t.container_id: t.state for t in tasks}
        assert states == {
            "created": ProcessState.CREATED,
            "exited": ProcessState.STOPPED,
            "paused": ProcessState.PAUSED,
            "running": ProcessState.RUNNING,
        }
        (stopped,) = [t for t in tasks if t.container_id == "exited"]
        assert stopped.exit_status is not None and stopped.exit_status.exit_code == 7
    finally:
        for task in (created_task, running_task, paused_task):
            await task.delete(force=True)


async def test_a_reply_larger_than_the_initial_windows(
    client: supervisor.Client, containerd_address: str, namespace: str, rootfs: str
) -> None:
    # HTTP/2 starts every window at 64 KiB: unless the reader opens them,
    # containerd stops sending and the listing hangs until its deadline.
    for i in range(12):
        spec = supervisor.default_spec(["true"], rootfs)
        spec["process"]["env"] = [f"FILL{j}={'x' * 1000}" for j in range(10)]
        await client.new_container(f"big-{i:02d}", spec)
    got, expected = await _both(containerd_address, namespace)
    assert got == expected and len(got[0]) == 12
    assert sum(len(str(c.spec)) for c in got[0]) > 2 * 65535


async def test_namespaces_are_kept_apart(
    client: supervisor.Client, containerd_address: str, namespace: str, rootfs: str
) -> None:
    await client.new_container("mine", supervisor.default_spec(["true"], rootfs))
    other = f"{namespace}-other"
    try:
        async with supervisor.connect(containerd_address, namespace=other) as elsewhere:
            await elsewhere.new_container("theirs", supervisor.default_spec(["true"], rootfs))
        mine, _ = await anyio.to_thread.run_sync(_read, containerd_address, namespace)
        theirs, _ = await anyio.to_thread.run_sync(_read, containerd_address, other)
        assert [c.id for c in mine] == ["mine"] and [c.id for c in theirs] == ["theirs"]
    finally:
        await purge_namespace(containerd_address, other)


async def test_containerds_own_refusal_is_typed(containerd_address: str) -> None:
    # An invalid namespace is refused by containerd itself (InvalidArgument);
    # the reader reports it as the transport would.
    with pytest.raises(errors.InvalidArgument):
        await anyio.to_thread.run_sync(_read, containerd_address, "not a namespace!")
    transport = ContainerdTransport.open(containerd_address, "not a namespace!")
    try:
        with pytest.raises(errors.InvalidArgument):
            await transport.list_containers()
    finally:
        await transport.aclose()


async def test_a_socket_that_is_not_containerd(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.sock")
    with pytest.raises(errors.Unavailable, match=missing):
        await anyio.to_thread.run_sync(_read, missing, "default")


async def test_ps_lists_the_same_over_the_transport(
    client: supervisor.Client, containerd_address: str, namespace: str, rootfs: str
) -> None:
    # Where there is no unix socket (Windows' named pipe) ps lists through
    # the transport: both ways must show the same thing.
    from supervisor.cli._ps import _listing, _listing_over_transport

    container = await client.new_container("c", supervisor.default_spec(["sleep", "60"], rootfs))
    task = await container.new_task(output="null")
    await task.start()
    try:
        args = argparse.Namespace(address=containerd_address, namespace=namespace, timeout=20.0)
        blocking = await anyio.to_thread.run_sync(_listing, args)
        over_transport = await _listing_over_transport(args)
        assert blocking == over_transport
        assert [t.state for t in blocking[1]] == [ProcessState.RUNNING]
    finally:
        await task.delete(force=True)


async def test_namespaces_created_listed_and_deleted(
    client: supervisor.Client, containerd_address: str, namespace: str, rootfs: str
) -> None:
    from supervisor.backends.blocking import create_namespace, delete_namespace, list_namespaces

    name = f"{namespace}-ns"
    labels = {"a,b": "c=d, e", "owner": "équipe", "x": ""}

    def lifecycle() -> dict[str, dict[str, str]]:
        with Channel(containerd_address, "default", timeout=20) as channel:
            create_namespace(channel, name, labels)
            with pytest.raises(errors.AlreadyExists):
                create_namespace(channel, name, {})
            listed = list_namespaces(channel)
            # The client's own namespace holds a container: not deletable.
            with pytest.raises(errors.FailedPrecondition):
                delete_namespace(channel, namespace)
            delete_namespace(channel, name)
            with pytest.raises(errors.NotFound):
                delete_namespace(channel, name)
            assert name not in list_namespaces(channel)
            return listed

    await client.new_container("keeps-it-busy", supervisor.default_spec(["true"], rootfs))
    listed = await anyio.to_thread.run_sync(lifecycle)
    # Labels are kept byte for byte (ctr's listing would split "a,b" apart);
    # containerd drops one whose value is empty.
    assert listed[name] == {"a,b": "c=d, e", "owner": "équipe"}
    assert namespace in listed
