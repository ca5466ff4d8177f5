"""The Linux Child's stop, stack-dump and kill requests (what the Daemon asks
of a child on every platform), against a real process that reports the
signals it gets."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from supervisor.daemon._child import Child

_REPORTER = textwrap.dedent(
    """
    import signal, sys, time
    out = open(sys.argv[1], "a", buffering=1)
    def note(sig, frame):
        out.write(f"{signal.Signals(sig).name}\\n")
        if sig == signal.SIGTERM and sys.argv[2] == "polite":
            sys.exit(0)
    signal.signal(signal.SIGUSR1, note)
    signal.signal(signal.SIGTERM, note)
    out.write("ready\\n")
    while True:
        time.sleep(1)
    """
)


async def _child(tmp_path: Path, mode: str) -> tuple[Child, Path]:
    notes = tmp_path / f"{mode}.notes"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _REPORTER, str(notes), mode
    )
    with anyio.fail_after(30):
        while "ready" not in (notes.read_text() if notes.exists() else ""):
            await anyio.sleep(0.01)
    return Child(process.pid, process, os.pidfd_open(process.pid), poll=0.05), notes


async def _until_noted(notes: Path, name: str) -> None:
    with anyio.fail_after(30):
        while name not in notes.read_text().split():
            await anyio.sleep(0.01)


@pytest.mark.asyncio
async def test_dump_stacks_is_sigusr1_and_terminate_is_sigterm(tmp_path: Path) -> None:
    child, notes = await _child(tmp_path, "polite")
    child.dump_stacks()
    await _until_noted(notes, "SIGUSR1")
    assert not child.exited.is_set() and child.returncode is None  # asked, not stopped
    child.terminate()
    assert await child.wait_gone(30)
    assert notes.read_text().split() == ["ready", "SIGUSR1", "SIGTERM"]
    assert child.returncode == 0
    # Gone: asking again sends nothing and raises nothing.
    child.terminate()
    child.dump_stacks()
    child.close()


@pytest.mark.asyncio
async def test_kill_is_sigkill_for_one_that_ignores_terminate(tmp_path: Path) -> None:
    child, notes = await _child(tmp_path, "stubborn")
    child.terminate()
    await _until_noted(notes, "SIGTERM")
    assert not await child.wait_gone(0.05)
    assert await child.kill(30)
    assert child.returncode == -signal.SIGKILL
    assert await child.kill(30)  # gone already
    child.close()
