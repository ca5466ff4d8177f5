"""Small frozen values that cross the transport boundary.

The backends decode containerd's messages into these at the edge, so the domain
objects (and the caller) never see a generated protobuf class.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "DEFAULT_RUNTIME",
    "ContainerRecord",
    "ExitStatus",
    "RunResult",
    "ProcessInfo",
    "ProcessState",
    "StdioPaths",
    "TaskEvent",
    "TaskRecord",
    "Topic",
]


DEFAULT_RUNTIME = "io.containerd.runc.v2"
"""The containerd shim a container runs under unless told otherwise."""


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a process ended.

    Attributes:
        exit_code: the process's exit code; ``128 + signal`` when killed by a
            signal (137 for SIGKILL); 255 when containerd lost track of it.
        exited_at: when it exited, as containerd recorded it (UTC).
        oom_killed: whether any process of the container was OOM-killed since
            the container's task last started (only the init process's status
            carries it; see :class:`supervisor.EventInfo`).
    """

    exit_code: int
    exited_at: datetime | None = None
    oom_killed: bool = False


@dataclass(frozen=True, slots=True)
class RunResult:
    """What :meth:`Client.run` returns: how the container's process ended and
    everything it wrote.

    Attributes:
        status: its :class:`ExitStatus`.
        stdout: all it wrote on stdout (with a terminal: all its output).
        stderr: all it wrote on stderr.
    """

    status: ExitStatus
    stdout: bytes
    stderr: bytes

    @property
    def exit_code(self) -> int:
        return self.status.exit_code


class ProcessState(enum.Enum):
    """containerd's view of a process."""

    UNKNOWN = "unknown"
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"
    PAUSING = "pausing"


@dataclass(frozen=True, slots=True)
class StdioPaths:
    """Where the shim finds a process's stdio; empty string for none."""

    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    """A container as containerd stores it."""

    id: str
    spec: dict[str, Any]
    runtime: str
    labels: dict[str, str]
    created_at: datetime | None = None
    snapshotter: str = ""
    snapshot_key: str = ""
    # The image it was made from (containerd's own field; "" for none).
    image: str = ""


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A task's (or exec's) state as containerd reports it."""

    container_id: str
    process_id: str
    pid: int
    state: ProcessState
    stdio: StdioPaths
    exit_status: ExitStatus | None = None


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """One process in a task's pid list."""

    pid: int


class Topic(enum.Enum):
    """The task event topics containerd publishes."""

    CREATE = "/tasks/create"
    START = "/tasks/start"
    EXIT = "/tasks/exit"
    DELETE = "/tasks/delete"
    OOM = "/tasks/oom"
    EXEC_ADDED = "/tasks/exec-added"
    EXEC_STARTED = "/tasks/exec-started"
    PAUSED = "/tasks/paused"
    RESUMED = "/tasks/resumed"
    IO = "/tasks/io"
    CHECKPOINTED = "/tasks/checkpointed"


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One task event off containerd's stream, decoded at the edge.

    ``process_id`` is the exec id for an exec, the container id for the init
    process; an OOM event names only the container.
    """

    namespace: str
    topic: Topic
    container_id: str
    process_id: str
    pid: int = 0
    exit_code: int = 0
    exited_at: datetime | None = None
    timestamp: datetime | None = None
