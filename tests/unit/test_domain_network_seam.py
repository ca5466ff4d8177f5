"""The seam the network layer plugs into (``Container.network_attachment``),
on the fake containerd: the attachment is released only once containerd has
deleted the container, never by a refused delete; ``container.network`` and
``task.network`` hand out what it holds."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

import supervisor
from supervisor import errors
from supervisor.backends.fake import FakeTransport
from supervisor.network import NetworkInfo
from tests.unit.conftest import spec

pytestmark = pytest.mark.asyncio


@dataclass
class Attachment:
    fake: FakeTransport
    info: NetworkInfo
    released: list[bool] = field(default_factory=list)

    async def release(self) -> None:
        # Only once containerd no longer has the container.
        self.released.append(self.info.container_id not in self.fake.controls.container_ids())


async def test_released_after_containerd_deleted_the_container(
    client: supervisor.Client, fake: FakeTransport
) -> None:
    container = await client.new_container("web", spec(["sleep", "9"]))
    attachment = Attachment(fake, NetworkInfo("web", "bridge", "/x/netns/web", ip="10.88.0.2"))
    container.network_attachment = attachment
    task = await container.new_task()
    assert container.network is attachment.info and task.network is attachment.info
    with pytest.raises(errors.FailedPrecondition):
        await container.delete()  # refused: it has a task
    assert attachment.released == []
    await container.delete(force=True)
    assert attachment.released == [True]


async def test_a_container_without_one_has_no_network(client: supervisor.Client) -> None:
    container = await client.new_container("plain", spec())
    assert container.network is None
    assert (await client.load_container("plain")).network is None
    await container.delete()
