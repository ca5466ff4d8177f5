"""Containers: create, get, list, delete, and what containerd refuses."""

from __future__ import annotations

import json
from datetime import UTC

import pytest

from supervisor._platform import RUNHCS_RUNTIME as RUNHCS
from supervisor.backends.base import Transport

from .conftest import RUNC, World, outcome

pytestmark = pytest.mark.asyncio


async def test_a_container_record_holds_what_was_stored(world: World, transport: Transport) -> None:
    spec = world.spec()
    spec["annotations"] = {"unicode": "é ☃", "empty": ""}
    await transport.create_container(
        "c1", spec, runtime=RUNC, runtime_options=None, labels={"a": "1", "b": ""}
    )
    record = await transport.get_container("c1")
    assert record.id == "c1"
    assert record.spec == json.loads(json.dumps(spec))
    assert record.runtime == RUNC
    # containerd does not store a label with an empty value.
    assert record.labels == {"a": "1"}
    assert record.created_at is not None and record.created_at.tzinfo is not None
    assert record.created_at.utcoffset() == UTC.utcoffset(None)
    assert (record.snapshotter, record.snapshot_key) == ("", "")
    # Each reply is the container's own: altering one leaves the next alone.
    record.labels["a"] = "changed"
    record.spec["annotations"]["empty"] = "changed"
    again = await transport.get_container("c1")
    assert again.labels["a"] == "1" and again.spec == record.spec | {
        "annotations": spec["annotations"]
    }


async def test_the_snapshot_a_container_names_is_kept(world: World, transport: Transport) -> None:
    await transport.create_container(
        "c1",
        world.spec(),
        runtime=RUNC,
        runtime_options=None,
        labels={},
        snapshotter="overlayfs",
        snapshot_key="c1-snapshot",
    )
    record = await transport.get_container("c1")
    assert (record.snapshotter, record.snapshot_key) == ("overlayfs", "c1-snapshot")
    [listed] = await transport.list_containers()
    assert (listed.snapshotter, listed.snapshot_key) == ("overlayfs", "c1-snapshot")


async def test_a_snapshot_key_needs_a_snapshotter(world: World, transport: Transport) -> None:
    created = transport.create_container(
        "c1", world.spec(), runtime=RUNC, runtime_options=None, labels={}, snapshot_key="k"
    )
    assert await outcome(created) == "InvalidArgument"
    assert await transport.list_containers() == []


async def test_list_holds_every_container_by_id(world: World, transport: Transport) -> None:
    assert await transport.list_containers() == []
    for cid in ("b", "a.2", "c_3", "a"):
        await world.container(cid, name=cid)
    listed = await transport.list_containers()
    assert [r.id for r in listed] == ["a", "a.2", "b", "c_3"]
    assert [r.labels for r in listed] == [{"name": c} for c in ("a", "a.2", "b", "c_3")]
    assert all(r.runtime == RUNC and r.spec == world.spec() for r in listed)


async def test_delete_removes_the_container_and_only_it(world: World, transport: Transport) -> None:
    await world.container("keep")
    await world.container("gone")
    await transport.delete_container("gone")
    assert [r.id for r in await transport.list_containers()] == ["keep"]
    assert await outcome(transport.get_container("gone")) == "NotFound"
    assert await outcome(transport.delete_container("gone")) == "NotFound"
    # The id is free again.
    await world.container("gone", second="yes")
    assert (await transport.get_container("gone")).labels == {"second": "yes"}


async def test_a_second_create_of_an_id_is_refused_and_changes_nothing(
    world: World, transport: Transport
) -> None:
    await world.container("c1", first="yes")
    before = await transport.get_container("c1")
    refused = transport.create_container(
        "c1", {"other": True}, runtime="io.other", runtime_options=None, labels={"second": "yes"}
    )
    assert await outcome(refused) == "AlreadyExists"
    assert await transport.get_container("c1") == before
    assert len(await transport.list_containers()) == 1


async def test_missing_containers(world: World, transport: Transport) -> None:
    assert await outcome(transport.get_container("nope")) == "NotFound"
    assert await outcome(transport.delete_container("nope")) == "NotFound"


@pytest.mark.parametrize(
    "bad_id",
    ["", "-a", "a-", "a..b", "a b", "a/b", "é", "x" * 77],
    ids=[
        "empty",
        "leading-dash",
        "trailing-dash",
        "double-dot",
        "space",
        "slash",
        "non-ascii",
        "too-long",
    ],
)
async def test_an_invalid_container_id_is_refused(
    world: World, transport: Transport, bad_id: str
) -> None:
    created = transport.create_container(
        bad_id, world.spec(), runtime=RUNC, runtime_options=None, labels={}
    )
    assert await outcome(created) == "InvalidArgument"
    assert await transport.list_containers() == []


async def test_the_longest_valid_id_is_taken(world: World, transport: Transport) -> None:
    cid = "x" * 76
    await world.container(cid)
    assert (await transport.get_container(cid)).id == cid


async def test_a_spec_that_cannot_be_encoded_is_refused(world: World, transport: Transport) -> None:
    created = transport.create_container(
        "c1", {"bad": {1, 2}}, runtime=RUNC, runtime_options=None, labels={}
    )
    assert await outcome(created) == "InvalidArgument"
    assert await transport.list_containers() == []


async def test_a_container_needs_a_runtime(world: World, transport: Transport) -> None:
    created = transport.create_container(
        "c1", world.spec(), runtime="", runtime_options=None, labels={}
    )
    assert await outcome(created) == "InvalidArgument"
    assert await transport.list_containers() == []


async def test_labels_too_large_are_refused(world: World, transport: Transport) -> None:
    # containerd bounds a label's key and value together at 4096 bytes.
    created = transport.create_container(
        "c1", world.spec(), runtime=RUNC, runtime_options=None, labels={"k": "v" * 4096}
    )
    assert await outcome(created) == "InvalidArgument"
    assert await transport.list_containers() == []
    await transport.create_container(
        "c1", world.spec(), runtime=RUNC, runtime_options=None, labels={"k": "v" * 4095}
    )
    assert (await transport.get_container("c1")).labels == {"k": "v" * 4095}


async def test_version_answers(transport: Transport) -> None:
    version = await transport.version()
    assert isinstance(version, str) and version


async def test_runtime_options_the_shim_does_not_know_are_refused(
    world: World, transport: Transport
) -> None:
    created = transport.create_container(
        "c1", world.spec(), runtime=RUNC, runtime_options={"no_such_option": 1}, labels={}
    )
    assert await outcome(created) == "InvalidArgument"
    assert await transport.list_containers() == []
    await transport.create_container(
        "c1", world.spec(), runtime=RUNC, runtime_options={"no_new_keyring": True}, labels={}
    )
    assert (await transport.get_container("c1")).runtime == RUNC


async def test_a_runhcs_container_is_checked_before_it_is_stored(
    world: World, transport: Transport
) -> None:
    spec = world.spec()
    assert (
        await outcome(
            transport.create_container("c1", spec, runtime=RUNHCS, runtime_options=None, labels={})
        )
        == "InvalidArgument"
    )  # no layer folders
    spec["windows"] = {"layerFolders": [r"C:\layers\base", r"C:\layers\scratch"]}
    assert (
        await outcome(
            transport.create_container(
                "c1", spec, runtime=RUNHCS, runtime_options={"no_such_option": 1}, labels={}
            )
        )
        == "InvalidArgument"
    )
    assert await transport.list_containers() == []
    # containerd on Linux stores it as any other (it never runs here).
    await transport.create_container(
        "c1", spec, runtime=RUNHCS, runtime_options={"vm_processor_count": 2}, labels={}
    )
    assert (await transport.get_container("c1")).runtime == RUNHCS
