"""Exactly-once exits and OOM semantics, on the tracker alone."""

from __future__ import annotations

import anyio
import pytest

from supervisor.events._tracker import ExitTracker


def test_first_exit_is_news_second_is_duplicate() -> None:
    t = ExitTracker()
    t.started("c", "c", 10)
    first = t.exited("c", "c", 10, 3, None)
    assert first is not None and first.exit_code == 3
    assert t.exited("c", "c", 10, 3, None) is None


def test_exit_before_our_start_reply_is_kept() -> None:
    # The stream can report START and EXIT before our Start call returns.
    t = ExitTracker()
    slot = t.watch("c", "c")
    t.task_started("c", 10)
    assert t.exited("c", "c", 10, 0, None) is not None
    t.started("c", "c", 10)  # the Start reply, late
    assert slot.status is not None and slot.status.exit_code == 0


def test_new_instance_resets_and_old_exit_is_not_the_new_ones() -> None:
    t = ExitTracker()
    t.started("c", "c", 10)
    t.exited("c", "c", 10, 1, None)
    slot = t.started("c", "c", 20)
    assert slot.status is None
    assert t.exited("c", "c", 10, 1, None) is None  # the old one, again
    assert slot.status is None
    assert t.exited("c", "c", 20, 2, None) is not None
    assert slot.status is not None and slot.status.exit_code == 2


def test_forget_after_exit_drops_late_duplicates() -> None:
    t = ExitTracker()
    t.started("c", "e", 10)
    t.exited("c", "e", 10, 0, None)
    t.forget("c", "e")
    assert len(t) == 0
    assert t.exited("c", "e", 10, 0, None) is None


def test_forget_before_exit_still_delivers_it() -> None:
    # Deleted before the EXIT came off the stream: that EXIT is still news.
    t = ExitTracker()
    t.started("c", "e", 10)
    t.forget("c", "e")
    assert t.exited("c", "e", 10, 0, None) is not None


def test_running_lists_only_started_unexited() -> None:
    t = ExitTracker()
    t.watch("c1", "c1")  # created, never started
    t.started("c2", "c2", 2)
    t.started("c2", "x", 3)
    t.exited("c2", "x", 3, 0, None)
    assert t.running() == [("c2", "c2", 2)]


def test_oom_set_by_any_process_cleared_by_next_start() -> None:
    t = ExitTracker()
    t.task_started("c", 10)
    t.started("c", "exec", 11)
    t.oom("c")
    exec_exit = t.exited("c", "exec", 11, 137, None)
    assert exec_exit is not None and not exec_exit.oom_killed  # only init carries it
    init_exit = t.exited("c", "c", 10, 137, None)
    assert init_exit is not None and init_exit.oom_killed
    t.task_started("c", 20)
    assert not t.oom_killed("c")
    later = t.exited("c", "c", 20, 0, None)
    assert later is not None and not later.oom_killed


@pytest.mark.asyncio
async def test_waiters_wake_and_cancelled_waits_leave_no_trace() -> None:
    t = ExitTracker()
    slot = t.started("c", "c", 10)
    with anyio.move_on_after(0.01):
        await slot.wait()
    results = []

    async def waiter() -> None:
        results.append((await slot.wait()).exit_code)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(waiter)
        await anyio.sleep(0.01)
        t.exited("c", "c", 10, 9, None)
    assert results == [9, 9, 9]


def test_an_oom_just_after_the_init_exit_reaches_its_status() -> None:
    # The shim publishes OOM and EXIT from different goroutines.
    t = ExitTracker()
    t.started("c", "c", 10)
    first = t.exited("c", "c", 10, 137, None)
    assert first is not None and not first.oom_killed
    t.oom("c")
    slot = t.watch("c", "c")
    assert slot.status is not None and slot.status.oom_killed


def test_a_slot_made_after_its_exit_was_seen_still_resolves() -> None:
    # Another client's exec exits (reported, then forgotten: not ours); the
    # application then loads it and waits on it: the wait must end.
    t = ExitTracker()
    t.started("c", "e", 11)
    assert t.exited("c", "e", 11, 7, None) is not None  # reported once
    slot = t.started("c", "e", 11)
    slot.owned = True
    assert t.exited("c", "e", 11, 7, None) is None  # not reported again
    assert slot.status is not None and slot.status.exit_code == 7
