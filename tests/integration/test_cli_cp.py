"""``supervisor cp`` both ways, as docker cp: into a running container, out
of it into a directory or as a new name, through a tar on stdin/stdout; a
hostile tar coming out of a container lands nowhere but the destination."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

import supervisor
from tests.integration.cli_runner import Cli

pytestmark = pytest.mark.asyncio


async def _detached(cli: Cli, cid: str) -> None:  # noqa: F811
    code, _, err = await cli(
        "run", "-d", "--name", cid, "--rootfs", cli.rootfs, "--", "sleep", "60"
    )
    assert code == 0, err


async def test_cp_in_and_out(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    await _detached(cli, "cp-box")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("alpha\n")
    code, _, err = await cli("cp", str(tmp_path / "in"), "cp-box:/tmp")
    assert code == 0, err
    code, _, err = await cli("cp", str(tmp_path / "in" / "a.txt"), "cp-box:/tmp/renamed.txt")
    assert code == 0, err
    code, _, err = await cli("cp", "cp-box:/tmp/in", str(tmp_path / "out"))
    assert code == 0, err
    assert (tmp_path / "out" / "a.txt").read_text() == "alpha\n"
    code, _, err = await cli("cp", "cp-box:/tmp/renamed.txt", str(tmp_path))
    assert code == 0, err
    assert (tmp_path / "renamed.txt").read_text() == "alpha\n"
    code, out, err = await cli("cp", "cp-box:/etc/passwd", "-")
    assert code == 0, err
    with tarfile.open(fileobj=io.BytesIO(out.encode())) as tar:
        assert tar.getnames() == ["passwd"]


async def test_cp_needs_one_container_side(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    code, _, err = await cli("cp", str(tmp_path), str(tmp_path / "x"))
    assert code != 0 and "exactly one side" in err
    code, _, err = await cli("cp", "nobox:/etc", str(tmp_path))
    assert code != 0


async def test_what_comes_out_stays_in_the_destination(
    cli: Cli,
    client: supervisor.Client,
    tmp_path: Path,  # noqa: F811
) -> None:
    # A container whose files try to lead a copy out: a link to / and a
    # file through it, made inside the container.
    await _detached(cli, "cp-evil")
    container = await client.load_container("cp-evil")
    task = await container.task(attach=False)
    script = "mkdir /tmp/t && ln -s / /tmp/t/root && ln -s ../../../../.. /tmp/t/up"
    proc = await task.exec("mk", ["sh", "-c", script])
    await proc.start()
    assert (await proc.wait()).exit_code == 0
    await proc.delete()
    dest = tmp_path / "copies" / "dest"
    dest.mkdir(parents=True)
    code, _, err = await cli("cp", "cp-evil:/tmp/t", str(dest))
    assert code == 0, err
    assert (dest / "t" / "root").is_symlink() and (dest / "t" / "up").is_symlink()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["dest"]
    assert sorted(p.name for p in (dest / "t").iterdir()) == ["root", "up"]
