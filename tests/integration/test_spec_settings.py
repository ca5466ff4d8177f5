"""default_spec's docker-run settings in a real container."""

from __future__ import annotations

from pathlib import Path

import pytest

import supervisor

pytestmark = pytest.mark.asyncio


async def test_env_keeps_path_so_sh_is_found(client: supervisor.Client, rootfs: str) -> None:
    spec = supervisor.default_spec(["sh", "-c", "echo $FOO"], rootfs, env=["FOO=1"])
    result = await client.run("env-path", spec)
    assert (result.exit_code, result.stdout) == (0, b"1\n")


async def test_settings_reach_the_container(
    client: supervisor.Client, rootfs: str, tmp_path: Path
) -> None:
    (tmp_path / "in.txt").write_text("from the host\n")
    # Mount points that the shared rootfs has already (runc would make others in it).
    script = (
        "cat /root/in.txt; pwd; hostname;"
        " touch /root/x 2>/dev/null || echo data-ro;"
        " touch /run/x && echo tmpfs-rw;"
        " touch /x 2>/dev/null && echo root-rw; sleep 60"
    )
    spec = supervisor.default_spec(
        ["sh", "-c", script],
        rootfs,
        cwd="/tmp",
        hostname="boxed",
        mounts=[f"{tmp_path}:/root:ro", {"type": "tmpfs", "target": "/run"}],
        memory=64 << 20,
        cpus=0.5,
        pids_limit=32,
    )
    async with client.running("settings", spec) as task:
        lines = []
        async for line in task.aiter_lines():
            lines.append(line)
            if len(lines) == 5:
                break
        stats = await task.stats()
    # Not "root-rw": the root stays read-only.
    assert lines == ["from the host", "/tmp", "boxed", "data-ro", "tmpfs-rw"]
    assert stats.memory is not None and stats.memory.limit == 64 << 20
    assert stats.pids is not None and stats.pids.limit == 32


async def test_read_only_false_makes_the_root_writable(
    client: supervisor.Client, rootfs: str, tmp_path: Path
) -> None:
    import shutil

    root = tmp_path / "rootfs"
    shutil.copytree(rootfs, root, symlinks=True)
    spec = supervisor.default_spec(
        ["sh", "-c", "touch /made && echo ok"], str(root), read_only=False
    )
    result = await client.run("rw-root", spec)
    assert result.stdout == b"ok\n"
    assert (root / "made").exists()


async def test_user_sets_uid_and_gid(client: supervisor.Client, rootfs: str) -> None:
    spec = supervisor.default_spec(["sh", "-c", "id -u; id -g"], rootfs, user="1000:1001")
    assert (await client.run("user", spec)).stdout == b"1000\n1001\n"
