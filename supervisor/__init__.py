"""supervisor: an asyncio supervisor for containerd.

Where things live, by layer (each layer imports only from those below it;
``docs/architecture.md`` draws it, ``tests/unit/test_architecture.py`` holds
the code to it)::

    cli/  testing/  this file   the `supervisor` command; the pytest plugin;
                                the public names (loaded on first use)
    daemon/         the embedded containerd: Daemon, its child process and
                    lock (per platform), config store, runtimes, log follower
    ---- the core (never imports daemon/, cli/ or testing/) ----
    client/         connect() and Client: one namespace; containers, run/running,
                    restore, and the image calls handed to images/
    supervision/    restart policies and health checks, enforced by the
                    client holding the state directory's lock
    images/         pull, import/export, unpack; a container's snapshot as its
                    root filesystem (a plug-in: loaded on first use)
    network/        CNI networks: namespaces, plugins, ports, DNS files (a plug-in)
    domain/         Container, Task, Process and the Session they share; process
                    creation, stats streams, the Rootfs seam the image layer fills
    events/         keyed ordered Queue, event monitor, exit tracker,
                    handled-exit ledger, Backend protocol
    backends/       transports: the Transport protocol, containerd over grpclib
                    (the only grpclib user), its image services, an in-memory
                    fake, runhcs options, health checks, the named-pipe channel,
                    a blocking List reader without grpclib (the command's ps)
    fifo/           stdio: Linux FIFOs, Windows served named pipes, log files
                    (client-side pump or shim-run logger; raw or CRI format,
                    rotated, read back), reattaching
    spec/           OCI specs and their checks, resources, bundle directories
    stats/          the stats model, the shared sampler, per-process summaries
    oci/            OCI image values: descriptors, manifests, digests, platforms,
                    image records and mounts (the image transports carry them)
    _types.py       frozen values crossing the transport boundary
    _platform.py    every per-platform choice (Linux, Windows)
    _paths.py       owned directories, files opened without following links
    _background.py  background work owned by a context entered in another task
    _cleanup.py     shielded, bounded clean-up; the core's task groups
    _ids.py  _timeouts.py  _log.py  errors.py
                    id checks; every wait's bound; stdlib logging (NullHandler);
                    the one error hierarchy
    _proto/         generated containerd bindings (make protos)

``import supervisor`` loads nothing but this file: every public name loads
its module when first used (grpclib, the generated bindings, the daemon and
the command only when something needs them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from . import errors
    from ._timeouts import Timeouts
    from ._types import (
        DEFAULT_RUNTIME,
        ExitStatus,
        ProcessInfo,
        ProcessState,
        RunResult,
    )
    from .client._client import Client
    from .client._connect import connect, default_state_dir
    from .daemon import (
        ConfigStore,
        Daemon,
        DaemonConfig,
        DaemonTimeouts,
        ResolvedConfig,
        ResolvedRuntime,
        Runtime,
    )
    from .domain._archive import ArchiveStat, ArchiveStream
    from .domain._checkpoint_store import Checkpoint
    from .domain._container import Container
    from .domain._logs import read_logs
    from .domain._process import Process
    from .domain._supervised import Health, HealthCheck, LastExit, ProbeResult, RestartPolicy
    from .domain._task import Task
    from .events import Backend, EventInfo, EventType, Queue
    from .fifo._log_read import LogLine
    from .oci._image_config import ImageConfig, ImageHealthcheck
    from .spec._builder import default_spec, process_spec
    from .stats._model import (
        BlkioDevice,
        BlkioEntry,
        BlkioStats,
        CpuStats,
        MemoryStats,
        NetworkStats,
        PidsStats,
        Stats,
    )
    from .stats._summary import ProcessSummary

__version__ = "0.2.0"

__all__ = [
    "__version__",
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
    # the embedded containerd and its runtimes (loaded on first use)
    "Daemon",
    "DaemonTimeouts",
    "DaemonConfig",
    "ConfigStore",
    "ResolvedConfig",
    "Runtime",
    "ResolvedRuntime",
    # values
    "ExitStatus",
    "ProcessState",
    "RunResult",
    "Stats",
    "MemoryStats",
    "CpuStats",
    "PidsStats",
    "BlkioStats",
    "BlkioDevice",
    "BlkioEntry",
    "NetworkStats",
    "ProcessInfo",
    "ProcessSummary",
    # logs
    "LogLine",
    "read_logs",
    # images, files in and out
    "ImageConfig",
    "ImageHealthcheck",
    "ArchiveStat",
    "ArchiveStream",
    # checkpoints
    "Checkpoint",
    # supervision
    "RestartPolicy",
    "HealthCheck",
    "Health",
    "ProbeResult",
    "LastExit",
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

# Where each public name lives. Nothing loads with `import supervisor` itself:
# a name loads its module when first used, so a subpackage or the command
# pays only for what it touches, and the daemon layer (which pulls in
# grpclib) only when one of its names is asked for.
_LOCATIONS: dict[str, str] = {
    "errors": ".errors",
    "connect": ".client._connect",
    "default_state_dir": ".client._connect",
    "Client": ".client._client",
    "Timeouts": "._timeouts",
    "Container": ".domain._container",
    "Task": ".domain._task",
    "Process": ".domain._process",
    "default_spec": ".spec._builder",
    "process_spec": ".spec._builder",
    "ProcessSummary": ".stats._summary",
    "LogLine": ".fifo._log_read",
    "read_logs": ".domain._logs",
    "ImageConfig": ".oci._image_config",
    "ImageHealthcheck": ".oci._image_config",
    "ArchiveStat": ".domain._archive",
    "ArchiveStream": ".domain._archive",
    "Checkpoint": ".domain._checkpoint_store",
    **dict.fromkeys(
        (
            "DEFAULT_RUNTIME",
            "ExitStatus",
            "ProcessState",
            "RunResult",
            "ProcessInfo",
        ),
        "._types",
    ),
    **dict.fromkeys(
        (
            "Stats",
            "MemoryStats",
            "CpuStats",
            "PidsStats",
            "BlkioStats",
            "BlkioDevice",
            "BlkioEntry",
            "NetworkStats",
        ),
        ".stats._model",
    ),
    **dict.fromkeys(("Backend", "EventType", "EventInfo", "Queue"), ".events"),
    **dict.fromkeys(
        ("RestartPolicy", "HealthCheck", "Health", "ProbeResult", "LastExit"),
        ".domain._supervised",
    ),
    **dict.fromkeys(
        (
            "Daemon",
            "DaemonTimeouts",
            "DaemonConfig",
            "ConfigStore",
            "ResolvedConfig",
            "Runtime",
            "ResolvedRuntime",
        ),
        ".daemon",
    ),
}


def __getattr__(name: str) -> _Any:
    location = _LOCATIONS.get(name)
    if location is None:
        raise AttributeError(f"module 'supervisor' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(location, __name__)
    value = module if name == "errors" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LOCATIONS))
