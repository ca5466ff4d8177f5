"""Probe processes that containerd no longer knows of, found and killed.

containerd cannot always kill what a probe started. Killed (or found hung
and killed) while an exec's start is under way, it takes the shim's request
with it (the shim's ttrpc server cancels the requests of a connection that
closes): the shim kills ``runc exec`` half way, after the probe's process
may already run, and keeps the exec as never started (no pid), so that the
force delete of the probe finds nothing to kill and removes the exec while
its process runs on. The soak finds such processes in one run of three or
so, each started around a SIGKILL of containerd or of the application,
and not deleted with the probes a killed run left. A probe killed at its
timeout leaves its own children running too. Such a process counts against
"never two probes at once" and can run for ever, and no exec names it any
more.

Each probe carries :data:`MARKER` in its environment (``namespace/container
id/exec id`` as the value, inherited by whatever it starts); before each
probe, when none of the container's own probes runs, every process of the
task that carries it with the container's own namespace and id is a stray
and is killed (a pid that names some other process by the time it is read,
or another container's probe, is not). The marker is read from ``/proc``, through a
pidfd opened first, so that a pid used again meanwhile is never signalled.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio

from .. import errors
from .._log import get_logger
from .._timeouts import backoff
from ..spec._builder import inherited_process

if TYPE_CHECKING:
    from ..domain._task import Task

__all__ = ["MARKER", "kill_strays", "probe_process"]

# The environment variable that names a health probe's exec.
MARKER = "SUPERVISOR_HEALTH_PROBE"

_log = get_logger("supervision")

# How long a SIGKILLed stray is waited for (one in uninterruptible sleep
# may take a while; the probe after it does not wait for ever).
_EXIT_BOUND = 2.0

_UNKNOWN = (errors.Unavailable, errors.DeadlineExceeded, errors.Cancelled)


def probe_process(task: Task, exec_id: str, argv: Sequence[str]) -> dict[str, Any]:
    """The probe's OCI process: the container's own settings, as ``docker
    exec`` runs it, with :data:`MARKER` added to its environment."""
    body = inherited_process(task.container.spec, list(argv))
    env = [e for e in body.get("env") or [] if not str(e).startswith(f"{MARKER}=")]
    body["env"] = [*env, f"{MARKER}={_owner(task)}{exec_id}"]
    return body


def _owner(task: Task) -> str:
    return f"{task._session.namespace}/{task.container.id}/"


async def kill_strays(task: Task) -> int:
    """SIGKILL every process of ``task`` that carries :data:`MARKER`; the
    caller runs no probe of the container meanwhile. Waits for a
    containerd that does not answer (cancellable); a task gone is nothing
    to do. Returns how many were killed."""
    if not hasattr(os, "pidfd_open"):
        return 0  # no /proc to read the marker from
    cid = task.container.id
    owner = _owner(task)
    for pause in backoff(0.05, 2.0):
        try:
            infos = await task._session.transport.pids(cid)
            break
        except errors.NotFound:
            return 0
        except _UNKNOWN:
            await anyio.sleep(pause)
        except errors.SupervisorError as exc:
            _log.warning("supervision.strays_unlisted", container_id=cid, error=str(exc))
            return 0
    killed = 0
    for info in infos:
        if info.pid <= 0 or info.pid == task.pid:
            continue
        # When it started says which fault left it.
        started = _started_at(info.pid)
        probe_id = await _kill_if_marked(info.pid, owner)
        if probe_id is not None:
            killed += 1
            _log.warning(
                "supervision.probe_stray",
                container_id=cid,
                pid=info.pid,
                probe=probe_id,
                started=started,
            )
    return killed


async def _kill_if_marked(pid: int, owner: str) -> str | None:
    """The probe id of ``pid`` if it carries the marker naming ``owner``
    (it is then killed, and waited for until it has exited, within a
    bound), else None."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None  # gone already
    try:
        # Read after the pidfd is open: if the pid now names another
        # process, the signal below goes to the pidfd's, which is gone.
        probe_id = _marker_of(pid)
        if probe_id is None or not probe_id.startswith(owner):
            return None
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        # A pidfd reads as ready once its process has exited: the next
        # probe starts only after this one is gone.
        with anyio.move_on_after(_EXIT_BOUND):
            await anyio.wait_readable(fd)
        return probe_id[len(owner) :]
    except OSError:
        return None
    finally:
        os.close(fd)


def _marker_of(pid: int) -> str | None:
    # /proc is read from memory: no thread needed.
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
    except OSError:
        return None
    prefix = f"{MARKER}=".encode()
    found = next((v for v in environ.split(b"\0") if v.startswith(prefix)), None)
    return None if found is None else found[len(prefix) :].decode("utf-8", "replace")


def _started_at(pid: int) -> str | None:
    """When the process started (UTC, ISO 8601), if /proc says."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    at = boot + ticks / os.sysconf("SC_CLK_TCK")
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
