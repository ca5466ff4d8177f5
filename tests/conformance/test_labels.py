"""Container labels: listing by label (containerd's filters, one call) and
changing them with a field mask, the same on the fake and on containerd."""

from __future__ import annotations

import pytest

from supervisor.backends.base import Transport

from .conftest import RUNC, World, outcome

pytestmark = pytest.mark.asyncio

# Keys and values containerd's filter grammar must have quoted: dots (a field
# path), slashes, spaces, quotes, backslashes, commas, "==", a newline, non-ASCII.
ODD_KEY = 'com.example/odd key "q" \\ ,=='
ODD_VALUE = 'a "quoted" \\ value, with comma==x\nand é ☃'


async def _make(world: World, transport: Transport, cid: str, labels: dict[str, str]) -> None:
    await transport.create_container(
        cid, world.spec(), runtime=RUNC, runtime_options=None, labels=labels
    )


async def _ids(transport: Transport, labels: dict[str, str | None] | None) -> list[str]:
    return sorted(r.id for r in await transport.list_containers(labels))


async def test_listing_by_labels(world: World, transport: Transport) -> None:
    await _make(world, transport, "c1", {"app": "web", "tier": "front", ODD_KEY: ODD_VALUE})
    await _make(world, transport, "c2", {"app": "web"})
    await _make(world, transport, "c3", {"app": "db", "é": "ü"})
    await _make(world, transport, "c4", {})
    assert await _ids(transport, None) == ["c1", "c2", "c3", "c4"]
    assert await _ids(transport, {}) == ["c1", "c2", "c3", "c4"]
    assert await _ids(transport, {"app": "web"}) == ["c1", "c2"]
    # Every selector must match.
    assert await _ids(transport, {"app": "web", "tier": "front"}) == ["c1"]
    assert await _ids(transport, {"app": "db", "tier": "front"}) == []
    # A value None: the key, whatever its value.
    assert await _ids(transport, {"tier": None}) == ["c1"]
    assert await _ids(transport, {"app": None}) == ["c1", "c2", "c3"]
    assert await _ids(transport, {ODD_KEY: ODD_VALUE}) == ["c1"]
    assert await _ids(transport, {ODD_KEY: None, "app": "web"}) == ["c1"]
    assert await _ids(transport, {"é": "ü"}) == ["c3"]
    # Exact equality, no prefix; no stored label is empty.
    assert await _ids(transport, {"app": "we"}) == []
    assert await _ids(transport, {"app": ""}) == []
    assert await _ids(transport, {"absent": None}) == []
    # The records listed are whole.
    [record] = await transport.list_containers({"tier": "front"})
    assert record.labels == {"app": "web", "tier": "front", ODD_KEY: ODD_VALUE}


async def test_updating_labels_changes_only_the_keys_named(
    world: World, transport: Transport
) -> None:
    await _make(world, transport, "c1", {"keep": "1", "change": "a", "drop": "x", "empty": "y"})
    after = await transport.update_container_labels(
        "c1", {"change": "b", "new": "n", "drop": None, "empty": "", "never-was": None}
    )
    expected = {"keep": "1", "change": "b", "new": "n"}
    assert after == expected
    assert (await transport.get_container("c1")).labels == expected
    assert await _ids(transport, {"change": "b"}) == ["c1"]
    assert await _ids(transport, {"drop": None}) == []
    # Odd keys go through the field mask unquoted.
    after = await transport.update_container_labels("c1", {ODD_KEY: ODD_VALUE})
    assert after[ODD_KEY] == ODD_VALUE
    assert await _ids(transport, {ODD_KEY: ODD_VALUE}) == ["c1"]


async def test_updating_labels_refusals(world: World, transport: Transport) -> None:
    await _make(world, transport, "c1", {"keep": "1"})
    assert await outcome(transport.update_container_labels("absent", {"a": "b"})) == "NotFound"
    too_big = {"big": "x" * 5000}
    assert await outcome(transport.update_container_labels("c1", too_big)) == "InvalidArgument"
    # Refused: nothing changed.
    assert (await transport.get_container("c1")).labels == {"keep": "1"}
