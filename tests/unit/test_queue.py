"""The keyed ordered queue: order per key, concurrency across keys, failures
that stay with their job, and an exit that waits for everything appended."""

from __future__ import annotations

import gc
import random
import weakref
from collections import defaultdict
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel
import pytest

from supervisor.events import Queue
from tests._logs import capture_logs

# Every test that could deadlock on a regression runs under this deadline, so
# a broken queue fails the test instead of hanging the session.
DEADLINE = 5.0


class Recorder:
    """Records job starts/ends and the most jobs of one key running at once."""

    def __init__(self) -> None:
        self.order: dict[str, list[int]] = defaultdict(list)
        self.log: list[tuple[str, int]] = []
        self.running: dict[str, int] = defaultdict(int)
        self.max_running: dict[str, int] = defaultdict(int)

    def job(
        self, key: str, n: int, rng: random.Random, *, checkpoints: int = 3
    ) -> Callable[[], Awaitable[None]]:
        # Random yields inside the job let jobs of other keys (and the appender)
        # run in between, which is what would expose a reordering.
        yields = [rng.randrange(checkpoints + 1) for _ in range(2)]

        async def run() -> None:
            self.running[key] += 1
            self.max_running[key] = max(self.max_running[key], self.running[key])
            for _ in range(yields[0]):
                await anyio.lowlevel.checkpoint()
            self.order[key].append(n)
            self.log.append((key, n))
            for _ in range(yields[1]):
                await anyio.lowlevel.checkpoint()
            self.running[key] -= 1

        return run


@pytest.mark.asyncio
async def test_each_key_runs_in_append_order_one_at_a_time() -> None:
    rng = random.Random(1234)
    rec = Recorder()
    keys = [f"c{i}" for i in range(12)]
    per_key = 60
    plan = [k for k in keys for _ in range(per_key)]
    rng.shuffle(plan)  # appends of different keys interleaved at random
    appended: dict[str, int] = defaultdict(int)
    with anyio.fail_after(DEADLINE):
        async with Queue() as queue:
            for i, key in enumerate(plan):
                queue.append(key, rec.job(key, appended[key], rng))
                appended[key] += 1
                # Append in bursts, letting jobs run between them, so appends
                # land both on idle keys and on keys with a job mid-flight.
                if i % rng.randrange(1, 8) == 0:
                    for _ in range(rng.randrange(3)):
                        await anyio.lowlevel.checkpoint()

    for key in keys:
        assert rec.order[key] == list(range(per_key)), key
        assert rec.max_running[key] == 1, key
    # The keys really did interleave (else "in order" above proves little).
    switches = sum(1 for a, b in zip(rec.log, rec.log[1:], strict=False) if a[0] != b[0])
    assert switches > len(keys) * 10


@pytest.mark.asyncio
async def test_jobs_appended_by_jobs_keep_their_order() -> None:
    # A job appending to its own key (a handler queuing a follow-up) goes after
    # everything already queued for that key.
    seen: list[str] = []
    done = anyio.Event()
    with anyio.fail_after(DEADLINE):
        async with Queue() as queue:

            async def follow_up() -> None:
                seen.append("follow-up")
                done.set()

            async def first() -> None:
                await anyio.lowlevel.checkpoint()
                queue.append("k", follow_up)
                seen.append("first")

            async def second() -> None:
                seen.append("second")

            queue.append("k", first)
            queue.append("k", second)
            await done.wait()
    assert seen == ["first", "second", "follow-up"]


@pytest.mark.asyncio
async def test_different_keys_run_concurrently() -> None:
    # Each job waits for the other one to have started: serialized, this is a
    # deadlock, which fail_after turns into a TimeoutError.
    a_started, b_started = anyio.Event(), anyio.Event()
    finished: list[str] = []

    async def job_a() -> None:
        a_started.set()
        await b_started.wait()
        finished.append("a")

    async def job_b() -> None:
        b_started.set()
        await a_started.wait()
        finished.append("b")

    with anyio.fail_after(DEADLINE):
        async with Queue() as queue:
            queue.append("container-a", job_a)
            queue.append("container-b", job_b)
    assert sorted(finished) == ["a", "b"]


@pytest.mark.asyncio
async def test_same_key_does_not_run_concurrently() -> None:
    # The mirror of the test above: the same handshake under one key must not
    # complete, because the second job cannot start while the first waits.
    a_started, b_started = anyio.Event(), anyio.Event()

    async def job_a() -> None:
        a_started.set()
        await b_started.wait()

    async def job_b() -> None:
        b_started.set()

    with anyio.move_on_after(0.2) as scope:
        async with Queue() as queue:
            queue.append("k", job_a)
            queue.append("k", job_b)
    assert scope.cancelled_caught
    assert a_started.is_set() and not b_started.is_set()


@pytest.mark.asyncio
async def test_failing_job_is_logged_and_later_jobs_still_run() -> None:
    ran: list[int] = []

    async def boom() -> None:
        await anyio.lowlevel.checkpoint()
        raise ValueError("handler bug")

    def record(n: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            ran.append(n)

        return run

    with capture_logs() as logs, anyio.fail_after(DEADLINE):
        async with Queue() as queue:
            queue.append("k", record(1))
            queue.append("k", boom)
            queue.append("k", record(2))
            queue.append("other", boom)
            queue.append("k", boom)
            queue.append("k", record(3))

    assert ran == [1, 2, 3]
    failures = [e for e in logs if e["event"] == "queue.job_failed"]
    assert len(failures) == 3
    assert sorted(e["key"] for e in failures) == ["k", "k", "other"]
    assert all(e["log_level"] == "error" and e.get("exc_info") for e in failures)


@pytest.mark.asyncio
async def test_job_raising_cancelled_of_its_own_does_not_stop_the_key() -> None:
    ran: list[str] = []

    async def raises_cancelled() -> None:
        await anyio.lowlevel.checkpoint()
        # Nobody cancelled us: e.g. a handler re-raising what an inner call raised.
        raise anyio.get_cancelled_exc_class()()

    async def after() -> None:
        ran.append("after")

    with capture_logs() as logs, anyio.fail_after(DEADLINE):
        async with Queue() as queue:
            queue.append("k", raises_cancelled)
            queue.append("k", after)
    assert ran == ["after"]
    assert [e["event"] for e in logs] == ["queue.job_cancelled"]


@pytest.mark.asyncio
async def test_job_cancelled_by_its_own_cancel_scope_does_not_stop_the_key() -> None:
    ran: list[str] = []
    hold_scope: list[anyio.CancelScope] = []
    scope_entered = anyio.Event()

    async def times_out() -> None:
        with anyio.move_on_after(0.01):
            await anyio.sleep(DEADLINE)
        ran.append("timed out")

    async def cancelled_from_elsewhere() -> None:
        with anyio.CancelScope() as scope:
            hold_scope.append(scope)
            scope_entered.set()
            await anyio.sleep(DEADLINE)
        ran.append("cancelled")

    async def canceller() -> None:
        await scope_entered.wait()
        hold_scope[0].cancel()

    async def after() -> None:
        ran.append("after")

    with anyio.fail_after(DEADLINE):
        async with Queue() as queue:
            queue.append("k", times_out)
            queue.append("k", cancelled_from_elsewhere)
            queue.append("k", after)
            queue.append("other", canceller)
    assert ran == ["timed out", "cancelled", "after"]


@pytest.mark.asyncio
async def test_cancelling_the_queue_stops_its_jobs() -> None:
    # The other side of "a cancelled job ends alone": when the queue's own
    # scope is cancelled, the key must stop, not carry on with the next job.
    ran: list[str] = []
    started = anyio.Event()

    async def long() -> None:
        started.set()
        await anyio.sleep(DEADLINE)
        ran.append("long finished")

    async def after() -> None:
        ran.append("after")

    with anyio.fail_after(DEADLINE):
        with anyio.CancelScope() as outer:
            async with Queue() as queue:
                queue.append("k", long)
                queue.append("k", after)
                await started.wait()
                outer.cancel()
        assert outer.cancelled_caught
    assert ran == []
    assert len(queue) == 0


@pytest.mark.asyncio
async def test_error_in_body_cancels_jobs_and_propagates() -> None:
    ran: list[str] = []
    started = anyio.Event()

    async def long() -> None:
        started.set()
        await anyio.sleep(DEADLINE)
        ran.append("long finished")

    with anyio.fail_after(DEADLINE):
        with pytest.raises(BaseException) as info:
            async with Queue() as queue:
                queue.append("k", long)
                await started.wait()
                raise KeyError("body")
    # anyio's task group may wrap it; what matters is that it is ours.
    exc = info.value
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    assert isinstance(exc, KeyError)
    assert ran == []
    assert len(queue) == 0


@pytest.mark.asyncio
async def test_exit_waits_for_every_appended_job() -> None:
    done: list[tuple[str, int]] = []

    def job(key: str, n: int, delay: float) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await anyio.sleep(delay)
            done.append((key, n))

        return run

    with anyio.fail_after(DEADLINE):
        async with Queue() as queue:
            for n in range(5):
                queue.append("slow", job("slow", n, 0.01))
                queue.append("fast", job("fast", n, 0))
            # Nothing has run yet: the body never yielded.
            assert done == []
    assert sorted(done) == sorted([("slow", n) for n in range(5)] + [("fast", n) for n in range(5)])
    assert len(queue) == 0


@pytest.mark.asyncio
async def test_exit_waits_for_jobs_appended_by_jobs_during_exit() -> None:
    # The class docstring promises that leaving "waits for every job appended,
    # including jobs appended by jobs".  Here the first job only gets to run
    # once the body has already started leaving, and appends a follow-up.
    seen: list[str] = []
    with capture_logs() as logs, anyio.fail_after(DEADLINE):
        async with Queue() as queue:

            async def follow_up() -> None:
                seen.append("follow-up")

            async def first() -> None:
                await anyio.lowlevel.checkpoint()
                queue.append("k", follow_up)
                queue.append("other", follow_up)
                seen.append("first")

            queue.append("k", first)
    assert [e for e in logs if e["event"] == "queue.job_failed"] == []
    assert seen == ["first", "follow-up", "follow-up"]


@pytest.mark.asyncio
async def test_idle_keys_are_dropped_and_hold_no_jobs() -> None:
    class Job:
        """A job object we can hold a weak reference to."""

        def __init__(self, gate: anyio.Event, done: anyio.Event | None = None) -> None:
            self.gate, self.done = gate, done

        async def __call__(self) -> None:
            await self.gate.wait()
            if self.done is not None:
                self.done.set()

    with anyio.fail_after(DEADLINE):
        async with Queue() as queue:
            assert len(queue) == 0
            gate, done = anyio.Event(), anyio.Event()
            jobs = [Job(gate) for _ in range(3)] + [Job(gate, done)]
            refs = [weakref.ref(j) for j in jobs]
            for i, j in enumerate(jobs):
                queue.append(f"c{i % 2}", j)
            del jobs, j
            assert len(queue) == 2  # two keys busy, whatever their depth
            gate.set()
            await done.wait()
            # c1's last job just returned, and its worker drops the key in the
            # same step; c0 finished before.  Give c0's worker no excuse.
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            assert len(queue) == 0
            assert queue._pending == {}
            gc.collect()
            assert [r() for r in refs] == [None] * 4, "finished jobs are still referenced"

            # A dropped key comes back as a fresh one and still runs its jobs.
            again = anyio.Event()

            async def revived() -> None:
                again.set()

            queue.append("c0", revived)
            assert len(queue) == 1
            await again.wait()
    assert len(queue) == 0


@pytest.mark.asyncio
async def test_many_short_lived_keys_leave_nothing_behind() -> None:
    # Container ids come and go; a long-lived queue must not accumulate them.
    count = 0

    async def job() -> None:
        nonlocal count
        count += 1

    with anyio.fail_after(DEADLINE):
        async with Queue() as queue:
            for i in range(2000):
                queue.append(f"container-{i}", job)
                if i % 100 == 0:
                    await anyio.lowlevel.checkpoint()
            while count < 2000:
                await anyio.lowlevel.checkpoint()
            assert len(queue) == 0
            assert queue._pending == {}


@pytest.mark.asyncio
async def test_append_outside_the_context_raises() -> None:
    async def job() -> None:
        pass

    queue = Queue()
    with pytest.raises(RuntimeError):
        queue.append("k", job)
    async with queue:
        queue.append("k", job)
    with pytest.raises(RuntimeError):
        queue.append("k", job)
    assert len(queue) == 0


@pytest.mark.asyncio
async def test_a_flooded_key_is_logged_once_and_a_stuck_job_cannot_hold_the_exit() -> None:
    with capture_logs() as logs:
        with anyio.fail_after(10):
            async with Queue(drain_timeout=0.2, high_water=5) as queue:
                queue.append("k", anyio.sleep_forever)
                for _ in range(20):
                    queue.append("k", anyio.lowlevel.checkpoint)
    flooded = [e for e in logs if e["event"] == "queue.high_water"]
    assert len(flooded) == 1 and flooded[0]["key"] == "k"
    assert [e["keys"] for e in logs if e["event"] == "queue.drain_timeout"] == [["k"]]
