"""checked_spec/checked_process: a private copy that refuses what JSON cannot carry."""

from __future__ import annotations

import enum

import pytest

import supervisor
from supervisor import errors
from supervisor.spec._builder import checked_process, checked_spec


class Level(enum.IntEnum):
    HIGH = 3


def test_a_deep_private_copy_sharing_only_immutable_leaves() -> None:
    spec = supervisor.default_spec(["/bin/true"], "/rootfs")
    copy = checked_spec(spec)
    assert copy == spec
    copy["process"]["args"].append("x")
    copy["linux"]["namespaces"].clear()
    assert spec["process"]["args"] == ["/bin/true"] and spec["linux"]["namespaces"]
    # strings are shared, not duplicated: each live container's spec stays small
    fresh = checked_spec(spec)
    assert fresh["process"]["cwd"] is spec["process"]["cwd"]


def test_scalar_subclasses_and_tuples_go_as_json_would_send_them() -> None:
    spec = dict(supervisor.default_spec(["true"], "/r"), annotations={"l": Level.HIGH, "t": (1, 2)})
    copy = checked_spec(spec)
    assert type(copy["annotations"]["l"]) is int and copy["annotations"]["t"] == [1, 2]


@pytest.mark.parametrize(
    "poison",
    [{1, 2}, object(), float("nan"), float("inf"), b"x", {1: "int key"}],
    ids=["set", "object", "nan", "inf", "bytes", "int-key"],
)
def test_what_json_cannot_carry_is_invalid_argument(poison: object) -> None:
    spec = dict(supervisor.default_spec(["true"], "/r"), annotations={"x": poison})
    with pytest.raises(errors.InvalidArgument, match="spec is not JSON"):
        checked_spec(spec)
    with pytest.raises(errors.InvalidArgument, match="process spec is not JSON"):
        checked_process({"args": ["true"], "env": [poison]})
