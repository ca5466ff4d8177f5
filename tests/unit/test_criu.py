"""The CRIU checks made before a checkpoint or restore changes anything, and
CRIU's own reason read from its log when runc says only "criu failed"."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import supervisor
from supervisor import errors
from supervisor.domain import _criu
from tests.unit.conftest import spec


def _fake(directory: Path, script: str) -> str:
    path = directory / "criu"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH and the sbin directories reduced to one empty directory."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(_criu, "_SBIN", (str(tmp_path / "sbin"),))
    monkeypatch.setattr(_criu, "_passed", set())
    return tmp_path


@pytest.mark.asyncio
async def test_no_criu_is_named(only: Path) -> None:
    with pytest.raises(errors.FailedPrecondition, match="need CRIU, which is not installed"):
        await _criu.criu_ready(5, container_id="c")


@pytest.mark.asyncio
@pytest.mark.skipif(os.geteuid() != 0, reason="criu check is run as root only")
async def test_a_failing_check_gives_its_reason_and_is_asked_again(only: Path) -> None:
    _fake(only, 'echo "Error (criu/vdso.c:229): vdso: Unexpected rt vDSO area bounds" >&2; exit 1')
    for _ in range(2):
        with pytest.raises(errors.FailedPrecondition) as caught:
            await _criu.criu_ready(5, container_id="c")
        assert "`criu check` failed" in str(caught.value)
        assert "Unexpected rt vDSO area bounds" in str(caught.value)
        assert caught.value.container_id == "c"
    assert _criu._passed == set()


@pytest.mark.asyncio
@pytest.mark.skipif(os.geteuid() != 0, reason="criu check is run as root only")
async def test_a_passing_check_is_remembered(only: Path) -> None:
    marker = only / "asked"
    criu = _fake(only, f'echo asked >> "{marker}"; echo "Looks good."')
    await _criu.criu_ready(5)
    await _criu.criu_ready(5)
    assert marker.read_text() == "asked\n"
    assert _criu._passed == {criu}


@pytest.mark.asyncio
@pytest.mark.skipif(os.geteuid() != 0, reason="criu check is run as root only")
async def test_a_check_that_hangs_is_bounded(only: Path) -> None:
    _fake(only, "exec /bin/sleep 30")
    with pytest.raises(errors.FailedPrecondition, match="did not finish within 0.2s"):
        await _criu.criu_ready(0.2)


def test_criu_failure_quotes_criu_log(tmp_path: Path) -> None:
    log = tmp_path / "criu-dump.log"
    log.write_text(
        "(00.001) Warn (criu/kerndat.c:1): nothing\n"
        "(00.002) Error (criu/mount.c:1): mnt: Mount 42 ./proc/fs has unreachable sharing\n"
        "(00.003) Error (criu/cr-dump.c:2): Dumping FAILED.\n"
    )
    runc = errors.Unknown(
        "runc did not terminate successfully: exit status 1: criu failed: type DUMP "
        f"errno 0 path= {log}: unknown"
    )
    failure = _criu.criu_failure(runc, "dump the task", container_id="c")
    assert isinstance(failure, errors.FailedPrecondition)
    assert str(failure).startswith("CRIU could not dump the task: ")
    assert "unreachable sharing" in str(failure) and "Dumping FAILED" in str(failure)
    assert "Warn" not in str(failure)
    # No log to read: runc's words; not CRIU's failure at all: left as it was.
    gone = errors.Unknown(f"criu failed: type DUMP errno 0 path= {tmp_path}/gone.log: x")
    assert "criu failed" in str(_criu.criu_failure(gone, "dump the task", container_id="c"))
    other = errors.NotFound("no such task")
    assert _criu.criu_failure(other, "dump the task", container_id="c") is other


@pytest.mark.asyncio
async def test_on_the_fake_a_checkpoint_is_refused_before_anything(
    client: supervisor.Client,
) -> None:
    # Without containerd's content store there is nowhere to put one; a
    # terminal is refused first, by what the spec says.
    container = await client.new_container("tty", spec(["sh"], terminal=True))
    task = await container.new_task(terminal=True)
    await task.start()
    with pytest.raises(errors.FailedPrecondition, match="terminal"):
        await task.checkpoint("tty-1")
    plain = await client.new_container("plain", spec())
    other = await plain.new_task()
    await other.start()
    with pytest.raises(errors.FailedPrecondition, match="containerd transport"):
        await other.checkpoint("plain-1")
    with pytest.raises(errors.FailedPrecondition, match="containerd transport"):
        await client.checkpoints()
    with pytest.raises(errors.InvalidArgument):
        await other.checkpoint("bad name")
    with pytest.raises(errors.InvalidArgument, match="timeout"):
        await other.checkpoint("plain-1", timeout=0)
    assert await other.status() is supervisor.ProcessState.RUNNING
    for t in (task, other):
        await t.delete(force=True)
