"""Shims that an earlier containerd lost, and that nobody else would end.

A shim (and the ``runc init`` it made) can exist before containerd has
recorded the task: killed at that moment, containerd comes back without any
record of it, so neither it, the library nor ``ctr`` can ever see or delete
that task, and the shim waits forever. A shim can also be lost after the
restart: one of the same id as a task the new containerd knows (served by
another shim) is spared while that task lives and lost once it is deleted;
and one whose bundle directory containerd removed (a clean-up after an
outage) serves nothing any containerd will ever load again.

So after each (re)start, and now and then while containerd runs, a shim of
*our* containerd's address whose task this containerd does not know is such
an orphan, and is killed with what it started, if it was already running
when this containerd started, if its bundle (the shim's working directory)
is gone, or if its container is gone too (an application killed in the
middle of a task's create can leave the shim of a task containerd never
recorded), or if it has served no task for longer than any create takes
(``lost_create``: the same leftover, its container kept; containerd would
refuse a new task of that id while the shim's bundle is there). A look
that containerd could not answer leaves the shim for the next look.

Only such shims: one this containerd started for a create in flight is
younger than it and has its bundle and its container (both made before the
shim), and one it loaded after the restart is a task it knows. The shim's own ``start`` and
``delete`` commands are never counted. Linux only (``/proc``); the scans of
``/proc`` run off the event loop.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from .. import errors
from .._log import get_logger

if TYPE_CHECKING:
    from ..backends.containerd import ContainerdTransport

__all__ = ["Shim", "reap_orphans", "shims_of"]

_log = get_logger("daemon")


@dataclass(frozen=True, slots=True)
class Shim:
    pid: int
    namespace: str
    container_id: str
    started: int  # clock ticks after boot (/proc/<pid>/stat field 22)
    # Its working directory, the bundle containerd made for the task, was
    # removed (by containerd, which will never load this shim again).
    bundle_gone: bool = False


def _start_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields follow the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _bundle_gone(pid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}/cwd").st_nlink == 0
    except OSError:
        return False  # gone, or not ours to look at: no verdict


def _uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def shims_of(address: str) -> list[Shim]:
    """The shim processes (of this user) serving the containerd at ``address``."""
    found: list[Shim] = []
    me = os.geteuid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if not argv or not os.path.basename(argv[0]).startswith("containerd-shim"):
            continue
        if argv[-1] in ("start", "delete"):
            continue  # the binary run by containerd to start or clean up a shim
        options = dict(zip(argv[1::2], argv[2::2], strict=False))
        if options.get("-address") != address or _uid(pid) != me:
            continue
        started = _start_ticks(pid)
        namespace, cid = options.get("-namespace"), options.get("-id")
        if started is not None and namespace and cid:
            found.append(Shim(pid, namespace, cid, started, _bundle_gone(pid)))
    return found


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        if len(fields) > 1 and fields[1] == str(pid).encode():
            children.append(int(entry))
    return children


def _kill(shim: Shim) -> None:
    # What it started first (runc init): the shim reaps it no more once gone.
    for child in _children(shim.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(shim.pid, signal.SIGKILL)


async def reap_orphans(
    address: str,
    containerd_pid: int,
    rpc_timeout: float,
    pending: dict[tuple[int, int], float] | None = None,
    lost_create: float = 120.0,
) -> int:
    """Kill the shims of ``address`` whose task containerd ``containerd_pid``
    does not know and that are older than it, lost their bundle, serve a
    container containerd does not know either, or were seen without a task
    ``lost_create`` seconds ago already (in ``pending``, which the caller
    keeps from one look to the next); how many were killed."""
    born = _start_ticks(containerd_pid)
    if born is None:
        return 0
    shims = await anyio.to_thread.run_sync(shims_of, address)
    if pending is None:
        pending = {}
    alive = {(s.pid, s.started) for s in shims}
    for key in [k for k in pending if k not in alive]:
        del pending[key]
    if not shims:
        return 0
    from ..backends.containerd import ContainerdTransport

    killed = 0
    for namespace in sorted({s.namespace for s in shims}):
        transport = ContainerdTransport.open(address, namespace, rpc_timeout=rpc_timeout)
        try:
            try:
                known = {t.container_id for t in await transport.list_tasks()}
            except errors.SupervisorError:
                continue  # not sure: leave them for the next look
            for shim in shims:
                if shim.namespace != namespace:
                    continue
                key = (shim.pid, shim.started)
                if shim.container_id in known:
                    pending.pop(key, None)
                    continue
                first = pending.setdefault(key, anyio.current_time())
                stuck = anyio.current_time() - first >= lost_create
                if not stuck and not await _lost(transport, shim, born):
                    continue
                pending.pop(key, None)
                await anyio.to_thread.run_sync(_kill, shim)
                killed += 1
                _log.warning(
                    "daemon.orphaned_shim_killed",
                    pid=shim.pid,
                    namespace=namespace,
                    container_id=shim.container_id,
                    bundle_gone=shim.bundle_gone,
                )
        finally:
            await transport.aclose()
    return killed


async def _lost(transport: ContainerdTransport, shim: Shim, born: int) -> bool:
    # ``shim`` serves no task this containerd knows.
    if shim.started < born or shim.bundle_gone:
        return True
    # Younger than containerd, with its bundle: a create in flight, unless
    # its container is gone too (containerd makes the container before the
    # shim; an application killed mid-create can leave the shim of a task
    # containerd never recorded, and its container deleted since) or it has
    # been so for longer than any create takes (the caller's pending).
    try:
        await transport.get_container(shim.container_id)
    except errors.NotFound:
        return True
    except errors.SupervisorError:
        return False  # not sure: leave it for the next look
    return False
