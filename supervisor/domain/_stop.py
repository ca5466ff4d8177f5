"""Stopping a process: the signal numbers a caller may send, the forced
stop (SIGKILL, a frozen task thawed, the exit awaited), and the status an
exec whose start failed is given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

from .. import _platform, errors
from .._cleanup import task_group
from .._log import get_logger
from .._timeouts import backoff
from .._types import ExitStatus, ProcessState

if TYPE_CHECKING:
    from ..events._tracker import Slot
    from ._session import Session

__all__ = ["asked_exit", "check_signal", "failed_start_status", "force_stop"]

_log = get_logger("process")

# Linux signal numbers run from 1 to SIGRTMAX (64); containerd takes a uint32
# and would silently truncate anything larger.
_MAX_SIGNAL = 64


def check_signal(value: object, container_id: str, process_id: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidArgument(
            f"signal must be an int, not {type(value).__name__}",
            container_id=container_id,
            process_id=process_id,
        )
    number = int(value)
    if not 1 <= number <= _MAX_SIGNAL:
        raise errors.InvalidArgument(
            f"signal {number} is out of range (1..{_MAX_SIGNAL})",
            container_id=container_id,
            process_id=process_id,
        )
    return number


def failed_start_status(error: errors.SupervisorError) -> ExitStatus:
    """What a shell would say of a command that never ran: its waiters get
    that, not the zero status containerd reports for a deleted exec."""
    code = 255
    if isinstance(error, errors.CommandNotFound):
        code = 127
    elif isinstance(error, errors.CommandNotExecutable):
        code = 126
    return ExitStatus(code)


async def force_stop(
    session: Session, container_id: str, exec_id: str, wait: Callable[[], Awaitable[object]]
) -> None:
    """SIGKILL the process (the init: every process of the task) and
    ``wait``, bounded, until it has exited."""
    transport = session.transport
    cid = container_id
    try:
        await transport.kill(cid, exec_id, _platform.SIGKILL, not exec_id)
    except (errors.NotFound, errors.FailedPrecondition):
        return

    # A frozen cgroup holds the signal: thaw it, as dockerd's rm -f does.
    # But a state read is only a snapshot of a race: a pause or resume in
    # flight reads as PAUSING or RUNNING and may land after our resume,
    # and runc's kill --all thaws the cgroup by itself, so that the task
    # is dead and runc refuses our resume ("container not paused") while
    # containerd still says PAUSED. So nothing read here is trusted:
    # until the exit is known, a task that reads as frozen is thawed
    # again, refusals are ignored, and only the exit ends the wait. The
    # first look is at once; the next after 50 ms, by which time a
    # task that was not frozen has usually exited (one read, as before).
    async def thaw() -> None:
        for pause in backoff(0.05, 0.25):
            try:
                state = (await transport.get_task(cid)).state
                if state in (ProcessState.PAUSED, ProcessState.PAUSING):
                    await transport.resume(cid)
            except errors.NotFound:
                return
            except errors.SupervisorError as exc:
                _log.debug("process.thaw_refused", container_id=cid, error=str(exc))
            await anyio.sleep(pause)

    with anyio.move_on_after(session.timeouts.cleanup):
        async with task_group() as tg:
            tg.start_soon(thaw)
            await wait()
            tg.cancel_scope.cancel()


async def asked_exit(
    session: Session, container_id: str, process_id: str, pid: int, slot: Slot
) -> ExitStatus:
    """A process's exit asked of containerd (a client without events), or
    the status its own deletion gave its slot meanwhile."""
    cid = container_id
    exec_id = "" if process_id == container_id else process_id
    transport = session.transport
    result: list[ExitStatus] = []

    async def ask() -> None:
        status = await transport.wait(cid, exec_id)
        tracker = session.tracker
        recorded = tracker.exited(cid, process_id, pid, status.exit_code, status.exited_at)
        result.append(recorded if recorded is not None else status)
        tg.cancel_scope.cancel()

    async def deleted() -> None:
        # containerd's Wait on an exec deleted before it ran answers only
        # when the whole task goes: our own delete resolves the slot.
        result.append(await slot.wait())
        tg.cancel_scope.cancel()

    async with task_group() as tg:
        tg.start_soon(ask)
        tg.start_soon(deleted)
    return result[0]
