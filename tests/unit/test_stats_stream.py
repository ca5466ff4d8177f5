"""Stats streams: one Metrics call per round for every stream, and nothing
left behind by a stream that ends, breaks or is cancelled.

The streams run against a stub session whose transport records each
``metrics`` call, so these tests see exactly which calls were made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import anyio
import anyio.lowlevel
import pytest

from supervisor import errors
from supervisor._types import ProcessState, StdioPaths, TaskRecord
from supervisor.domain._stats_stream import StatsSampler, StatsStream, stats_stream
from supervisor.stats._model import CpuStats, MemoryStats, PidsStats, Stats

pytestmark = pytest.mark.asyncio

INTERVAL = 0.05
GUARD = 20.0


class StubTransport:
    def __init__(self) -> None:
        self.live: dict[str, int] = {}  # container id -> processes in its cgroup
        self.states: dict[str, ProcessState] = {}
        self.calls: list[tuple[float, frozenset[str]]] = []
        self.get_calls = 0
        self.fail: errors.SupervisorError | None = None
        self.gate: anyio.Event | None = None  # holds the next call until set
        self.entered = anyio.Event()

    async def metrics(self, container_ids: Collection[str]) -> dict[str, Stats]:
        self.calls.append((anyio.current_time(), frozenset(container_ids)))
        gate, self.gate = self.gate, None
        if gate is not None:
            self.entered.set()
            await gate.wait()
        await anyio.lowlevel.checkpoint()
        if self.fail is not None:
            raise self.fail
        return {
            cid: Stats(
                memory=MemoryStats(usage=1 << 20, limit=None),
                cpu=CpuStats(total_usage=len(self.calls)),
                pids=PidsStats(current=self.live[cid]),
            )
            for cid in container_ids
            if cid in self.live
        }

    async def get_task(self, container_id: str, exec_id: str = "") -> TaskRecord:
        self.get_calls += 1
        if container_id not in self.states:
            raise errors.NotFound("no task", container_id=container_id)
        return TaskRecord(
            container_id, container_id, 7, self.states[container_id], StdioPaths(), None
        )


class StubTracker:
    def __init__(self) -> None:
        self.exited: set[str] = set()

    def exited_known(self, container_id: str, process_id: str) -> bool:
        return container_id in self.exited


class StubSession:
    """What a stream uses of a Session."""

    def __init__(self) -> None:
        self.raw = StubTransport()
        self.tracker = StubTracker()
        self.stats_sampler = StatsSampler()
        self.closed = False

    @property
    def transport(self) -> StubTransport:
        self.check_open()
        return self.raw

    def check_open(self) -> None:
        if self.closed:
            raise errors.Closed("the client is closed")

    def stream(self, cid: str, interval: float = INTERVAL) -> StatsStream:
        self.raw.live.setdefault(cid, 1)
        self.raw.states.setdefault(cid, ProcessState.RUNNING)
        return stats_stream(self, cid, 0, interval)  # type: ignore[arg-type]


def _idle(session: StubSession) -> bool:
    return session.stats_sampler.waiting == 0 and not session.stats_sampler._rounds


async def _take(stream: StatsStream, n: int) -> list[Stats]:
    out = []
    with anyio.fail_after(GUARD):
        async for sample in stream:
            out.append(sample)
            if len(out) == n:
                break
    return out


async def test_every_stream_is_sampled_by_one_call_per_round() -> None:
    session = StubSession()
    got: dict[str, list[Stats]] = {}

    async def read(cid: str) -> None:
        got[cid] = await _take(session.stream(cid), 5)

    tasks_before = len(asyncio.all_tasks())
    async with anyio.create_task_group() as tg:
        for cid in ("a", "b", "c"):
            tg.start_soon(read, cid)
    assert {cid: len(samples) for cid, samples in got.items()} == {"a": 5, "b": 5, "c": 5}
    calls = session.raw.calls
    assert all(ids <= {"a", "b", "c"} for _, ids in calls)
    # the streams started together: the first round was fetched for all three
    assert calls[0][1] == {"a", "b", "c"}
    # one call per round: never more calls than rounds that fell due
    elapsed = calls[-1][0] - calls[0][0]
    assert len(calls) <= elapsed / INTERVAL + 2
    assert len(calls) < 15
    assert _idle(session)
    assert len(asyncio.all_tasks()) == tasks_before


async def test_a_stream_keeps_its_pace_between_reads() -> None:
    session = StubSession()
    start = anyio.current_time()
    await _take(session.stream("a"), 4)
    times = [t for t, _ in session.raw.calls]
    assert len(times) == 4
    # The round is dropped between reads (nothing waits), yet sample k is
    # never taken before k intervals have passed.
    assert all(t - start >= k * INTERVAL - 1e-6 for k, t in enumerate(times))


async def test_a_stream_joining_later_costs_no_call_of_its_own() -> None:
    session = StubSession()
    joined: list[Stats] = []

    async def late() -> None:
        await anyio.sleep(INTERVAL * 1.5)
        joined.extend(await _take(session.stream("late"), 2))

    async with anyio.create_task_group() as tg:
        tg.start_soon(late)
        await _take(session.stream("first"), 5)
    assert len(joined) == 2
    assert not any(ids == {"late"} for _, ids in session.raw.calls)
    assert any(ids == {"first", "late"} for _, ids in session.raw.calls)


async def test_streams_with_different_intervals_keep_separate_rounds() -> None:
    session = StubSession()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_take, session.stream("fast", INTERVAL), 4)
        tg.start_soon(_take, session.stream("slow", INTERVAL * 2), 2)
    assert {ids for _, ids in session.raw.calls} == {frozenset({"fast"}), frozenset({"slow"})}
    assert _idle(session)


async def test_the_stream_ends_when_the_exit_is_known() -> None:
    session = StubSession()
    stream = session.stream("a")
    assert len(await _take(stream, 2)) == 2
    session.tracker.exited.add("a")
    with anyio.fail_after(GUARD):
        assert [s async for s in stream] == []
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    assert _idle(session)


async def test_the_stream_ends_when_containerd_reports_the_task_no_more() -> None:
    session = StubSession()
    stream = session.stream("a")
    await _take(stream, 1)
    del session.raw.live["a"]  # deleted: Metrics lists it no more
    with anyio.fail_after(GUARD):
        assert [s async for s in stream] == []


async def test_a_cgroup_without_processes_ends_the_stream_once_containerd_says_stopped() -> None:
    session = StubSession()
    stream = session.stream("a")
    session.raw.live["a"] = 0
    # no processes, yet containerd says running (a moment before the exit):
    # the sample is given, and the question asked only then
    first = await _take(stream, 1)
    assert first[0].pids.current == 0 and session.raw.get_calls == 1
    session.raw.states["a"] = ProcessState.STOPPED
    with anyio.fail_after(GUARD):
        assert [s async for s in stream] == []
    # a task gone altogether ends it too
    del session.raw.states["a"]
    session.raw.live["b"] = 0
    with anyio.fail_after(GUARD):
        assert [s async for s in stats_stream(session, "b", 0, INTERVAL)] == []  # type: ignore[arg-type]
    # a task with processes is never asked about
    calls = session.raw.get_calls
    await _take(session.stream("c"), 3)
    assert session.raw.get_calls == calls


async def test_cancelling_the_stream_that_fetches_hands_the_round_to_another() -> None:
    session = StubSession()
    a, b = session.stream("a"), session.stream("b")
    session.raw.gate = gate = anyio.Event()
    got: list[Stats] = []

    async def read_b() -> None:
        got.extend(await _take(b, 1))

    scope = anyio.CancelScope()
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancelled_read, a, scope)
            await session.raw.entered.wait()  # a is fetching, held
            tg.start_soon(read_b)
            await anyio.sleep(INTERVAL / 5)  # b waits on a's fetch
            scope.cancel()
            await anyio.sleep(INTERVAL / 5)
            gate.set()
    assert len(got) == 1
    assert len(session.raw.calls) == 2
    assert session.raw.calls[1][1] == {"b"}  # a no longer waits: not asked for
    assert _idle(session)
    # the cancelled stream still works
    assert len(await _take(a, 1)) == 1
    assert _idle(session)


async def _cancelled_read(stream: StatsStream, scope: anyio.CancelScope) -> None:
    with scope:
        await stream.__anext__()
    assert scope.cancelled_caught


async def test_breaking_out_and_dropping_streams_leaves_nothing() -> None:
    session = StubSession()
    tasks_before = len(asyncio.all_tasks())
    for cid in ("a", "b"):
        async for _ in session.stream(cid):
            break
    assert _idle(session)
    assert len(asyncio.all_tasks()) == tasks_before


async def test_a_stream_can_be_read_from_different_tasks() -> None:
    session = StubSession()
    stream = session.stream("a")
    got: list[Stats] = []

    async def one() -> None:
        got.append(await stream.__anext__())

    for _ in range(3):
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(one)
    assert len(got) == 3
    assert _idle(session)


async def test_a_failed_round_fails_every_stream_it_was_fetched_for() -> None:
    session = StubSession()
    session.raw.fail = errors.Unavailable("containerd went away")
    caught: dict[str, errors.SupervisorError] = {}

    async def read(cid: str) -> None:
        stream = session.stream(cid)
        try:
            await stream.__anext__()
        except errors.Unavailable as exc:
            caught[cid] = exc
        with pytest.raises(StopAsyncIteration):  # a failed stream has ended
            await stream.__anext__()

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read, "a")
            tg.start_soon(read, "b")
    assert {cid: exc.container_id for cid, exc in caught.items()} == {"a": "a", "b": "b"}
    assert len(session.raw.calls) == 1
    assert _idle(session)


async def test_a_closed_client_refuses_to_stream() -> None:
    session = StubSession()
    stream = session.stream("a")
    await _take(stream, 1)
    session.closed = True
    with pytest.raises(errors.Closed):
        await stream.__anext__()
    assert _idle(session)


@pytest.mark.parametrize("interval", [0, -1, 0.001, float("nan"), float("inf"), True, "1"])
async def test_bad_intervals_are_refused(interval: object) -> None:
    session = StubSession()
    with pytest.raises(errors.InvalidArgument):
        stats_stream(session, "a", 0, interval)  # type: ignore[arg-type]
    assert session.raw.calls == []


async def test_a_second_concurrent_read_of_one_stream_is_refused() -> None:
    session = StubSession()
    stream = session.stream("a")
    refused: list[errors.SupervisorError] = []

    async def second() -> None:
        try:
            await stream.__anext__()
        except errors.FailedPrecondition as exc:
            refused.append(exc)

    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stream.__anext__)
            await anyio.lowlevel.checkpoint()
            tg.start_soon(second)
    assert len(refused) == 1
    assert len(await _take(stream, 1)) == 1  # the refusal changed nothing
    assert _idle(session)
