"""What the embedding application hears: event kinds, their details, and the
protocol it implements to hear them."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = ["Backend", "EventInfo", "EventType"]


class EventType(enum.Enum):
    """The task events delivered to a :class:`Backend`."""

    CREATE = "create"
    START = "start"
    EXIT = "exit"
    OOM = "oom"
    EXEC_ADDED = "exec-added"
    EXEC_STARTED = "exec-started"
    PAUSED = "paused"
    RESUMED = "resumed"
    #: a supervised container's task was made again (``attempt``, ``delay``)
    RESTART = "restart"
    #: a health check's verdict changed (``health``)
    HEALTH = "health"


@dataclass(frozen=True, slots=True)
class EventInfo:
    """Details of one event.

    Attributes:
        container_id: the container the event is about.
        process_id: the exec id, or the container id for the init process (and
            for events about the whole task: CREATE, OOM, PAUSED, RESUMED).
        pid: the process's host pid, where the event has one.
        exit_code: for EXIT; 255 when containerd lost the process's state.
        exited_at: for EXIT, when the process exited.
        oom_killed: for EXIT of the init process: whether any process of the
            container was OOM-killed since the task last started.
        timestamp: when containerd published the event (``None`` for an exit
            found by reconciliation after the stream broke).
        attempt: for RESTART: the restart's number (1 for the first), counted
            over the container's life (``container.restart_count``).
        delay: for RESTART: the back-off waited before it, in seconds.
        health: for HEALTH: the new status (``"healthy"``, ``"unhealthy"``,
            ``"starting"``).
    """

    container_id: str
    process_id: str
    pid: int = 0
    exit_code: int = 0
    exited_at: datetime | None = None
    oom_killed: bool = False
    timestamp: datetime | None = None
    attempt: int = 0
    delay: float = 0.0
    health: str = ""


@runtime_checkable
class Backend(Protocol):
    """Implemented by the embedding application to hear task events.

    Events of one container are delivered one at a time, in order; events of
    different containers concurrently.  Each EXIT is delivered exactly once,
    also when containerd restarted in between.  An exception raised here is
    logged and does not stop later events.

    Example::

        class Daemon:
            async def process_event(self, container_id, event, info):
                if event is supervisor.EventType.EXIT:
                    print(container_id, "exited with", info.exit_code)

        async with supervisor.connect(address, namespace="app", backend=Daemon()) as client:
            ...
    """

    async def process_event(self, container_id: str, event: EventType, info: EventInfo) -> None: ...
