"""The metrics read through MessageView: for any message containerd could
send, exactly the values betterproto2's full parse gives, and so exactly the
same Stats; bytes that are not a message end in MalformedReply only."""

from __future__ import annotations

import random
from typing import Any

import betterproto2
import pytest

from supervisor._proto.io.containerd.cgroups import v1 as pb_cg1
from supervisor._proto.io.containerd.cgroups import v2 as pb_cg2
from supervisor.backends._decode_stats import decode_v1, decode_v2, stats_v1, stats_v2
from supervisor.backends._message_view import view
from supervisor.backends._wire import MalformedReply


def _random(cls: type[betterproto2.Message], rng: random.Random, depth: int = 0) -> Any:
    meta = getattr(cls, "_betterproto")  # noqa: B009
    values: dict[str, Any] = {}
    for name, field in meta.meta_by_field_name.items():
        if rng.random() < 0.3:
            continue  # left at its default

        def one(field: Any = field, name: str = name) -> Any:
            if field.proto_type == betterproto2.TYPE_MESSAGE:
                return _random(meta.cls_by_field[name], rng, depth + 1)
            if field.proto_type == betterproto2.TYPE_STRING:
                return rng.choice(["", "Read", "Write", "eth0", "é漢", "x" * 40])
            bits = 32 if field.proto_type == betterproto2.TYPE_UINT32 else 64
            return rng.choice([0, 1, 4096, (1 << bits) - 1, rng.getrandbits(bits)])

        if field.repeated:
            values[name] = [one() for _ in range(rng.randint(0, 3 if depth < 2 else 1))]
        elif field.proto_type == betterproto2.TYPE_MESSAGE and depth > 3:
            continue
        else:
            values[name] = one()
    return cls(**values)


def _same(viewed: Any, parsed: Any, path: str) -> None:
    if isinstance(parsed, betterproto2.Message):
        assert viewed is not None, path
        assert bool(viewed) == bool(parsed), path
        for name in getattr(type(parsed), "_betterproto").meta_by_field_name:  # noqa: B009
            _same(getattr(viewed, name), getattr(parsed, name), f"{path}.{name}")
    elif isinstance(parsed, list):
        assert len(viewed) == len(parsed), path
        for i, (v, p) in enumerate(zip(viewed, parsed, strict=True)):
            _same(v, p, f"{path}[{i}]")
    else:
        assert viewed == parsed, path


@pytest.mark.parametrize("cls", [pb_cg1.Metrics, pb_cg2.Metrics])
@pytest.mark.parametrize("seed", range(60))
def test_every_field_reads_as_betterproto2_parses_it(cls: Any, seed: int) -> None:
    data = bytes(_random(cls, random.Random(seed)))
    _same(view(cls, data), cls.parse(data), cls.__name__)


@pytest.mark.parametrize("seed", range(60))
def test_stats_are_the_same_either_way(seed: int) -> None:
    rng = random.Random(seed)
    v1 = bytes(_random(pb_cg1.Metrics, rng))
    assert decode_v1(v1) == stats_v1(pb_cg1.Metrics.parse(v1))
    v2 = bytes(_random(pb_cg2.Metrics, rng))
    assert decode_v2(v2) == stats_v2(pb_cg2.Metrics.parse(v2))


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def test_packed_and_unpacked_repeated_numbers_and_repeated_messages() -> None:
    # CpuUsage.per_cpu (field 4): proto3 packs it; an older writer may not.
    packed = b"\x22" + _varint(3) + b"\x01\x02\x03"
    unpacked = b"\x20\x04\x20\x05"
    assert view(pb_cg1.CpuUsage, packed + unpacked).per_cpu == [1, 2, 3, 4, 5]
    usage = view(pb_cg1.CpuUsage, b"")
    assert (usage.total, usage.per_cpu, bool(usage)) == (0, [], False)
    metrics = view(pb_cg1.Metrics, b"")
    assert metrics.memory is None and metrics.hugetlb == []
    with pytest.raises(AttributeError):
        metrics.no_such_field  # noqa: B018


def test_mutated_payloads_decode_or_are_malformed() -> None:
    rng = random.Random(11)
    samples = [bytes(_random(pb_cg1.Metrics, rng)) for _ in range(5)]
    samples += [bytes(_random(pb_cg2.Metrics, rng)) for _ in range(5)]
    for i in range(1500):
        data = bytearray(samples[i % len(samples)])
        for _ in range(rng.randint(1, 3)):
            if data and rng.random() < 0.5:
                data[rng.randrange(len(data))] = rng.randrange(256)
            else:
                del data[rng.randrange(len(data) + 1) :]
        decode = decode_v1 if i % len(samples) < 5 else decode_v2
        try:
            decode(bytes(data))
        except MalformedReply:
            pass
