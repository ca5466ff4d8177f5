"""The one event subscription of a client, kept alive through containerd
restarts, and what it does with each event.

Lifecycle of a subscription::

    subscribe -> publish a sync marker -> read until the marker comes back
      (the subscription is now provably live) -> reconcile (only after a
      break: ask containerd how every process we saw running is doing, and
      report the exits we missed) -> read events until the stream breaks
      -> back off -> subscribe again ...

containerd keeps no event log, so exits published while we were not
subscribed are found by the reconciliation; exits seen both ways, or sent
twice by containerd after its restart, are dropped by the tracker.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .. import errors
from .._log import get_logger
from .._timeouts import Timeouts, backoff
from .._types import ProcessState, TaskEvent, TaskRecord, Topic
from ..backends.base import Sync, Transport
from ._ledger import ExitLedger, NullLedger
from ._queue import Queue
from ._tracker import LOST_EXIT_CODE, ExitTracker
from ._types import Backend, EventInfo, EventType

__all__ = ["EventMonitor"]

_log = get_logger("events")

_DELIVERED: dict[Topic, EventType] = {
    Topic.CREATE: EventType.CREATE,
    Topic.START: EventType.START,
    Topic.OOM: EventType.OOM,
    Topic.EXEC_ADDED: EventType.EXEC_ADDED,
    Topic.EXEC_STARTED: EventType.EXEC_STARTED,
    Topic.PAUSED: EventType.PAUSED,
    Topic.RESUMED: EventType.RESUMED,
}

# What the tracker needs when no backend listens: exits resolve waits, OOM
# sets oom_killed, deletes drop slots of processes deleted by somebody else.
# Leaving out create/start (the largest messages) halves the events a
# lifecycle costs to decode; Process.start clears the OOM flag itself.
_TRACKER_TOPICS = (Topic.EXIT, Topic.OOM, Topic.DELETE)


class EventMonitor:
    """Feeds the tracker (and the application's backend, if any) from the stream."""

    def __init__(
        self,
        transport: Transport,
        tracker: ExitTracker,
        *,
        backend: Backend | None,
        queue: Queue | None,
        timeouts: Timeouts,
        ledger: ExitLedger | None = None,
    ) -> None:
        self._transport = transport
        self._tracker = tracker
        self._backend = backend
        self._queue = queue
        self._timeouts = timeouts
        self._ledger = ledger if ledger is not None else NullLedger()
        self.subscriptions = 0
        self.live = False

    @property
    def tracker(self) -> ExitTracker:
        return self._tracker

    @property
    def ledger(self) -> ExitLedger:
        return self._ledger

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Subscribe and keep subscribing; report started once the first
        subscription is live, or raise if that first attempt fails.

        A broken stream (Unavailable, Cancelled, DeadlineExceeded) is
        resubscribed with back-off for as long as it takes; any other error,
        Unknown included, is raised: the owner then fails every waiter."""
        pauses = backoff(self._timeouts.resubscribe_initial, self._timeouts.resubscribe_max)
        first = True
        while True:
            try:
                topics = None if self._backend is not None else _TRACKER_TOPICS
                async with self._transport.subscribe(topics) as stream:
                    await self._sync(stream)
                    self.subscriptions += 1
                    if not first:
                        await self._reconcile()
                        _log.info(
                            "events.resubscribed",
                            namespace=self._transport.namespace,
                            subscriptions=self.subscriptions,
                        )
                    self.live = True
                    if first:
                        first = False
                        task_status.started()
                    pauses = backoff(
                        self._timeouts.resubscribe_initial, self._timeouts.resubscribe_max
                    )
                    async for item in stream:
                        if isinstance(item, TaskEvent):
                            self.handle(item)
                _log.warning("events.stream_ended", namespace=self._transport.namespace)
            except (errors.Unavailable, errors.Cancelled, errors.DeadlineExceeded) as exc:
                # Only what a restarting or overloaded containerd causes is
                # retried. Anything else (Unknown above all: a reply that does
                # not decode, a bug) would fail again on every attempt, so it
                # ends the monitor and fails the client's callers.
                if first:
                    raise
                if self.live:
                    _log.warning(
                        "events.stream_broken", namespace=self._transport.namespace, error=str(exc)
                    )
            self.live = False
            await anyio.sleep(next(pauses))

    async def _sync(self, stream: Any) -> None:
        # Until our own marker comes back we cannot know containerd has
        # registered the subscription, and a marker published before that is
        # simply lost: so publish again, with back-off, until one returns.
        # Events read meanwhile are real and are handled.
        token = uuid.uuid4().hex
        try:
            await self._sync_once(stream, token)
        except BaseExceptionGroup as group:
            raise errors.unwrap_group(group) from None

    async def _sync_once(self, stream: Any, token: str) -> None:
        with anyio.fail_after(self._timeouts.sync):
            async with anyio.create_task_group() as tg:

                async def publish() -> None:
                    t = self._timeouts
                    for pause in backoff(t.sync_publish_initial, t.sync_publish_max):
                        await self._transport.sync(token)
                        await anyio.sleep(pause)

                tg.start_soon(publish)
                async for item in stream:
                    if isinstance(item, Sync):
                        if item.token == token:
                            tg.cancel_scope.cancel()
                            return
                    elif isinstance(item, TaskEvent):
                        self.handle(item)
        raise errors.Unavailable("event stream ended before it was live")

    def handle(self, event: TaskEvent) -> None:
        """Apply one event to the tracker and pass it on to the backend."""
        topic = event.topic
        tracker = self._tracker
        cid = event.container_id
        if topic is Topic.EXIT:
            self._exited(
                cid, event.process_id, event.pid, event.exit_code, event.exited_at, event.timestamp
            )
            return
        if topic is Topic.START:
            tracker.task_started(cid, event.pid)
        elif topic is Topic.EXEC_STARTED:
            tracker.started(cid, event.process_id, event.pid)
        elif topic is Topic.OOM:
            tracker.oom(cid)
        elif topic is Topic.DELETE:
            pid, process_id = event.pid, event.process_id
            if pid and tracker.knows(cid, process_id, pid):
                if not tracker.exited_known(cid, process_id):
                    # Deleted by containerd itself (its shim gone while it was
                    # down) without a TaskExit: the delete's status is the exit.
                    code, at = event.exit_code, event.exited_at
                    self._exited(cid, process_id, pid, code, at, event.timestamp)
            if event.process_id == cid:
                # The task is gone, and every exec with it: none of their
                # exits can be found again, by this client or after a restart.
                tracker.forget_container(cid, finished_only=True)
                self._ledger.prune_container(cid)
            elif tracker.exited_known(cid, event.process_id):
                tracker.forget(cid, event.process_id)
                self._ledger.forget(cid, event.process_id)
            return
        kind = _DELIVERED.get(topic)
        if kind is not None:
            self._deliver(
                kind, EventInfo(cid, event.process_id, event.pid, timestamp=event.timestamp)
            )

    def found_exited(self, cid: str, process_id: str, pid: int, code: int, at: Any) -> None:
        """A process found stopped when loaded (it exited while no client of
        this process listened, e.g. across the application's own restart):
        one EXIT for it, as if it had come off the stream, unless the ledger
        says an earlier run's backend handled this very exit already."""
        if self._ledger.handled(cid, process_id, pid, at):
            self._tracker.exited(cid, process_id, pid, code, at)  # waits resolve, silently
            _log.debug("events.exit_handled_before", container_id=cid, process_id=process_id)
            return
        self._exited(cid, process_id, pid, code, at)

    def _exited(
        self, cid: str, process_id: str, pid: int, code: int, at: Any, timestamp: Any = None
    ) -> None:
        status = self._tracker.exited(cid, process_id, pid, code, at)
        if status is None:
            _log.debug("events.duplicate_exit", container_id=cid, process_id=process_id, pid=pid)
            return
        # One per process life: DEBUG, like the other lifecycle lines.
        _log.debug(
            "process.exit",
            container_id=cid,
            process_id=process_id,
            pid=pid,
            exit_code=status.exit_code,
            oom_killed=status.oom_killed,
        )
        self._deliver(
            EventType.EXIT,
            EventInfo(
                cid,
                process_id,
                pid,
                status.exit_code,
                status.exited_at,
                status.oom_killed,
                timestamp,
            ),
        )

    def report(self, kind: EventType, info: EventInfo) -> None:
        """Hand an event the library made itself (RESTART, HEALTH) to the
        backend, in order with the container's other events."""
        self._deliver(kind, info)

    def _deliver(self, kind: EventType, info: EventInfo) -> None:
        backend, queue, ledger = self._backend, self._queue, self._ledger
        if backend is None or queue is None:
            return
        if kind is not EventType.EXIT:
            queue.append(
                info.container_id,
                functools.partial(backend.process_event, info.container_id, kind, info),
            )
            return
        tracker = self._tracker

        async def handle_exit() -> None:
            await backend.process_event(info.container_id, kind, info)
            # Only once handled, and only while the process still exists: an
            # exit handler that deleted it (the usual thing) needs no record.
            if tracker.knows(info.container_id, info.process_id, info.pid):
                await ledger.record_async(
                    info.container_id, info.process_id, info.pid, info.exited_at
                )

        queue.append(info.container_id, handle_exit)

    async def _reconcile(self) -> None:
        """Report every exit that happened while we were not subscribed."""
        running = self._tracker.running()
        if not running:
            return
        tasks: dict[str, TaskRecord] = {
            t.container_id: t for t in await self._transport.list_tasks()
        }
        missed = 0
        for cid, process_id, pid in running:
            task = tasks.get(cid)
            record: TaskRecord | None
            if process_id == cid:
                record = task if task is not None and task.pid == pid else None
            elif task is None:
                record = None
            else:
                try:
                    record = await self._transport.get_task(cid, process_id)
                except errors.NotFound:
                    record = None
                if record is not None and record.pid != pid:
                    record = None
            if record is None:
                # Gone without a trace: containerd lost it (or someone deleted it).
                self._exited(cid, process_id, pid, LOST_EXIT_CODE, None)
                missed += 1
            elif record.state is ProcessState.STOPPED and record.exit_status is not None:
                self._exited(
                    cid, process_id, pid, record.exit_status.exit_code, record.exit_status.exited_at
                )
                missed += 1
        _log.info(
            "events.reconciled",
            namespace=self._transport.namespace,
            checked=len(running),
            exits=missed,
        )
