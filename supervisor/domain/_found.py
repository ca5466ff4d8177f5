"""Processes found again: loaded or restored after the application's own
restart, with what happened to them while nobody listened (their exits,
an OOM kill their cgroup counted)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .. import errors
from .._log import get_logger
from .._types import ExitStatus, TaskEvent, Topic

if TYPE_CHECKING:
    from .._types import TaskRecord
    from ._session import Session

__all__ = ["oom_killed", "report_found"]

_log = get_logger("container")


async def oom_killed(
    session: Session, loaded: Mapping[str, tuple[TaskRecord, Sequence[TaskRecord]]]
) -> set[str]:
    """Of the tasks just loaded (container id: the task's record and its
    execs'), those with a process found stopped whose cgroup counted an OOM
    kill.

    No event can tell: an OOM while nobody listened is gone from the stream.
    But the task's cgroup lives until the task is deleted, and its OOM-kill
    counter (v1 ``memory.oom_control``, v2 ``memory.events``) counts every
    kill in the task's life. Only tasks with a stopped process are asked,
    all in one Metrics call, so loading running tasks costs nothing more.
    """
    wanted = [
        cid
        for cid, (record, execs) in loaded.items()
        if any(r.exit_status is not None for r in (record, *execs))
    ]
    if not wanted:
        return set()
    try:
        samples = await session.transport.metrics(wanted)
    except (errors.Unavailable, errors.DeadlineExceeded, errors.Cancelled):
        raise
    except errors.SupervisorError as exc:
        # A runtime without cgroup metrics: the exits are still reported,
        # without what cannot be known.
        _log.warning("task.oom_unknown", containers=len(wanted), error=str(exc))
        return set()
    return {cid for cid, sample in samples.items() if sample.memory.oom_kills}


def report_found(
    session: Session,
    container_id: str,
    found: list[tuple[TaskRecord, ExitStatus]],
    *,
    oom: bool,
) -> None:
    """Processes found stopped: they exited while nobody here listened
    (the application's own restart). The backend hears each exit now,
    once (the tracker drops a copy from the stream), and, when the
    cgroup counted an OOM kill, the OOM first, as it would have live:
    the init's exit then carries ``oom_killed``."""
    cid = container_id
    if oom:
        news = any(
            not session.ledger.handled(cid, r.process_id, r.pid, status.exited_at)
            for r, status in found
        )
        if news:
            event = TaskEvent(session.raw_transport.namespace, Topic.OOM, cid, cid)
            session.monitor.handle(event)
        else:
            # The earlier run's backend handled these exits (and heard the
            # OOM then): the status alone learns it.
            session.tracker.oom(cid)
    for r, status in found:
        session.monitor.found_exited(cid, r.process_id, r.pid, status.exit_code, status.exited_at)
