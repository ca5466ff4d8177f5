"""The fake transport takes its namespace from connect(), and keeps the
test's controls apart from the Transport calls."""

from __future__ import annotations

from pathlib import Path

import pytest

import supervisor
from supervisor import errors
from supervisor.backends.base import Transport
from supervisor.backends.fake import FakeControls, FakeTransport
from tests.unit.conftest import spec

pytestmark = pytest.mark.asyncio

RUNC = "io.containerd.runc.v2"


async def test_connect_binds_a_fake_made_without_a_namespace(tmp_path: Path) -> None:
    fake = FakeTransport()
    assert fake.controls.namespace is None
    async with supervisor.connect(
        "fake", namespace="made", transport=fake, state_dir=tmp_path
    ) as client:
        assert fake.namespace == "made"
        await client.new_container("c", spec())
        assert fake.controls.container_ids() == ["c"]
    assert fake.controls.namespace == "made"
    assert fake.controls.calls["create_container"] == 1


async def test_a_bound_fake_accepts_only_its_own_namespace(tmp_path: Path) -> None:
    fake = FakeTransport("mine")
    with pytest.raises(errors.InvalidArgument, match="bound to namespace mine, not other"):
        supervisor.connect("fake", namespace="other", transport=fake, state_dir=tmp_path)
    # Refused, the fake is as it was, and still connects in its own namespace.
    assert fake.namespace == "mine"
    assert not fake.controls.calls
    async with supervisor.connect("fake", namespace="mine", transport=fake, state_dir=tmp_path):
        pass
    again = FakeTransport()
    again.bind("first")
    with pytest.raises(errors.InvalidArgument):
        again.bind("second")
    again.bind("first")
    assert again.namespace == "first"


async def test_a_bad_namespace_leaves_the_fake_unbound() -> None:
    fake = FakeTransport()
    with pytest.raises(errors.InvalidArgument):
        fake.bind("not a namespace/")
    assert fake.controls.namespace is None
    fake.bind("good")
    assert fake.namespace == "good"


async def test_an_unbound_fake_refuses_what_needs_a_namespace() -> None:
    fake = FakeTransport()
    with pytest.raises(errors.FailedPrecondition, match="bound to no namespace"):
        fake.namespace  # noqa: B018
    with pytest.raises(errors.FailedPrecondition):
        await fake.list_containers()
    with pytest.raises(errors.FailedPrecondition):
        fake.controls.is_empty()
    # What needs none works: controls queued for later calls, and closing.
    fake.controls.fail_next("version", errors.Unavailable("down"))
    fake.bind("late")
    with pytest.raises(errors.Unavailable, match="down"):
        await fake.version()
    assert fake.controls.is_empty()
    await fake.aclose()
    assert fake.controls.closed


async def test_a_reopened_fake_shares_containerd_and_takes_a_namespace() -> None:
    fake = FakeTransport()
    other = fake.controls.reopen()
    assert other.controls.namespace is None
    fake.bind("shared")
    other.bind("shared")
    await fake.create_container("c", spec(), runtime=RUNC, runtime_options=None, labels={})
    assert [r.id for r in await other.list_containers()] == ["c"]
    assert other.controls.calls["list_containers"] == 1
    assert not fake.controls.calls["list_containers"]
    elsewhere = fake.controls.reopen("elsewhere")
    assert elsewhere.namespace == "elsewhere"
    assert await elsewhere.list_containers() == []


async def test_the_controls_are_not_transport_methods() -> None:
    fake = FakeTransport("t")
    assert isinstance(fake.controls, FakeControls)
    transport: Transport = fake  # the protocol, and no more than it
    for control in ("exit", "oom", "hold", "fail_next", "reopen", "calls", "is_empty"):
        assert not hasattr(transport, control), control
        assert hasattr(fake.controls, control), control
