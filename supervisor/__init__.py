"""supervisor: an asyncio supervisor for containerd.

Where things live::

    _client.py      connect(), Client: one namespace over one grpclib channel
    _container.py   Container: a spec + runtime in containerd, its bundle dir
    _task.py        Task: the init process + pause/resume/exec/stats/update
    _process.py     Process: start/kill/wait/resize/close_stdin/delete
    _types.py       frozen values crossing the transport boundary (ExitStatus, Stats...)
    _spec.py        default_spec()/process_spec() and spec checks
    _bundle.py      the per-container directory (user-namespace ownership)
    _ids.py         container/exec id validation
    _config.py      Timeouts, DaemonTimeouts and back-off
    _background.py  work owned across tasks (connect() and Daemon use it)
    _daemon.py      Daemon: an embedded containerd, started, watched, restarted
    _daemon_log.py  containerd's log file followed into structlog
    _daemon_config.py  DaemonConfig and the atomically swapped ConfigStore
    _runtimes.py    Runtime definitions and their wrapper scripts
    errors.py       the one error hierarchy
    _cli*.py        the `supervisor` command (run/exec/ps/kill/stats/events/daemon)
    backends/       transports: containerd over grpclib (the only grpclib user),
                    its health check, the Windows named-pipe channel
    events/         keyed ordered Queue, event monitor, exit tracker, handled-exit
                    ledger, Backend protocol
    fifo/           stdio: Linux FIFOs, Windows served named pipes; anyio byte streams
    _proto/         generated containerd bindings (make protos)
"""

from __future__ import annotations

from . import errors
from ._client import DEFAULT_RUNTIME, Client, connect, default_state_dir
from ._config import DaemonTimeouts, Timeouts
from ._container import Container
from ._daemon import Daemon
from ._daemon_config import ConfigStore, DaemonConfig, ResolvedConfig
from ._process import Process
from ._runtimes import ResolvedRuntime, Runtime
from ._spec import default_spec, process_spec
from ._task import Task
from ._types import (
    CpuStats,
    ExitStatus,
    MemoryStats,
    PidsStats,
    ProcessInfo,
    Stats,
)
from .events import Backend, EventInfo, EventType, Queue

__all__ = [
    # connecting
    "connect",
    "Client",
    "Timeouts",
    "DEFAULT_RUNTIME",
    "default_state_dir",
    # objects the caller keeps
    "Container",
    "Task",
    "Process",
    # the embedded containerd and its runtimes
    "Daemon",
    "DaemonTimeouts",
    "DaemonConfig",
    "ConfigStore",
    "ResolvedConfig",
    "Runtime",
    "ResolvedRuntime",
    # values
    "ExitStatus",
    "Stats",
    "MemoryStats",
    "CpuStats",
    "PidsStats",
    "ProcessInfo",
    # specs
    "default_spec",
    "process_spec",
    # events
    "Backend",
    "EventType",
    "EventInfo",
    "Queue",
    # errors
    "errors",
]
