"""Chaos soak: the embedded containerd SIGKILLed and SIGSTOPped while four
workers run container lives with execs. Every exit of a process that started
is delivered exactly once; nothing is left behind."""

from __future__ import annotations

import os
import shutil
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import DaemonTimeouts, errors
from supervisor.daemon import Daemon
from supervisor.daemon._orphans import shims_of
from tests._containerd import short_tmpdir
from tests.integration.conftest import fifo_files, open_fds
from tests.integration.helpers import Recorder

pytestmark = [pytest.mark.asyncio, pytest.mark.disruptive]

FAST = DaemonTimeouts(health_interval=0.2, health_timeout=0.5, health_failures=2, stop=5)
SOAK_SECONDS = float(os.environ.get("SUPERVISOR_SOAK_SECONDS", "20"))
WORKERS = 4


@pytest.fixture
def base() -> Iterator[Path]:
    directory = short_tmpdir("sv-soak-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class Books:
    """What the workers know for certain: processes that started."""

    def __init__(self) -> None:
        self.started: set[tuple[str, str]] = set()
        self.lives = 0
        self.disturbed = 0
        self.errors: Counter[str] = Counter()
        # What the outages said, other than "unreachable" (for the summary).
        self.said: Counter[str] = Counter()
        # Per container, what its life and its clean-up ran into: printed for
        # any container left over.
        self.trail: dict[str, list[str]] = {}

    def note(self, cid: str, what: str) -> None:
        self.trail.setdefault(cid, []).append(what)


async def _clean(client: supervisor.Client, cid: str, books: Books) -> None:
    """Remove one container whatever state an outage left it in: the
    documented clean-up, ``delete(force=True)``, tried again while
    containerd is away."""
    with anyio.fail_after(60):
        while True:
            try:
                await (await client.load_container(cid)).delete(force=True)
                books.note(cid, "cleaned")
                return
            except errors.NotFound as exc:
                books.note(cid, f"clean: {type(exc).__name__}: {exc}")
                return
            except (errors.Unavailable, errors.DeadlineExceeded, errors.Cancelled) as exc:
                books.note(cid, f"clean: {type(exc).__name__}: {exc}")
                await anyio.sleep(0.1)


async def _life(client: supervisor.Client, rootfs: str, cid: str, books: Books) -> None:
    # The init ends when told, after the exec has exited: were it to end
    # first, the kernel would SIGKILL the exec with the rest of its pid
    # namespace (137, not 3), as a fixed sleep did on a slow machine. (A
    # SIGUSR1 that came before the trap would be ignored by a namespace's
    # pid 1: the life would time out and be cleaned up, not fail.)
    script = "trap 'exit 5' USR1; while :; do sleep 1 & wait $!; done"
    spec = supervisor.default_spec(["sh", "-c", script], rootfs)
    container = await client.new_container(cid, spec)
    task = await container.new_task(output="null")
    await task.start()
    books.started.add((cid, cid))
    proc = await task.exec("side", ["sh", "-c", "exit 3"], output="null")
    await proc.start()
    books.started.add((cid, "side"))
    with anyio.fail_after(30):
        assert (await proc.wait()).exit_code == 3
        await proc.delete()
        await task.kill(signal.SIGUSR1)
        assert (await task.wait()).exit_code == 5
    await task.delete()
    await container.delete()


async def _worker(
    client: supervisor.Client, rootfs: str, k: int, books: Books, stop: anyio.Event
) -> None:
    n = 0
    cid = ""
    try:
        while not stop.is_set():
            cid = f"w{k}-{n}"
            n += 1
            books.lives += 1
            try:
                await _life(client, rootfs, cid, books)
            except (errors.SupervisorError, TimeoutError) as exc:
                # An outage mid-call leaves the life's state unknown to the
                # worker (the error kinds are counted in the summary line).
                books.disturbed += 1
                books.errors[type(exc).__name__] += 1
                if not isinstance(exc, errors.Unavailable):
                    books.said[f"{type(exc).__name__}: {exc}"[:120]] += 1
                books.note(cid, f"life: {type(exc).__name__}: {exc}")
                await _clean(client, cid, books)
    except BaseException as exc:
        books.note(cid, f"worker {k} ended by {type(exc).__name__}: {exc}")
        raise
    books.note(cid, f"worker {k} ended")


async def test_chaos_loses_and_doubles_no_exit_and_leaks_nothing(base: Path, rootfs: str) -> None:
    rec = Recorder()
    books = Books()
    ns = f"soak-{os.getpid()}"
    state = base / "sv"
    async with (
        Daemon(base / "root", base / "state", timeouts=FAST) as daemon,
        supervisor.connect(daemon.address, namespace=ns, backend=rec, state_dir=state) as client,
    ):
        fds = open_fds()
        stop = anyio.Event()
        kills = stops = 0
        async with anyio.create_task_group() as tg:
            for k in range(WORKERS):
                tg.start_soon(_worker, client, rootfs, k, books, stop)
            deadline = anyio.current_time() + SOAK_SECONDS
            while anyio.current_time() < deadline:
                await anyio.sleep(2.0)
                pid = daemon.pid
                if pid is None:
                    continue
                if (kills + stops) % 3 == 2:
                    os.kill(pid, signal.SIGSTOP)  # hung: found by the health check
                    stops += 1
                else:
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
            stop.set()
        with anyio.move_on_after(60):  # what is still missing then is lost
            while not books.started <= set(rec.exits()):
                await anyio.sleep(0.1)
        await anyio.sleep(0.5)  # any duplicate still on its way arrives now
        counts = rec.exits()
        lost = books.started - set(counts)
        doubled = {key: n for key, n in counts.items() if n > 1}
        # The last disturbance may have landed just now: the counts below are
        # read once containerd answers again.
        with anyio.fail_after(60):
            while True:
                try:
                    leftover = [c.id for c in await client.containers()]
                    tasks = await client._session.transport.list_tasks()
                    break
                except (errors.Unavailable, errors.DeadlineExceeded):
                    await anyio.sleep(0.1)
        # Shims of deleted tasks wind down on their own; one an earlier
        # containerd lost is killed at the next start or the next look
        # (every reap_interval) while containerd runs (_orphans).
        with anyio.move_on_after(15):
            while shims_of(daemon.address):
                await anyio.sleep(0.2)
        orphans = shims_of(daemon.address)
        session = client._session
        print(
            f"soak: {books.lives} lives ({books.disturbed} disturbed), {kills} SIGKILL, "
            f"{stops} SIGSTOP, {daemon.restarts} restarts, {len(books.started)} started "
            f"processes, {sum(counts.values())} exits delivered, {len(lost)} lost, "
            f"{len(doubled)} doubled, {len(leftover)} containers and {len(tasks)} tasks left "
            f"over, {len(orphans)} orphaned shims; "
            f"errors {dict(books.errors)} {dict(books.said)}"
        )
        for cid in sorted({cid for cid, _ in lost} | set(leftover)):
            print(f"soak: {cid}: {books.trail.get(cid)}")
        for shim in orphans:
            print(f"soak: {shim} left: {books.trail.get(shim.container_id)}")
        assert not lost, sorted(lost)[:10]
        assert not doubled, doubled
        assert leftover == []
        assert tasks == []
        assert orphans == [], orphans
        assert len(session.tracker) == 0
        assert fifo_files(state) == []
        assert not any((state / ".exits" / ns).glob("*"))
        # Channels reconnect (a socket may be replaced), but nothing grows.
        assert len(open_fds()) <= len(fds) + 2, sorted(open_fds() - fds)
        assert daemon.restarts >= kills
        assert books.lives > WORKERS
