"""Labels after creation and labels that select, against the real
containerd: ``Container.set_labels``, ``client.containers(labels=)`` and
``client.restore(labels=)`` (one List RPC, containerd's own filters)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import supervisor
from supervisor import errors

pytestmark = pytest.mark.asyncio


def _count_calls(client: supervisor.Client, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The container calls made through the client's transport from now on."""
    transport = client._session.transport
    calls: list[str] = []
    for name in ("list_containers", "get_container"):
        real = getattr(transport, name)

        async def counted(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            calls.append(_name)
            return await _real(*args, **kw)

        monkeypatch.setattr(transport, name, counted)
    return calls


async def _make(client: supervisor.Client, rootfs: str, cid: str, **labels: str) -> None:
    spec = supervisor.default_spec(["sleep", "1000"], rootfs)
    await client.new_container(cid, spec, labels=labels)


async def test_set_labels(client: supervisor.Client, rootfs: str) -> None:
    spec = supervisor.default_spec(["true"], rootfs)
    container = await client.new_container("lab", spec, labels={"keep": "1", "drop": "x"})
    after = await container.set_labels({"stage": "done", "drop": None})
    assert after == {"keep": "1", "stage": "done"}
    assert container.labels == after
    assert (await client.load_container("lab")).labels == after
    # Nothing named, nothing changed (an update without a mask would
    # replace the whole record).
    assert await container.set_labels({}) == after
    assert (await client.load_container("lab")).labels == after
    await container.delete()


@pytest.mark.parametrize(
    "labels",
    [["a"], {"": "v"}, {1: "v"}, {"a": 1}, {"a": "\ud800"}, {"big": "x" * 5000}],
)
async def test_set_labels_refused_changes_nothing(
    client: supervisor.Client, rootfs: str, labels: Any
) -> None:
    spec = supervisor.default_spec(["true"], rootfs)
    container = await client.new_container("lab-bad", spec, labels={"keep": "1"})
    with pytest.raises(errors.InvalidArgument):
        await container.set_labels(labels)
    assert container.labels == {"keep": "1"}
    assert (await client.load_container("lab-bad")).labels == {"keep": "1"}
    await container.delete()


async def test_set_labels_of_a_deleted_container(client: supervisor.Client, rootfs: str) -> None:
    container = await client.new_container("lab-gone", supervisor.default_spec(["true"], rootfs))
    await container.delete()
    with pytest.raises(errors.NotFound):
        await container.set_labels({"a": "b"})


async def test_containers_by_labels_in_one_call(
    client: supervisor.Client, rootfs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _make(client, rootfs, "web-1", app="web", tier="front")
    await _make(client, rootfs, "web-2", app="web")
    await _make(client, rootfs, "db-1", app="db")
    calls = _count_calls(client, monkeypatch)
    found = await client.containers(labels={"app": "web"})
    assert sorted(c.id for c in found) == ["web-1", "web-2"]
    assert calls == ["list_containers"]
    assert [c.id for c in await client.containers(labels={"tier": None})] == ["web-1"]
    assert await client.containers(labels={"app": "web", "tier": "back"}) == []
    assert len(await client.containers()) == 3
    monkeypatch.undo()
    for container in await client.containers():
        await container.delete()


@pytest.mark.parametrize("labels", [["app"], {"": "v"}, {"app": 1}])
async def test_containers_selector_refused(client: supervisor.Client, labels: Any) -> None:
    with pytest.raises(errors.InvalidArgument):
        await client.containers(labels=labels)
    with pytest.raises(errors.InvalidArgument):
        await client.restore(labels=labels)


async def test_restore_by_labels(
    client: supervisor.Client, rootfs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _make(client, rootfs, "job-1", kind="job")
    await _make(client, rootfs, "job-2", kind="job")
    await _make(client, rootfs, "other", kind="service")
    task = await (await client.load_container("job-1")).new_task(output="null")
    await task.start()
    calls = _count_calls(client, monkeypatch)
    restored = dict((c.id, t) for c, t in await client.restore(labels={"kind": "job"}))
    assert calls == ["list_containers"]
    monkeypatch.undo()
    assert sorted(restored) == ["job-1", "job-2"]
    assert restored["job-2"] is None
    job = restored["job-1"]
    assert job is not None
    with anyio.fail_after(30):
        await job.delete(force=True)
    for container in await client.containers():
        await container.delete(force=True)
