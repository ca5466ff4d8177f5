"""Hostile and careless inputs to today's code, without containerd.

Credential helpers and ``config.json`` (:mod:`supervisor.images._auth`),
archive links (:mod:`supervisor.images._tar`), metrics read through the wire
view (:mod:`supervisor.backends._message_view`), loading tasks with and
without attaching (over the fake transport) and the command's escaping.

Each test guards against the regression of a defect found by a red-team pass.
"""

from __future__ import annotations

import io
import json
import os
import random
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import supervisor
from supervisor import errors
from supervisor._proto.io.containerd.cgroups import v1 as pb_cg1
from supervisor._proto.io.containerd.cgroups import v2 as pb_cg2
from supervisor.backends._decode_stats import decode_v1, decode_v2, stats_v1, stats_v2
from supervisor.backends._wire import MalformedReply
from supervisor.backends.fake import FakeTransport
from supervisor.stats._model import PidsStats
from tests.unit.conftest import GUARD, connect, fifo_files, open_fds, spec

# -- helpers ------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    # pid 1 here does not reap orphans: a killed grandchild lingers as a zombie.
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


async def _gone(pid: int, bound: float = 2.0) -> bool:
    """Whether ``pid`` is dead within ``bound`` seconds (SIGKILL is not
    instant); a hang guard, never a measure."""
    with anyio.move_on_after(bound):
        while _alive(pid):
            await anyio.sleep(0.02)
    return not _alive(pid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except OSError:
        pass


@pytest.fixture
def helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only our fake credential helpers and the system's tools."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return bin_dir


def _helper(bin_dir: Path, name: str, body: str) -> None:
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)


def _config(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


# -- 1. credential helpers and config.json ------------------------------------------


@pytest.mark.asyncio
async def test_hostile_helper_answers_are_failed_precondition_and_leave_nothing(
    tmp_path: Path, helpers: Path
) -> None:
    from supervisor.images._auth import configured_credentials

    cases = {
        # Megabytes on stdout: read to the end, kept to 1 MiB, not credentials.
        "flood": "head -c 8000000 /dev/zero",
        "flood-err": "head -c 8000000 /dev/zero >&2; exit 1",
        "badutf": r"printf '\377\376\375'",
        "types": """echo '{"Username": 1, "Secret": ["x"]}'""",
        "array": "echo '[1, 2]'",
        "null": "echo null",
        "missing": """echo '{"Username": "u"}'""",
        # Valid credentials after a megabyte of padding: cut, so refused.
        "padded": "head -c 2000000 /dev/zero | tr '\\0' ' '; "
        """echo '{"Username":"u","Secret":"s"}'""",
        # Closes its output and lives on: bounded by the limit, then killed.
        "mute": "echo $$ > {pids}/mute.pid; exec >&- 2>&-; exec sleep 30",
    }
    pids = tmp_path / "pids"
    pids.mkdir()
    for name, body in cases.items():
        _helper(helpers, name, body.replace("{pids}", str(pids)))
    config = tmp_path / "config.json"
    before = open_fds()
    for name in cases:
        _config(config, {"credsStore": name})
        with anyio.fail_after(GUARD), pytest.raises(errors.FailedPrecondition):
            await configured_credentials("reg.example", config, limit=0.5)
    mute = int((pids / "mute.pid").read_text())
    assert await _gone(mute), "a helper that went quiet was left running"
    assert open_fds() == before


@pytest.mark.asyncio
async def test_odd_helper_names_run_nothing(tmp_path: Path, helpers: Path) -> None:
    from supervisor.images._auth import configured_credentials

    marker = tmp_path / "ran"
    # Each would be a runnable file if the name were taken as a path piece.
    _helper(helpers, "x", f"touch {marker}")
    config = tmp_path / "config.json"
    for bad in ("../bin/docker-credential-x", "x/../x", "-x", ".x", "x\n", "x ", "é", "x;x"):
        _config(config, {"credsStore": bad})
        with pytest.raises(errors.InvalidArgument):
            await configured_credentials("reg.example", config)
    # A name that passes the check but names no program is FailedPrecondition.
    _config(config, {"credsStore": "y" * 5000})
    with pytest.raises(errors.FailedPrecondition, match="not on PATH"):
        await configured_credentials("reg.example", config)
    assert not marker.exists()


@pytest.mark.asyncio
async def test_configs_that_are_not_configs_mean_no_credentials(tmp_path: Path) -> None:
    from supervisor.images._auth import configured_credentials

    auth = {"auths": {"reg.example": {"auth": "Ym9iOnNlY3JldA=="}}}
    good = _config(tmp_path / "good.json", auth)
    # Wrong types for the helper keys fall back to auths, as docker does.
    for extra in ({"credHelpers": ["x"]}, {"credHelpers": {"reg.example": 5}}, {"credsStore": 5}):
        path = _config(tmp_path / "typed.json", {**auth, **extra})
        found = await configured_credentials("reg.example", path)
        assert found is not None and found.username == "bob"
    assert (await configured_credentials("reg.example", good)) is not None

    not_json = tmp_path / "not.json"
    not_json.write_bytes(b"\xff\xfe{]")
    loop = tmp_path / "loop.json"
    loop.symlink_to(loop)
    huge = tmp_path / "huge.json"
    huge.write_text(" " * (2 << 20) + json.dumps(auth))
    for path in (not_json, tmp_path, loop, tmp_path / "absent.json", huge):
        assert await configured_credentials("reg.example", path) is None


@pytest.mark.asyncio
async def test_cancelled_at_any_point_the_helper_is_killed_and_no_fd_is_left(
    tmp_path: Path, helpers: Path
) -> None:
    from supervisor.images._auth import configured_credentials

    pids = tmp_path / "pids"
    pids.mkdir()
    _helper(helpers, "slow", f"echo $$ > {pids}/$$.pid; exec sleep 30")
    config = _config(tmp_path / "config.json", {"credsStore": "slow"})
    before = open_fds()
    for delay in (0, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2):
        with anyio.fail_after(GUARD), anyio.move_on_after(delay) as scope:
            await configured_credentials("reg.example", config, limit=20)
        assert scope.cancelled_caught
    for pidfile in pids.iterdir():
        # The pid is in the name: a helper killed between the shell's open of
        # the file and its echo leaves the file empty.
        assert await _gone(int(pidfile.name.removesuffix(".pid"))), pidfile.name
    assert open_fds() == before


@pytest.mark.asyncio
async def test_a_helper_answering_deeply_nested_json_is_failed_precondition(
    tmp_path: Path, helpers: Path
) -> None:
    from supervisor.images._auth import configured_credentials

    _helper(helpers, "deep", "head -c 200000 /dev/zero | tr '\\0' '['")
    config = _config(tmp_path / "config.json", {"credsStore": "deep"})
    with pytest.raises(errors.FailedPrecondition):
        await configured_credentials("reg.example", config)


@pytest.mark.asyncio
async def test_a_deeply_nested_config_is_no_config(tmp_path: Path) -> None:
    from supervisor.images._auth import configured_credentials, docker_config_credentials

    config = tmp_path / "config.json"
    config.write_text("[" * 200_000)
    assert docker_config_credentials("reg.example", config) is None
    assert await configured_credentials("reg.example", config) is None


@pytest.mark.asyncio
async def test_a_fifo_config_does_not_block_the_event_loop(tmp_path: Path) -> None:
    from supervisor.images._auth import configured_credentials

    config = tmp_path / "config.json"
    os.mkfifo(config)
    done = threading.Event()
    rescued: list[bool] = []

    def rescue() -> None:
        # Never lets the test hang: after a bound, keep becoming the writer
        # that unblocks a blocking open() (the config is read more than once
        # per call), and say so.
        if done.wait(3.0):
            return
        rescued.append(True)
        while not done.is_set():
            try:
                os.close(os.open(config, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass  # ENXIO: no reader yet
            done.wait(0.01)

    thread = threading.Thread(target=rescue, daemon=True)
    thread.start()
    try:
        with anyio.move_on_after(1.0):
            await configured_credentials("reg.example", config)
    finally:
        done.set()
        thread.join()
    assert not rescued, "open() of the FIFO blocked the event loop"


@pytest.mark.asyncio
async def test_a_helper_child_holding_the_pipes_is_not_left_running(
    tmp_path: Path, helpers: Path
) -> None:
    from supervisor.images._auth import configured_credentials

    pidfile = tmp_path / "child.pid"
    _helper(
        helpers,
        "forks",
        f"sleep 30 & echo $! > {pidfile}\n"
        """echo '{"Username":"u","Secret":"s"}'""",
    )
    config = _config(tmp_path / "config.json", {"credsStore": "forks"})
    try:
        with anyio.fail_after(GUARD):
            try:
                await configured_credentials("reg.example", config, limit=0.5)
            except errors.FailedPrecondition:
                pass  # not answering in time is fair; leaving the child is not
        child = int(pidfile.read_text())
        assert await _gone(child), "the helper's child still runs"
    finally:
        if pidfile.exists():
            _kill(int(pidfile.read_text()))


@pytest.mark.asyncio
async def test_a_helper_found_only_in_the_current_directory_is_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisor.images._auth import configured_credentials

    marker = tmp_path / "ran"
    work = tmp_path / "work"
    work.mkdir()
    _helper(work, "planted", f"""echo ran > {marker}; echo '{{"Username":"u","Secret":"s"}}'""")
    config = _config(tmp_path / "config.json", {"credsStore": "planted"})
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(work)
    for path in (f"{empty}:", f"{empty}:.", f"{empty}::/nonexistent"):
        monkeypatch.setenv("PATH", path)
        with anyio.fail_after(GUARD), pytest.raises(errors.FailedPrecondition):
            await configured_credentials("reg.example", config)
    assert not marker.exists()


@pytest.mark.asyncio
async def test_a_docker_hub_helper_entry_is_found_as_docker_keys_it(
    tmp_path: Path, helpers: Path
) -> None:
    from supervisor.images._auth import Credentials, configured_credentials

    _helper(
        helpers,
        "hub",
        'read server; [ "$server" = https://index.docker.io/v1/ ] || exit 1\n'
        """echo '{"Username":"hubuser","Secret":"pw"}'""",
    )
    config = _config(
        tmp_path / "config.json", {"credHelpers": {"https://index.docker.io/v1/": "hub"}}
    )
    assert await configured_credentials("docker.io", config) == Credentials("hubuser", "pw")


@pytest.mark.asyncio
async def test_a_nan_limit_is_refused_with_a_library_error(tmp_path: Path, helpers: Path) -> None:
    from supervisor.images._auth import configured_credentials

    _helper(helpers, "ok", """echo '{"Username":"u","Secret":"s"}'""")
    config = _config(tmp_path / "config.json", {"credsStore": "ok"})
    with anyio.fail_after(GUARD), pytest.raises(errors.SupervisorError):
        await configured_credentials("reg.example", config, limit=float("nan"))


# -- 2. archive links ---------------------------------------------------------------

_Member = tuple[str, str, "bytes | str | None"]


def _archive(path: Path, members: list[_Member]) -> Path:
    """``(name, kind, payload)``: kind ``f`` a file (payload its bytes), ``d``
    a directory, ``s``/``h`` a symbolic/hard link (payload its target)."""
    with tarfile.open(path, "w") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "f":
                assert isinstance(payload, bytes)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            if kind == "d":
                info.type = tarfile.DIRTYPE
            else:
                assert isinstance(payload, str)
                info.type = tarfile.SYMTYPE if kind == "s" else tarfile.LNKTYPE
                info.linkname = payload
            tar.addfile(info)
    return path


def _read_all(path: Path) -> dict[str, bytes]:
    from supervisor.images._tar import Archive

    archive = Archive.open(str(path))
    try:
        return {name: b"".join(archive.chunks(name)) for name in sorted(archive.files)}
    finally:
        archive.close()


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ([("a", "s", "a")], "not a file of the archive"),
        ([("a", "h", "a")], "not a file of the archive"),
        ([("a", "s", "b"), ("b", "s", "a")], "not a file of the archive"),
        ([("x", "f", b"1"), ("a", "s", "x"), ("a", "f", b"2")], "appears twice"),
        ([("x", "f", b"1"), ("./x", "s", "x")], "appears twice"),
        ([("real/x", "f", b"X"), ("d", "s", "real"), ("l", "s", "d/x")], "not a file"),
        ([("a/l", "s", "/etc/passwd")], "absolute"),
        ([("a/l", "s", "//etc/passwd")], "absolute"),
        ([("a/l", "h", "/etc/passwd")], "absolute"),
        ([("a/x", "f", b"X"), ("a/l", "s", "../../a/x")], "out of the archive"),
        ([("a/l", "h", "../outside")], "climbs"),
        ([("a/x", "f", b"X"), ("a/l", "s", "..\\x")], "bad member name"),
        ([("a/l", "s", "")], "not a file"),
        ([("a/l", "s", ".")], "not a file"),
        ([("d/x", "d", None), ("d/l", "s", "x")], "not a file"),
    ],
)
def test_links_that_name_no_regular_member_refuse_the_archive(
    tmp_path: Path, members: list[_Member], words: str
) -> None:
    with pytest.raises(errors.InvalidArgument, match=words):
        _read_all(_archive(tmp_path / "a.tar", members))


def test_links_read_as_their_regular_target_whatever_the_spelling(tmp_path: Path) -> None:
    got = _read_all(
        _archive(
            tmp_path / "a.tar",
            [
                ("early", "h", "d/x"),  # a hard link to a member that comes later
                ("d/x", "f", b"X"),
                ("d/dot", "s", ".//x"),
                ("d/slash", "s", "x/"),
                ("d/back", "s", "../d/x"),
                ("d/dir", "d", None),  # a directory next to a link of that name
                ("d/dir", "s", "x"),
            ],
        )
    )
    assert got == {n: b"X" for n in ("d/back", "d/dir", "d/dot", "d/slash", "d/x", "early")}


def test_nothing_outside_the_archive_is_ever_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"outside")
    inner = tmp_path / "inner"
    inner.mkdir()
    # The archive sits next to the secret: a link resolved on the file
    # system instead of among the members would find it.
    for target in ("../secret", str(secret), "secret"):
        for kind in ("s", "h"):
            path = _archive(inner / "a.tar", [("f", "f", b"in"), ("l", kind, target)])
            with pytest.raises(errors.InvalidArgument):
                _read_all(path)


def test_links_count_against_the_member_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisor.images import _tar

    monkeypatch.setattr(_tar, "MAX_MEMBERS", 10)
    members: list[_Member] = [("f", "f", b"x")] + [(f"l{i}", "s", "f") for i in range(9)]
    assert len(_read_all(_archive(tmp_path / "ok.tar", members))) == 10
    members.append(("l9", "s", "f"))
    with pytest.raises(errors.InvalidArgument, match="more than 10 members"):
        _read_all(_archive(tmp_path / "many.tar", members))


def test_a_layer_named_many_times_is_hashed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from supervisor.images import _archive_plan as archive_module
    from supervisor.images._tar import Archive
    from supervisor.oci._platform import host_platform

    layer = b"L" * 4096
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    times = 40
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
         "diff_ids": [diff_id] * times}}
    ).encode()  # fmt: skip
    paths = [f"{i:064x}/layer.tar" for i in range(times)]
    manifest = [{"Config": "config.json", "RepoTags": ["many:1"], "Layers": paths}]
    members: list[_Member] = [(paths[0], "f", layer)]
    members += [(p, "s", f"../{paths[0]}") for p in paths[1:]]
    members += [("config.json", "f", config), ("manifest.json", "f", json.dumps(manifest).encode())]
    path = _archive(tmp_path / "many.tar", members)

    reads: list[str] = []
    real_chunks = Archive.chunks

    def counting(self: Archive, name: str) -> Iterator[bytes]:
        reads.append(name)
        return real_chunks(self, name)

    monkeypatch.setattr(Archive, "chunks", counting)
    archive = Archive.open(str(path))
    try:
        plan = archive_module.plan_archive(archive, None, host_platform())
    finally:
        archive.close()
    assert len(plan.blobs) == 3  # the layer, the config, the manifest
    assert len(reads) == 1, f"the layer was read {len(reads)} times"


# -- 3. metrics through the wire view -----------------------------------------------


def _vi(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, kind: int) -> bytes:
    return _vi(number << 3 | kind)


def _ld(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _vi(len(payload)) + payload


def _hostile(cls: Any, rng: random.Random, depth: int = 0) -> bytes:
    """A message of ``cls``'s shape with hostile twists: wrong wire types,
    unknown and invalid field numbers, 10-byte and overlong varints, packed
    and unpacked repeats, strings that are not UTF-8, duplicated fields."""
    meta = getattr(cls, "_betterproto")  # noqa: B009
    items = list(meta.meta_by_field_name.items())
    out = b""
    for _ in range(rng.randint(0, 8)):
        if rng.random() < 0.1:
            number, field, name = rng.choice([0, 99, (1 << 29) - 1]), None, ""
        else:
            name, field = rng.choice(items)
            number = field.number
        kind = rng.choice([0, 1, 2, 3, 4, 5, 6, 7]) if rng.random() < 0.25 else None
        payload: bytes | None = None
        if field is not None and kind is None:
            if field.proto_type == "message":
                kind = 2
                payload = _hostile(meta.cls_by_field[name], rng, depth + 1) if depth < 4 else b""
            elif field.proto_type == "string":
                kind = 2
                payload = rng.choice([b"", b"Read", b"Write", b"\xff", "é".encode(), b"\xc3"])
            elif field.repeated and rng.random() < 0.5:
                kind = 2
                payload = b"".join(
                    _vi(rng.choice([0, 1, (1 << 64) - 1, 1 << 32, rng.getrandbits(64)]))
                    for _ in range(rng.randint(0, 3))
                )
                if rng.random() < 0.1:
                    payload += b"\xff"  # a truncated varint
            else:
                kind = 0
        kind = 0 if kind is None else kind
        key = _key(number, kind)
        if kind == 0:
            value = rng.choice([0, 1, (1 << 64) - 1, 1 << 63, (1 << 32) - 1, rng.getrandbits(64)])
            encoded = _vi(value)
            if rng.random() < 0.05:
                encoded = b"\xff" * 9 + bytes([rng.randint(0, 127)])
            out += key + encoded
        elif kind == 1:
            out += key + rng.getrandbits(64).to_bytes(8, "little")
        elif kind == 5:
            out += key + rng.getrandbits(32).to_bytes(4, "little")
        elif kind == 2:
            if payload is None:
                payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 6)))
            out += key + _vi(len(payload)) + payload
        else:
            out += key
    if rng.random() < 0.2 and out:
        mutated = bytearray(out)
        for _ in range(rng.randint(1, 3)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        out = bytes(mutated)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_hostile_metrics_are_malformed_or_read_as_betterproto2_reads_them(seed: int) -> None:
    rng = random.Random(seed)
    for i in range(1500):
        cls, decode, stats = (
            (pb_cg1.Metrics, decode_v1, stats_v1)
            if i % 2
            else (pb_cg2.Metrics, decode_v2, stats_v2)
        )
        data = _hostile(cls, rng)
        try:
            viewed = decode(data)
        except MalformedReply:
            continue  # anything else propagates and fails the test
        # Agreement with betterproto2 on the bytes it writes itself is
        # test_message_view's; on these, protobuf merges a message sent twice
        # and skips a field of another wire type, which betterproto2 does
        # not (and re-encoding its parse of them can take it minutes).
        assert viewed is not None


# Bytes betterproto2 takes that protobuf does not (or reads wrongly): the view
# refuses them, which is the contract (MalformedReply only). The second value
# is what betterproto2 makes of Metrics.pids, to show its leniency.
_PIDS = 2  # Metrics.pids (v1 and v2)


@pytest.mark.parametrize(
    ("data", "betterproto2_current"),
    [
        # A 10-byte varint whose last byte is 2 (past 64 bits): betterproto2
        # reads 2**63 - 1; protobuf calls it an overflow.
        (_ld(_PIDS, _key(1, 0) + b"\xff" * 9 + b"\x02"), (1 << 63) - 1),
        # Field number 0 and the reserved wire types: betterproto2 skips them.
        (_key(0, 0) + b"\x00", None),
        (_key(1, 6), None),
        (_key(1, 7), None),
        # A group (wire type 3/4) is refused too, though protobuf would skip
        # an unknown one: containerd's messages have none.
        (_key(1, 3) + _key(1, 4), None),
    ],
)
def test_what_betterproto2_wrongly_takes_is_malformed(
    data: bytes, betterproto2_current: Any
) -> None:
    pids = pb_cg1.Metrics.parse(data).pids
    assert (pids if betterproto2_current is None else pids.current) == betterproto2_current
    with pytest.raises(MalformedReply):
        decode_v1(data)
    with pytest.raises(MalformedReply):
        decode_v2(data)


def test_explicit_defaults_packing_and_wide_varints_read_as_protobuf_says() -> None:
    per_cpu = 4  # CpuUsage.per_cpu, repeated uint64
    zeros = _ld(_PIDS, _key(1, 0) + b"\x00" + _key(2, 0) + b"\x00")
    assert decode_v1(zeros).pids == stats_v1(pb_cg1.Metrics.parse(zeros)).pids
    # -1 as a 10-byte varint in a uint64 field: 2**64 - 1, and v1's pids
    # limit 0 means "max" (None) whatever else.
    wide = _ld(_PIDS, _key(1, 0) + _vi((1 << 64) - 1))
    assert decode_v1(wide).pids.current == (1 << 64) - 1
    mixed = _ld(3, _ld(1, _key(per_cpu, 0) + b"\x01" + _ld(per_cpu, b"\x02\x03")))
    assert decode_v1(mixed).cpu.per_cpu_usage == (1, 2, 3)
    # A uint32 (RdmaEntry.hca_handles) sent as a 10-byte varint keeps 32 bits.
    from supervisor.backends._message_view import view

    rdma = _key(2, 0) + _vi((1 << 64) - 1)
    assert view(pb_cg1.RdmaEntry, rdma).hca_handles == (1 << 32) - 1
    assert pb_cg1.RdmaEntry.parse(rdma).hca_handles == (1 << 32) - 1


def test_a_message_field_sent_twice_is_merged() -> None:
    data = _ld(_PIDS, _key(1, 0) + b"\x05") + _ld(_PIDS, _key(2, 0) + b"\x07")
    # betterproto2 is just as wrong: the view is not worse than the parse it replaced.
    assert stats_v1(pb_cg1.Metrics.parse(data)).pids == PidsStats(current=0, limit=7)
    assert decode_v1(data).pids == PidsStats(current=5, limit=7)


def test_a_number_sent_as_fixed_width_is_not_taken_as_the_number() -> None:
    for data in (
        _ld(_PIDS, _key(1, 1) + (5).to_bytes(8, "little")),
        _ld(_PIDS, _key(1, 5) + (5).to_bytes(4, "little")),
    ):
        try:
            stats = decode_v1(data)
        except MalformedReply:
            continue
        assert stats.pids.current == 0, data.hex()


# -- 4. loading tasks: attach, shared stdio -----------------------------------------


async def _leave_with_execs(
    fake: FakeTransport, state_dir: Path, cid: str, *execs: str
) -> FakeTransport:
    """A first run leaves a started task with started execs; the next run's
    connection."""
    async with connect(fake, state_dir) as first:
        container = await first.new_container(cid, spec())
        task = await container.new_task()
        await task.start()
        for exec_id in execs:
            await (await task.exec(exec_id, ["sleep", "60"])).start()
    return fake.controls.reopen()


async def _end(fake: FakeTransport, client: supervisor.Client, cid: str, *execs: str) -> None:
    for exec_id in execs:
        fake.controls.exit(cid, exec_id)
    fake.controls.exit(cid)
    container = await client.load_container(cid)
    task = await container.task(attach=False)
    for proc in list(task.execs.values()):
        await proc.delete()
    await task.delete()
    await container.delete()


@pytest.mark.asyncio
async def test_concurrent_restores_share_one_set_of_fds(
    fake: FakeTransport, state_dir: Path
) -> None:
    again = await _leave_with_execs(fake, state_dir, "c", "e1")
    async with connect(again, state_dir) as client:
        before = open_fds()
        results: list[list[tuple[supervisor.Container, supervisor.Task | None]]] = []

        async def restore() -> None:
            results.append(await client.restore())

        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(restore)
        tasks = [r[0][1] for r in results]
        assert all(t is not None for t in tasks)
        assert len(open_fds() - before) == 4  # stdout and stderr of two processes
        first = tasks[0]
        assert first is not None
        for t in tasks[1:]:
            assert t is not None
            assert t.stdout is first.stdout
            assert t.execs["e1"].stdout is first.execs["e1"].stdout
        await _end(again, client, "c", "e1")
        assert open_fds() == before
    assert fifo_files(state_dir) == []


@pytest.mark.asyncio
async def test_attaching_after_a_delete_through_another_object_opens_nothing(
    fake: FakeTransport, state_dir: Path
) -> None:
    again = await _leave_with_execs(fake, state_dir, "c", "e1")
    async with connect(again, state_dir) as client:
        before = open_fds()
        ((looker, detached),) = await client.restore(attach=False)
        ((_, owner),) = await client.restore()
        assert detached is not None and owner is not None
        again.controls.exit("c", "e1")
        again.controls.exit("c")
        await owner.execs["e1"].delete()
        await owner.delete()
        assert open_fds() == before and fifo_files(state_dir) == []
        # The look-only objects attach later: their files are gone, so nothing opens.
        assert await looker.task() is detached
        assert open_fds() == before
        for proc in (detached, detached.execs["e1"]):
            with pytest.raises(errors.FailedPrecondition):
                proc.stdout  # noqa: B018
        with pytest.raises(errors.NotFound):
            await detached.execs["e1"].delete()
        with pytest.raises(errors.NotFound):
            await detached.delete()
        assert open_fds() == before
        await looker.delete()
    assert fifo_files(state_dir) == []


@pytest.mark.asyncio
async def test_a_stale_look_only_task_never_touches_a_new_task_of_the_same_id(
    fake: FakeTransport, state_dir: Path
) -> None:
    again = await _leave_with_execs(fake, state_dir, "c", "e1")
    async with connect(again, state_dir) as client:
        ((looker, stale),) = await client.restore(attach=False)
        assert stale is not None
        other = await client.load_container("c")
        old = await other.task()
        again.controls.exit("c", "e1")
        again.controls.exit("c")
        await old.execs["e1"].delete()
        await old.delete()
        # A new instance under the same ids, with FIFOs of its own.
        fresh = await other.new_task()
        await fresh.start()
        fresh_exec = await fresh.exec("e1", ["sleep", "60"])
        await fresh_exec.start()
        files, fds = fifo_files(state_dir), open_fds()
        assert await looker.task() is stale  # cached, and attaching finds nothing of it
        assert fifo_files(state_dir) == files and open_fds() == fds
        with pytest.raises(errors.FailedPrecondition):
            stale.stdout  # noqa: B018
        # The fresh processes' stdio still works end to end.
        for proc in (fresh, fresh_exec):
            stdout_path = proc._fifos.stdout_path  # type: ignore[union-attr]
            writer = os.open(stdout_path, os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(writer, b"fresh\n")
            finally:
                os.close(writer)
            with anyio.fail_after(GUARD):
                assert await proc.stdout.receive() == b"fresh\n"
        await _end(again, client, "c", "e1")
    assert fifo_files(state_dir) == []


@pytest.mark.asyncio
async def test_a_look_only_delete_removes_only_its_own_files(
    fake: FakeTransport, state_dir: Path
) -> None:
    again = await _leave_with_execs(fake, state_dir, "c", "e1", "e2")
    async with connect(again, state_dir) as client:
        ((container, task),) = await client.restore(attach=False)
        assert task is not None
        bundle = container.bundle_dir
        # Another client of this state dir is making an exec e1 again: its
        # files exist before containerd knows it.
        foreign = [bundle / f"exec.e1.0123abcd-{s}" for s in ("stdout", "stderr")]
        for path in foreign:
            os.mkfifo(path, 0o600)
        keep = {p for p in fifo_files(state_dir) if "exec.e1." not in p.name} | set(foreign)
        again.controls.exit("c", "e1")
        await task.execs["e1"].delete()
        assert set(fifo_files(state_dir)) == keep
        for path in foreign:
            path.unlink()
        await _end(again, client, "c", "e2")
    assert fifo_files(state_dir) == []


@pytest.mark.asyncio
async def test_a_restore_while_a_delete_runs_leaves_no_fd_and_no_file(
    fake: FakeTransport, state_dir: Path
) -> None:
    again = await _leave_with_execs(fake, state_dir, "c")
    async with connect(again, state_dir) as client:
        before = open_fds()
        ((container, owner),) = await client.restore()
        assert owner is not None
        again.controls.exit("c")
        gate = again.controls.hold("delete_task")
        restored: list[supervisor.Task | None] = []
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(owner.delete)
                await gate.wait()
                ((_, late),) = await client.restore()  # still listed: shares the set
                restored.append(late)
                gate.release()
        (late,) = restored
        assert late is not None
        assert open_fds() == before
        with pytest.raises(errors.NotFound):
            await late.delete()
        await container.delete()
        assert open_fds() == before
    assert fifo_files(state_dir) == []


@pytest.mark.asyncio
async def test_a_restore_after_closing_stdout_reads_the_output(
    client: supervisor.Client, fake: FakeTransport
) -> None:
    container = await client.new_container("c", spec())
    task = await container.new_task()
    await task.start()
    stdout_path = task._fifos.stdout_path  # type: ignore[union-attr]
    await task.stdout.aclose()  # this reader is done (say, `async with task.stdout:`)
    ((_, restored),) = await client.restore()
    assert restored is not None
    writer = os.open(stdout_path, os.O_RDWR)  # as the shim writes
    try:
        os.write(writer, b"later\n")
        with anyio.fail_after(GUARD):
            assert await restored.stdout.receive() == b"later\n"
    finally:
        os.close(writer)
        fake.controls.exit("c")
        await restored.delete()
        await container.delete()


@pytest.mark.asyncio
async def test_a_restore_racing_a_task_creation_shares_the_creators_stdio(
    client: supervisor.Client, fake: FakeTransport
) -> None:
    container = await client.new_container("c", spec())
    # containerd made it; the reply is on its way
    gate = fake.controls.hold("create_task", after=True)
    made: list[supervisor.Task] = []

    async def create() -> None:
        made.append(await container.new_task())

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(create)
            await gate.wait()
            ((_, restored),) = await client.restore()
            gate.release()
    (task,) = made
    try:
        assert restored is not None
        assert restored.stdout is task.stdout
    finally:
        await task.delete(force=True)
        await container.delete()


# -- 5. the command's escaping ------------------------------------------------------


def test_printable_escapes_every_control_and_table_cells_too() -> None:
    from supervisor.cli._format import printable, table

    controls = "".join(map(chr, [*range(0x20), *range(0x7F, 0xA0)]))
    shown = printable(controls)
    assert not any(ch in shown for ch in controls)
    assert shown.count("\\x") == len(controls)
    text = table(["A\x1b"], [["\x9b2J"], [None]])
    assert "\x1b" not in text and "\x9b" not in text and "\\x9b2J" in text


def test_error_lines_on_stderr_never_carry_control_sequences() -> None:
    from supervisor.cli._errors import describe

    hostile = "\x1b]0;pwned\x07\x9b2J"
    for exc in (
        errors.Unknown(f"failed to start shim: invalid runtime name {hostile}"),
        errors.FailedPrecondition(f"image archive refused: {hostile}/x is not the content"),
        errors.Unavailable(f"gone {hostile}"),
    ):
        line = describe(exc, "/run/x.sock")
        assert not any(ch in line for ch in "\x1b\x07\x9b"), repr(line)


def test_printable_text_is_always_encodable() -> None:
    from supervisor.cli._format import printable, table

    for text in (printable("sh \ud800"), table(["COMMAND"], [["sh \udcff"]])):
        text.encode("utf-8")


def test_a_number_sent_length_delimited_is_an_unknown_field() -> None:
    # PidsStat.current (uint64) sent as a length-delimited field: protobuf
    # skips it as unknown (betterproto2 gives current=[5], a list).
    data = _ld(_PIDS, _key(1, 2) + b"\x01\x05")
    assert pb_cg1.Metrics.parse(data).pids.current == [5]
    assert decode_v1(data).pids.current == 0
