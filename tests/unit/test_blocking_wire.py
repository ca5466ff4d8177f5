"""The blocking reader's protobuf decoding: for the bytes containerd sends,
exactly the records the grpclib transport makes of them, and for bytes it
never sends, a MalformedReply and nothing else."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from supervisor import errors
from supervisor._proto.containerd.services.containers import v1 as pb_containers
from supervisor._proto.containerd.services.tasks import v1 as pb_tasks
from supervisor._proto.containerd.v1 import types as pb_types
from supervisor._proto.google.protobuf import Any as PbAny
from supervisor._types import ProcessState
from supervisor.backends import blocking
from supervisor.backends._decode import container_record, task_record
from supervisor.backends._wire import MalformedReply
from supervisor.backends.blocking._messages import containers_reply, tasks_reply

GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
TEXT = "abcXYZ09-_.:/ éü€漢😀\t\n"


def _text(rng: random.Random, most: int = 12) -> str:
    return "".join(rng.choice(TEXT) for _ in range(rng.randint(0, most)))


def _when(rng: random.Random) -> datetime | None:
    return rng.choice(
        [
            None,
            GO_ZERO_TIME,
            datetime(1970, 1, 1, tzinfo=UTC),
            datetime(1960, 5, 4, 3, 2, 1, 999999, tzinfo=UTC),
            datetime(2026, 11, 26, tzinfo=UTC) + timedelta(microseconds=rng.randint(0, 10**12)),
        ]
    )


def _spec(rng: random.Random) -> PbAny | None:
    choice = rng.randint(0, 6)
    if choice == 0:
        return None
    if choice == 1:
        return PbAny(type_url="types.containerd.io/opencontainers/runtime-spec/1/Spec")
    value: bytes
    if choice == 2:
        args = [_text(rng) for _ in range(rng.randint(0, 4))]
        value = json.dumps({"process": {"args": args}, "hostname": _text(rng)}).encode()
    elif choice == 3:
        value = b"[1, 2, 3]"  # JSON, but not an object
    elif choice == 4:
        value = b"{not json"
    elif choice == 5:
        value = b"[" * 100_000  # deeper than json can go
    else:
        value = '{"k": "\u00e9"}'.encode("latin-1")  # not UTF-8
    return PbAny(type_url="types.containerd.io/opencontainers/runtime-spec/1/Spec", value=value)


def _container(rng: random.Random) -> pb_containers.Container:
    runtime = None
    if rng.random() < 0.8:
        options = (
            PbAny(type_url="containerd.runc.v1.Options", value=b"\x10\x01")
            if rng.random() < 0.5
            else None
        )
        runtime = pb_containers.ContainerRuntime(name=_text(rng, 30), options=options)
    return pb_containers.Container(
        id=_text(rng, 40),
        labels={_text(rng): _text(rng, 50) for _ in range(rng.randint(0, 5))},
        image=_text(rng),
        runtime=runtime,
        spec=_spec(rng),
        snapshotter=_text(rng),
        snapshot_key=_text(rng),
        created_at=_when(rng),
        updated_at=_when(rng),
        extensions={
            _text(rng): PbAny(type_url=_text(rng), value=b"\x00\xff")
            for _ in range(rng.randint(0, 2))
        },
    )


def _process(rng: random.Random) -> pb_types.Process:
    return pb_types.Process(
        container_id=_text(rng) if rng.random() < 0.3 else "",
        id=_text(rng, 40),
        pid=rng.choice([0, 1, 4242, 2**32 - 1]),
        status=pb_types.Status(rng.randint(0, 5)),
        stdin=_text(rng),
        stdout=_text(rng),
        stderr=_text(rng),
        terminal=rng.random() < 0.5,
        exit_status=rng.choice([0, 1, 137, 255, 2**32 - 1]),
        exited_at=_when(rng),
    )


@pytest.mark.parametrize("seed", range(200))
def test_containers_decode_as_the_transport_decodes_them(seed: int) -> None:
    rng = random.Random(seed)
    reply = pb_containers.ListContainersResponse(
        containers=[_container(rng) for _ in range(rng.randint(0, 4))]
    )
    wire = bytes(reply)
    expected = [
        container_record(c) for c in pb_containers.ListContainersResponse.parse(wire).containers
    ]
    assert containers_reply(wire) == expected


@pytest.mark.parametrize("seed", range(200))
def test_tasks_decode_as_the_transport_decodes_them(seed: int) -> None:
    rng = random.Random(seed)
    reply = pb_tasks.ListTasksResponse(tasks=[_process(rng) for _ in range(rng.randint(0, 4))])
    wire = bytes(reply)
    expected = [task_record(p) for p in pb_tasks.ListTasksResponse.parse(wire).tasks]
    assert tasks_reply(wire) == expected


def test_the_fields_that_matter_land_where_they_belong() -> None:
    # Equality with the transport proves agreement; this proves the values.
    created = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    container = pb_containers.Container(
        id="web",
        labels={"a": "1", "b": ""},
        runtime=pb_containers.ContainerRuntime(name="io.containerd.runc.v2"),
        spec=PbAny(type_url="x", value=b'{"process": {"args": ["sleep", "9"]}}'),
        snapshotter="overlayfs",
        snapshot_key="web-key",
        created_at=created,
    )
    (record,) = containers_reply(
        bytes(pb_containers.ListContainersResponse(containers=[container]))
    )
    assert (record.id, record.runtime, record.labels) == (
        "web",
        "io.containerd.runc.v2",
        {"a": "1", "b": ""},
    )
    assert record.spec == {"process": {"args": ["sleep", "9"]}}
    assert (record.snapshotter, record.snapshot_key, record.created_at) == (
        "overlayfs",
        "web-key",
        created,
    )

    exited = datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)
    stopped = pb_types.Process(
        id="web", pid=77, status=pb_types.Status.STOPPED, exit_status=42, exited_at=exited
    )
    running = pb_types.Process(
        id="db", pid=78, status=pb_types.Status.RUNNING, exited_at=GO_ZERO_TIME
    )
    a, b = tasks_reply(bytes(pb_tasks.ListTasksResponse(tasks=[stopped, running])))
    assert (a.container_id, a.process_id, a.pid, a.state) == (
        "web",
        "web",
        77,
        ProcessState.STOPPED,
    )
    assert a.exit_status is not None and (a.exit_status.exit_code, a.exit_status.exited_at) == (
        42,
        exited,
    )
    assert (b.container_id, b.pid, b.state, b.exit_status) == ("db", 78, ProcessState.RUNNING, None)


def _key(number: int, kind: int) -> bytes:
    return _varint(number << 3 | kind)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint(len(payload)) + payload


def test_unknown_fields_are_skipped_and_unknown_states_are_unknown() -> None:
    process = (
        _len(2, b"c1")
        + _key(4, 0)
        + _varint(9)  # a status this library does not know
        + _key(99, 0)
        + _varint(2**63)
        + _key(98, 1)
        + b"\x01" * 8
        + _key(97, 5)
        + b"\x02" * 4
        + _len(96, b"\xff\xfe anything")
        + _key(3, 0)
        + _varint(5)
    )
    (record,) = tasks_reply(_len(1, process) + _len(50, b"ignored"))
    assert (record.container_id, record.pid, record.state) == ("c1", 5, ProcessState.UNKNOWN)


HOSTILE = {
    "truncated varint": _key(1, 0) + b"\x80",
    "varint of eleven bytes": _key(1, 0) + b"\xff" * 10 + b"\x01",
    "varint past 64 bits": _key(1, 0) + b"\xff" * 9 + b"\x7f",
    "length past the end": _key(1, 2) + _varint(100) + b"short",
    "field number 0": _key(0, 0) + b"\x01",
    "a group": _key(1, 3),
    "wire type 7": _key(1, 7),
    "truncated fixed64": _key(1, 1) + b"\x00" * 7,
    "truncated fixed32": _key(1, 5) + b"\x00" * 3,
    "container id not UTF-8": _len(1, _len(1, b"\xff\xfe")),
    "container id as a number": _len(1, _key(1, 0) + b"\x01"),
    "labels as a number": _len(1, _key(2, 0) + b"\x01"),
    "created_at out of range": _len(1, _len(8, _key(1, 0) + _varint(2**62))),
    "created_at truncated inside": _len(1, _len(8, _key(1, 0))),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_bytes_are_malformed_replies(name: str) -> None:
    with pytest.raises(MalformedReply):
        containers_reply(HOSTILE[name])


class _Replying:
    """Stands in for a Channel whose call returned these bytes."""

    address = "/run/x.sock"

    def __init__(self, reply: bytes) -> None:
        self.reply = reply

    def call(self, method: str, request: bytes) -> bytes:
        return self.reply


def test_a_reply_that_does_not_decode_is_unknown_naming_the_socket() -> None:
    channel = cast(blocking.Channel, _Replying(HOSTILE["length past the end"]))
    with pytest.raises(errors.Unknown, match="/run/x.sock.*does not decode") as caught:
        blocking.list_containers(channel)
    assert caught.value.__cause__ is not None
    channel = cast(blocking.Channel, _Replying(_len(1, _key(3, 0) + b"\x80")))
    with pytest.raises(errors.Unknown, match="does not decode"):
        blocking.list_tasks(channel)


def _valid_replies() -> list[bytes]:
    rng = random.Random(7)
    return [
        bytes(pb_containers.ListContainersResponse(containers=[_container(rng) for _ in range(3)]))
        for _ in range(5)
    ]


@pytest.mark.parametrize("seed", range(4))
def test_mutated_replies_decode_or_are_malformed(seed: int) -> None:
    # Whatever bytes arrive, the reader returns records or says the reply is
    # malformed: no IndexError, no UnicodeError, no OverflowError, no hang.
    rng = random.Random(seed)
    replies = _valid_replies()
    for _ in range(500):
        data = bytearray(rng.choice(replies))
        for _ in range(rng.randint(1, 4)):
            what = rng.randint(0, 2)
            if what == 0 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif what == 1:
                del data[rng.randrange(len(data) + 1) :]
            else:
                at = rng.randrange(len(data) + 1)
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        try:
            containers_reply(bytes(data))
            tasks_reply(bytes(data))
        except MalformedReply:
            pass


def test_namespaces_round_trip_through_the_wire() -> None:
    from supervisor.backends.blocking._messages import namespace_message, namespaces_reply

    labels = {"a,b": "c=d", "owner": "équipe", "": "empty key"}
    listed = _len(1, namespace_message("n1", labels)) + _len(1, namespace_message("n2", {}))
    assert namespaces_reply(listed) == {"n1": labels, "n2": {}}
    # proto3 leaves out empty strings: a name-less namespace is one field less.
    assert namespace_message("", {}) == b""
    with pytest.raises(MalformedReply):
        namespaces_reply(_len(1, _len(1, b"\xff")))
