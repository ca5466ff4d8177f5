"""User namespaces end to end: a remapped container's stdio works (also when
a program reopens /dev/stdout), its root is host uid 100000, execs get the
same treatment, and a spec whose root is unmapped is refused up front."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import supervisor
from supervisor import errors
from tests._containerd import short_tmpdir
from tests.integration.conftest import fifo_files

pytestmark = pytest.mark.asyncio

HOST = 100000


@pytest.fixture(scope="module")
def remapped_rootfs(rootfs: str) -> Iterator[str]:
    """A copy of the busybox rootfs owned by the remapped root, where that
    root can reach it (pytest's own temporary directories are 0700)."""
    base = short_tmpdir("sv-userns-")
    os.chmod(base, 0o755)
    target = base / "rootfs"
    subprocess.run(["cp", "-a", rootfs, str(target)], check=True)
    subprocess.run(["chown", "-R", f"{HOST}:{HOST}", str(target)], check=True)
    yield str(target)
    shutil.rmtree(base, ignore_errors=True)


def userns_spec(args: list[str], rootfs: str, **mappings: Any) -> dict[str, Any]:
    spec = supervisor.default_spec(args, rootfs)
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["linux"]["uidMappings"] = mappings.get(
        "uid", [{"containerID": 0, "hostID": HOST, "size": 65536}]
    )
    spec["linux"]["gidMappings"] = mappings.get(
        "gid", [{"containerID": 0, "hostID": HOST, "size": 65536}]
    )
    return spec


def host_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


async def test_reopened_stdio_reaches_the_caller_and_root_is_remapped(
    client: supervisor.Client, remapped_rootfs: str
) -> None:
    script = "echo hi > /dev/stdout; echo err > /dev/stderr; id -u; sleep 30"
    async with client.running("remapped", userns_spec(["sh", "-c", script], remapped_rootfs)) as t:
        lines = t.aiter_lines()
        with anyio.fail_after(20):
            assert await lines.__anext__() == "hi"
            assert await lines.__anext__() == "0"
            assert await t.stderr.receive() == b"err\n"  # type: ignore[union-attr]
        assert host_uid(t.pid) == HOST
        proc = await t.exec(None, ["sh", "-c", "echo x > /dev/stdout; echo y >/dev/stderr; id -u"])
        await proc.start()
        out, err = await proc.communicate()
        assert (out, err) == (b"x\n0\n", b"y\n")
        await proc.delete()


async def test_state_dir_under_a_private_parent_still_works(
    containerd_address: str, namespace: str, tmp_path: Path, remapped_rootfs: str
) -> None:
    parent = tmp_path / "private"
    parent.mkdir(mode=0o700)
    os.chmod(parent, 0o700)
    state = parent / "state"
    async with supervisor.connect(containerd_address, namespace=namespace, state_dir=state) as c:
        result = await c.run(
            "deep", userns_spec(["sh", "-c", "echo ok > /dev/stdout"], remapped_rootfs)
        )
    assert (result.exit_code, result.stdout) == (0, b"ok\n")
    assert fifo_files(state) == []


@pytest.mark.parametrize(
    ("mappings", "words"),
    [
        ({"uid": [{"containerID": 1, "hostID": HOST, "size": 10}]}, "container id 0"),
        ({"gid": []}, "container id 0"),
        (
            {
                "uid": [
                    {"containerID": 0, "hostID": HOST, "size": 100},
                    {"containerID": 50, "hostID": 300000, "size": 100},
                ]
            },
            "overlap",
        ),
        (
            {
                "uid": [
                    {"containerID": 0, "hostID": HOST, "size": 100},
                    {"containerID": 100, "hostID": HOST + 50, "size": 100},
                ]
            },
            "overlap",
        ),
        ({"uid": [{"containerID": 0, "hostID": HOST, "size": 0}]}, "empty"),
    ],
)
async def test_unmapped_or_overlapping_mappings_are_refused_before_anything_is_made(
    client: supervisor.Client, rootfs: str, state_dir: Path, mappings: Any, words: str
) -> None:
    with pytest.raises(errors.InvalidArgument, match=words):
        await client.new_container("badmap", userns_spec(["true"], rootfs, **mappings))
    assert await client.containers() == []
    assert not any(state_dir.glob("*/badmap"))


async def test_callers_own_io_ids_win(client: supervisor.Client, remapped_rootfs: str) -> None:
    # With io_uid/io_gid of host root the pipes stay root's: the remapped root
    # cannot reopen them, which shows the caller's options were kept.
    result = await client.run(
        "ownio",
        userns_spec(["sh", "-c", "echo hi > /dev/stdout"], remapped_rootfs),
        runtime_options={"io_uid": 0, "io_gid": 0},
    )
    assert result.exit_code != 0 and b"Permission denied" in result.stderr
