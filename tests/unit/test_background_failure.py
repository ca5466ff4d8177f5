"""A client whose event machinery dies fails its callers at once, as a task
group would: pending waits raise the error, later calls raise it, ``closed``
turns true, and leaving the ``async with`` raises it too. An error that is no
:mod:`supervisor.errors` type comes out as ``Unknown``, its cause chained."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import supervisor
from supervisor import errors
from supervisor._types import TaskEvent
from supervisor.backends.fake import FakeTransport
from supervisor.events._monitor import EventMonitor
from tests.unit.conftest import GUARD, Recorder, connect, spec

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize(
    "failure",
    [
        errors.FailedPrecondition("subscriptions are refused"),
        # Unknown is what a decoding bug becomes: never retried as an outage.
        errors.Unknown("a reply that does not decode"),
    ],
    ids=["failed-precondition", "unknown"],
)
async def test_a_failing_resubscription_fails_pending_and_later_calls(
    fake: FakeTransport, state_dir: Path, failure: errors.SupervisorError
) -> None:
    seen: list[BaseException] = []
    raised_event = anyio.Event()
    with pytest.raises(type(failure)) as at_exit:
        async with connect(fake, state_dir) as client:
            container = await client.new_container("doomed", spec())
            task = await container.new_task()
            await task.start()

            async def waiter() -> None:
                try:
                    await task.wait()
                except errors.SupervisorError as exc:
                    seen.append(exc)
                    raised_event.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                fake.controls.fail_next("subscribe", failure)
                fake.controls.break_stream()
                with anyio.fail_after(GUARD):  # hang guard, not a timing check
                    await raised_event.wait()
            (raised,) = seen
            assert type(raised) is type(failure)
            assert failure.message in str(raised)
            assert client.closed
            # Later calls, and waits begun after the failure, raise it too.
            with pytest.raises(type(failure)):
                await client.containers()
            with pytest.raises(type(failure)):
                await task.wait()
            with pytest.raises(type(failure)):
                await client.new_container("after", spec())
    assert failure.message in str(at_exit.value)
    # Nothing was left behind by the calls refused after the failure.
    assert fake.controls.container_ids() == ["doomed"]


async def test_an_unexpected_monitor_error_is_unknown_with_its_cause(
    fake: FakeTransport, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = EventMonitor.handle

    def buggy(self: EventMonitor, event: TaskEvent) -> None:
        if event.container_id == "poison":
            raise RuntimeError("a bug in the monitor")
        handle(self, event)

    monkeypatch.setattr(EventMonitor, "handle", buggy)
    with pytest.raises(errors.Unknown) as at_exit:
        async with connect(fake, state_dir) as client:
            victim = await client.new_container("victim", spec())
            task = await victim.new_task()
            await task.start()
            poisoned = await (await client.new_container("poison", spec())).new_task()
            await poisoned.start()
            fake.controls.exit("poison")  # its EXIT trips the monitor
            with anyio.fail_after(GUARD), pytest.raises(errors.Unknown) as pending:
                await task.wait()
            assert isinstance(pending.value.__cause__, errors.Unknown)
            cause = pending.value.__cause__.__cause__
            assert isinstance(cause, RuntimeError) and "a bug in the monitor" in str(cause)
            assert client.closed
            with pytest.raises(errors.Unknown):
                await client.version()
    assert isinstance(at_exit.value.__cause__, RuntimeError)


async def test_a_backend_client_fails_the_same_way(fake: FakeTransport, state_dir: Path) -> None:
    # With a backend the queue winds down after the monitor: the callers
    # must not wait for that.
    rec = Recorder()
    with pytest.raises(errors.FailedPrecondition):
        async with connect(fake, state_dir, backend=rec) as client:
            container = await client.new_container("with-backend", spec())
            task = await container.new_task()
            await task.start()
            fake.controls.fail_next("subscribe", errors.FailedPrecondition("refused"))
            fake.controls.break_stream()
            with anyio.fail_after(GUARD), pytest.raises(errors.FailedPrecondition):
                await task.wait()
            assert client.closed


async def test_an_unexpected_error_while_connecting_is_unknown(
    fake: FakeTransport, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As Daemon reports an unexpected failure of its start: a typed error,
    # the cause chained.
    async def broken_run(self: EventMonitor, **kw: object) -> None:
        raise KeyError("a bug before the first subscription")

    monkeypatch.setattr(EventMonitor, "run", broken_run)
    with pytest.raises(errors.Unknown) as raised:
        async with connect(fake, state_dir):
            pass
    assert isinstance(raised.value.__cause__, KeyError)
    assert fake.controls.closed


async def test_a_connection_left_normally_after_a_failure_still_reports_it(
    fake: FakeTransport, state_dir: Path
) -> None:
    # The caller that swallowed the error learns it on exit, as from a task group.
    with pytest.raises(errors.FailedPrecondition):
        async with connect(fake, state_dir) as client:
            container = await client.new_container("swallowed", spec())
            task = await container.new_task()
            await task.start()
            fake.controls.fail_next("subscribe", errors.FailedPrecondition("refused"))
            fake.controls.break_stream()
            with anyio.fail_after(GUARD):
                try:
                    await task.wait()
                except errors.FailedPrecondition:
                    pass


async def test_callers_fail_before_a_shielded_handler_is_done(
    fake: FakeTransport, state_dir: Path
) -> None:
    # A handler inside a shielded clean-up (the documented way to delete
    # from a handler) holds the event machinery's wind-down until it is
    # done; the callers must not wait for that.
    stuck = anyio.Event()

    class Stuck:
        async def process_event(self, container_id: str, event: object, info: object) -> None:
            with anyio.CancelScope(shield=True):
                await stuck.wait()

    timeouts = supervisor.Timeouts(resubscribe_initial=0.001, resubscribe_max=0.01, handler=3600.0)
    with pytest.raises(errors.FailedPrecondition):
        async with connect(fake, state_dir, backend=Stuck(), timeouts=timeouts) as client:
            try:
                container = await client.new_container("stuck", spec())
                task = await container.new_task()  # its CREATE event sticks in the handler
                await task.start()
                fake.controls.fail_next("subscribe", errors.FailedPrecondition("refused"))
                fake.controls.break_stream()
                with anyio.fail_after(GUARD), pytest.raises(errors.FailedPrecondition):
                    await task.wait()
                assert client.closed
            finally:
                stuck.set()  # so that a failing test ends rather than hangs
