"""Which processes the client knows of, how they ended, and who waits for them.

One slot per process instance: keyed by container id and process id (the exec
id, or the container id for the init process), and told apart from an earlier
instance of the same ids by its pid.  The tracker decides whether an exit is
news (the first for that instance) or a duplicate, which is what makes EXIT
exactly-once when it reaches us both off the stream and from a reconciliation,
or twice from containerd itself after a restart.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

import anyio

from .. import errors
from .._types import ExitStatus

__all__ = ["ExitTracker", "Slot"]

# Exit code used when containerd no longer knows a process we saw running.
LOST_EXIT_CODE = 255
# How many finished instances to remember, to drop exits that arrive late.
_RECENT = 4096


class Slot:
    """One process instance: its pid once started, its exit once known.

    ``owned`` slots belong to a Process object of this client and live until
    it deletes the process; the others (processes another client made, seen
    on the stream) are dropped as soon as their exit is known, since nothing
    tells us when they are deleted.
    """

    __slots__ = ("pid", "status", "owned", "closed", "failure", "_done")

    def __init__(self) -> None:
        self.pid = 0
        self.status: ExitStatus | None = None
        self.owned = False
        self.closed = False
        # Why the client stopped, when it did not just close.
        self.failure: errors.SupervisorError | None = None
        self._done: anyio.Event | None = None

    def _resolve(self, status: ExitStatus) -> None:
        self.status = status
        if self._done is not None:
            self._done.set()

    def _close(self, failure: errors.SupervisorError | None = None) -> None:
        self.closed = True
        if self.failure is None:
            self.failure = failure
        if self._done is not None:
            self._done.set()

    async def wait(self) -> ExitStatus:
        """Until the instance has exited; cancellable, nothing to clean up.

        Raises:
            Closed: the client closed before the exit was known.
            SupervisorError: the client's event machinery failed with this
                error before the exit was known.
        """
        while self.status is None:
            if self.closed:
                if self.failure is not None:
                    raise errors.raised_again(self.failure)
                raise errors.Closed("the client was closed before the process exited")
            if self._done is None:
                self._done = anyio.Event()
            await self._done.wait()
        return self.status


class _Container:
    __slots__ = ("oom_killed", "processes")

    def __init__(self) -> None:
        self.oom_killed = False
        self.processes: dict[str, Slot] = {}


class ExitTracker:
    """The client's memory of process instances.  Not thread-safe: it lives on
    the event loop that owns the connection."""

    def __init__(self) -> None:
        self._containers: dict[str, _Container] = {}
        # (container, process, pid) of instances already finished and forgotten.
        self._recent: OrderedDict[tuple[str, str, int], None] = OrderedDict()
        self._closed = False
        self._failure: errors.SupervisorError | None = None

    def __len__(self) -> int:
        return sum(len(c.processes) for c in self._containers.values())

    def watch(self, container_id: str, process_id: str, *, owned: bool = False) -> Slot:
        """The slot for a process about to be created or just loaded
        (``owned``: by a Process object of this client)."""
        container = self._containers.get(container_id)
        if container is None:
            container = self._containers[container_id] = _Container()
        slot = container.processes.get(process_id)
        if slot is None:
            slot = container.processes[process_id] = Slot()
            if self._closed:
                slot._close(self._failure)
        if owned:
            slot.owned = True
        return slot

    def close(self, failure: errors.SupervisorError | None = None) -> None:
        """The client closed: every wait still pending (and every wait begun
        later) raises Closed, or ``failure`` when the client stopped because
        its event machinery failed. The first reason given stays."""
        if not self._closed:
            self._closed = True
            self._failure = failure
        for container in self._containers.values():
            for slot in container.processes.values():
                slot._close(self._failure)

    def resolve_deleted(self, container_id: str, process_id: str, status: ExitStatus) -> None:
        """A process was deleted before its exit came: its waiters get ``status``."""
        container = self._containers.get(container_id)
        slot = container.processes.get(process_id) if container is not None else None
        if slot is not None and slot.status is None:
            slot._resolve(status)

    def started(self, container_id: str, process_id: str, pid: int) -> Slot:
        """A process instance is running with ``pid`` (from Start or an event)."""
        slot = self.watch(container_id, process_id)
        if slot.pid != pid:
            if slot.pid and slot.status is not None:
                self._remember(container_id, process_id, slot.pid)
            slot.pid = pid
            if slot.status is not None:
                # A new instance under the same ids; its waiters start afresh.
                slot.status = None
                slot._done = None
        return slot

    def task_started(self, container_id: str, pid: int) -> None:
        """The init process (re)started: the OOM flag counts from here."""
        self.started(container_id, container_id, pid)
        self._containers[container_id].oom_killed = False

    def reset_oom(self, container_id: str) -> None:
        """The init process is about to start anew: no OOM counts yet."""
        container = self._containers.get(container_id)
        if container is not None:
            container.oom_killed = False

    def oom(self, container_id: str) -> None:
        container = self._containers.get(container_id)
        if container is None:
            container = self._containers[container_id] = _Container()
        container.oom_killed = True
        # containerd publishes OOM and EXIT from different goroutines of the
        # shim, so an OOM can come right after the init's EXIT: the exit
        # status kept for delete() learns of it too.
        init = container.processes.get(container_id)
        if init is not None and init.status is not None and not init.status.oom_killed:
            status = init.status
            init.status = ExitStatus(status.exit_code, status.exited_at, True)

    def oom_killed(self, container_id: str) -> bool:
        container = self._containers.get(container_id)
        return container is not None and container.oom_killed

    def exited(
        self,
        container_id: str,
        process_id: str,
        pid: int,
        exit_code: int,
        exited_at: datetime | None,
    ) -> ExitStatus | None:
        """Record an exit; return its status if it is news, ``None`` if a duplicate."""
        oom = process_id == container_id and self.oom_killed(container_id)
        status = ExitStatus(exit_code, exited_at, oom)
        if (container_id, process_id, pid) in self._recent:
            # Seen (and reported) already; but a slot made for the same
            # instance since (a process loaded after its exit came off the
            # stream) must still learn it, silently.
            container = self._containers.get(container_id)
            slot = container.processes.get(process_id) if container is not None else None
            if slot is not None and slot.pid == pid and slot.status is None:
                slot._resolve(status)
            return None
        slot = self.watch(container_id, process_id)
        if slot.pid and pid and slot.pid != pid:
            # A late exit of an earlier instance: news once, never the current one's.
            self._remember(container_id, process_id, pid)
            return status
        if slot.status is not None:
            return None
        if pid:
            slot.pid = pid
        slot._resolve(status)
        if not slot.owned and process_id != container_id:
            # Another client's exec: nothing will say when it is deleted, so
            # keep only the bounded memory of its exit, not a slot.
            self.forget(container_id, process_id)
        return status

    def running(self) -> list[tuple[str, str, int]]:
        """Instances seen started and not yet seen exiting: what a reconcile checks."""
        return [
            (cid, pid_name, slot.pid)
            for cid, container in self._containers.items()
            for pid_name, slot in container.processes.items()
            if slot.pid and slot.status is None
        ]

    def knows(self, container_id: str, process_id: str, pid: int) -> bool:
        """True while the instance with ``pid`` has not been deleted."""
        container = self._containers.get(container_id)
        slot = container.processes.get(process_id) if container is not None else None
        return slot is not None and slot.pid == pid

    def exited_known(self, container_id: str, process_id: str) -> bool:
        """True if the process's current instance has a known exit."""
        container = self._containers.get(container_id)
        slot = container.processes.get(process_id) if container is not None else None
        return slot is not None and slot.status is not None

    def has(self, container_id: str, process_id: str) -> bool:
        """True if a slot exists for the process (any instance)."""
        container = self._containers.get(container_id)
        return container is not None and process_id in container.processes

    def containers(self) -> int:
        """How many containers have slots (for leak checks)."""
        return len(self._containers)

    def forget(self, container_id: str, process_id: str) -> None:
        """The process was deleted: drop its slot (and the container's, if last)."""
        container = self._containers.get(container_id)
        if container is None:
            return
        slot = container.processes.pop(process_id, None)
        # Only an exit already seen makes later copies duplicates: a process
        # deleted before its EXIT came off the stream still has that EXIT to deliver.
        if slot is not None and slot.pid and slot.status is not None:
            self._remember(container_id, process_id, slot.pid)
        if not container.processes:
            del self._containers[container_id]

    def forget_container(self, container_id: str, *, finished_only: bool = False) -> None:
        """Drop the container's slots (``finished_only``: keep the ones a
        Process of ours still waits on, e.g. of a task made since)."""
        container = self._containers.get(container_id)
        if container is None:
            return
        for process_id, slot in list(container.processes.items()):
            if finished_only and slot.owned and slot.status is None:
                continue
            del container.processes[process_id]
            if slot.pid and slot.status is not None:
                self._remember(container_id, process_id, slot.pid)
        if not container.processes:
            del self._containers[container_id]

    def _remember(self, container_id: str, process_id: str, pid: int) -> None:
        self._recent[(container_id, process_id, pid)] = None
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)
