"""Filesystem work on the hot paths runs in worker threads: the event loop
keeps running other tasks while a (patched, blocking) filesystem call waits,
and a caller cancelled meanwhile leaves the ledger whole.

Each blocking stand-in waits on a ``threading.Event`` that only the event
loop sets: run on the loop's own thread, it would hold the loop until its
guard ran out, and the test then fails on the thread it ran on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from supervisor import _paths
from supervisor._platform import PLATFORM
from supervisor.backends.fake import FakeTransport
from supervisor.events._ledger import ExitLedger
from supervisor.stats import _summary
from supervisor.stats._summary import ProcessSummary
from tests.unit.conftest import GUARD, Recorder, connect, settle, spec

pytestmark = pytest.mark.asyncio

AT = datetime(2026, 12, 7, 1, 0, 0, 123456, tzinfo=UTC)


class Gate:
    """Holds a patched call inside the thread that makes it until the event
    loop opens the gate."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.threads: list[int] = []

    def hold(self) -> None:
        self.threads.append(threading.get_ident())
        self.entered.set()
        # The guard only breaks a deadlock (the call held the loop itself).
        self.opened.wait(GUARD)

    async def wait_entered(self) -> None:
        # From a worker thread of our own, so a call held on the loop's
        # thread cannot also hold this wait.
        assert await anyio.to_thread.run_sync(self.entered.wait, GUARD)

    def wrap(self, fn: Callable[..., Any], when: Callable[..., bool] | None = None) -> Any:
        def held(*args: Any, **kwargs: Any) -> Any:
            if when is None or when(*args, **kwargs):
                self.hold()
            return fn(*args, **kwargs)

        return held


@contextmanager
def no_tmp_left(directory: Path) -> Iterator[None]:
    yield
    if directory.exists():
        assert [p.name for p in directory.iterdir() if p.name.startswith(".")] == []


async def test_a_handled_exit_is_recorded_off_the_event_loop(
    fake: FakeTransport, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()
    monkeypatch.setattr(_paths, "write_new", gate.wrap(_paths.write_new))
    loop_thread = threading.get_ident()
    rec = Recorder()
    async with connect(fake, state_dir, backend=rec) as client:
        container = await client.new_container("slow-fs", spec())
        task = await container.new_task()
        await task.start()
        fake.controls.exit("slow-fs", code=4)
        await gate.wait_entered()
        # The loop runs while the record is being written: this very wait
        # ended, and the client answers.
        with anyio.fail_after(GUARD):
            assert (await task.wait()).exit_code == 4
        gate.opened.set()
        await rec.barrier(fake, "slow-fs")
        assert gate.threads and loop_thread not in gate.threads
        ledger = state_dir / ".exits" / fake.namespace
        assert (ledger / "slow-fs@slow-fs").read_text().startswith(f"{task.pid} ")
        await task.delete()
        await container.delete()
        assert list(ledger.iterdir()) == []


async def test_a_cancelled_record_still_finishes_its_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()
    monkeypatch.setattr(_paths, "write_new", gate.wrap(_paths.write_new))
    ledger = ExitLedger(tmp_path / "ns")
    scope = anyio.CancelScope()
    waited = False
    with no_tmp_left(ledger.directory):
        async with anyio.create_task_group() as tg:

            async def record() -> None:
                nonlocal waited
                with scope:
                    try:
                        await ledger.record_async("c", "c", 7, AT)
                    finally:
                        waited = True

            tg.start_soon(record)
            await gate.wait_entered()
            scope.cancel()
            await settle()
            # Cancelled, and still waiting for the write to end.
            assert not waited
            gate.opened.set()
        assert waited and scope.cancel_called
        # The write went through whole, and this ledger knows of it (a prune
        # takes it along).
        assert ledger.handled("c", "c", 7, AT)
        ledger.prune_container("c")
        assert list(ledger.directory.iterdir()) == []


@pytest.mark.parametrize("how", ["forget", "prune_container"])
async def test_a_record_forgotten_while_being_written_is_not_left_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    gate = Gate()
    monkeypatch.setattr(_paths, "write_new", gate.wrap(_paths.write_new))
    ledger = ExitLedger(tmp_path / "ns")
    with no_tmp_left(ledger.directory):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ledger.record_async, "c", "e1", 7, AT)
            await gate.wait_entered()
            if how == "forget":
                ledger.forget("c", "e1")
            else:
                ledger.prune_container("c")
            gate.opened.set()
        assert list(ledger.directory.iterdir()) == []
        assert not ledger.has_records()


async def test_a_record_written_while_the_ledger_is_listed_is_still_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # connect() lists the ledger (has_records, prune) while exits may
    # already be handled: a write in flight then must not be lost from the
    # index, or the delete would leave its file behind.
    gate = Gate()
    monkeypatch.setattr(_paths, "write_new", gate.wrap(_paths.write_new))
    ledger = ExitLedger(tmp_path / "ns")
    ledger.has_records()
    with no_tmp_left(ledger.directory):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ledger.record_async, "c", "c", 7, AT)
            await gate.wait_entered()
            assert not ledger.has_records()
            gate.opened.set()
        ledger.prune_container("c")
        assert list(ledger.directory.iterdir()) == []


async def test_a_failed_write_leaves_no_record_and_no_index_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(path: Path, data: bytes, mode: int = 0o600) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_paths, "write_new", refused)
    ledger = ExitLedger(tmp_path / "ns")
    await ledger.record_async("c", "c", 1, AT)
    assert not ledger.handled("c", "c", 1, AT)
    monkeypatch.undo()
    unlinked: list[str] = []
    monkeypatch.setattr(os, "unlink", lambda p, *a, **k: unlinked.append(str(p)))
    ledger.prune_container("c")
    ledger.forget("c", "c")
    assert unlinked == []


async def test_deletes_without_records_touch_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ledger holding many records is not listed per delete, and a delete
    of a process without a record unlinks nothing."""
    ledger = ExitLedger(tmp_path / "ns")
    for i in range(50):
        await ledger.record_async(f"kept-{i}", f"kept-{i}", i, AT)
    await ledger.record_async("done", "done", 1, AT)
    assert ledger.has_records()
    listings: list[str] = []
    real_scandir = os.scandir

    def counting_scandir(path: Any = ".") -> Any:
        listings.append(str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    for i in range(20):
        ledger.forget(f"other-{i}", "e")
        ledger.prune_container(f"other-{i}")
    ledger.prune_container("done")
    assert listings == []
    assert not (ledger.directory / "done@done").exists()
    assert len(list(real_scandir(ledger.directory))) == 50


async def test_a_later_run_still_finds_what_an_earlier_one_recorded(tmp_path: Path) -> None:
    first = ExitLedger(tmp_path / "ns")
    await first.record_async("c", "c", 3, AT)
    await first.record_async("c", "e", 4, AT)
    second = ExitLedger(tmp_path / "ns")
    assert second.handled("c", "e", 4, AT)
    second.prune_container("c")  # lists the directory once, then knows
    assert list((tmp_path / "ns").iterdir()) == []


async def test_a_container_delete_removes_its_bundle_off_the_event_loop(
    client: Any, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = await client.new_container("bundle", spec())
    bundle = container.bundle_dir
    assert bundle.is_dir()
    gate = Gate()
    monkeypatch.setattr(os, "rmdir", gate.wrap(os.rmdir, lambda p, *a, **k: Path(p) == bundle))
    loop_thread = threading.get_ident()
    async with anyio.create_task_group() as tg:
        tg.start_soon(container.delete)
        await gate.wait_entered()
        # The loop answers other calls while the bundle is being removed.
        with anyio.fail_after(GUARD):
            assert [c.id for c in await client.containers()] == []
        gate.opened.set()
    assert gate.threads and loop_thread not in gate.threads
    assert not bundle.exists()


async def test_a_cancelled_delete_still_removes_the_bundle(
    client: Any, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = await client.new_container("bundle-c", spec())
    bundle = container.bundle_dir
    gate = Gate()
    monkeypatch.setattr(os, "rmdir", gate.wrap(os.rmdir, lambda p, *a, **k: Path(p) == bundle))
    scope = anyio.CancelScope()
    waited = False

    async def delete() -> None:
        nonlocal waited
        with scope:
            try:
                await container.delete()
            finally:
                waited = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(delete)
        await gate.wait_entered()
        scope.cancel()
        await settle()
        # The removal is waited for: a new container of the same id made
        # after the call returned must not lose its bundle to it.
        assert not waited
        gate.opened.set()
    assert waited and not bundle.exists()
    again = await client.new_container("bundle-c", spec())
    assert again.bundle_dir.is_dir()
    await again.delete()


@pytest.mark.skipif(not PLATFORM.procfs, reason="reads /proc")
async def test_summaries_read_proc_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate()
    monkeypatch.setattr(_summary, "read_proc", gate.wrap(_summary.read_proc))
    loop_thread = threading.get_ident()
    async with anyio.create_task_group() as tg:
        found: list[ProcessSummary] = []

        async def summarise() -> None:
            found.extend(await _summary.host_details([ProcessSummary(os.getpid())]))

        tg.start_soon(summarise)
        await gate.wait_entered()
        await anyio.lowlevel.checkpoint()  # the loop runs meanwhile
        gate.opened.set()
    assert loop_thread not in gate.threads
    assert found[0].state and found[0].command


async def test_no_pids_start_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_thread(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a thread for nothing")

    monkeypatch.setattr(anyio.to_thread, "run_sync", no_thread)
    assert await _summary.host_details([]) == []
