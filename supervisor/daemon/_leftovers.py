"""Task directories a killed containerd left that its successor cannot clean.

containerd 1.6 makes a task's bundle directory
(``<state>/io.containerd.runtime.v2.task/<namespace>/<id>``) before it starts
the task's shim, and the shim writes the ``runtime`` file into it when it
creates the container, before ``runc create``. A containerd killed between
the two leaves a directory without that file. Its successor finds the
directory at start, asks the shim binary to clean up after the dead shim,
and that clean-up fails because it reads ``runtime`` ("failed to clean up
after shim disconnected"): the directory stays, and every later create of a
task for that id fails ("mkdir ...: file exists").

So before the Daemon starts containerd (the first time, and after a crash)
it removes such directories, and only those, under its own containerd state
directory: a directory of the exact shape, no symlink, without ``runtime``
nor ``init.pid`` (so ``runc create`` never ran: no container, no runc state
and no exit to report), with nothing mounted in it, and whose shim is gone:
no other process has it as its working directory, no shim's ``start`` or
``delete`` command runs for it, and the socket its ``address`` file names
accepts no connection. A shim of ours that still serves such a directory
(containerd was killed after it started the shim, before the shim's create)
is killed first, with what it started: its create can never end, and the
containerd started next would load it, find no task in it, have it reaped
(see ``_orphans``), and then fail to clean its directory up, wedging the id
while it runs. A directory with ``runtime`` is left to containerd, whose own
clean-up runs ``runc delete`` and reports the task's exit. The matching work
directory under containerd's root goes with it.

containerd must not run meanwhile: the removal holds the lock bbolt takes on
containerd's metadata database for as long as containerd runs, and does
nothing if it is held. Linux only (``/proc``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from .._log import get_logger

__all__ = ["TaskDirs", "has_leftover_tasks", "remove_leftover_tasks"]

_log = get_logger("daemon")

TASK_PLUGIN = "io.containerd.runtime.v2.task"
METADATA_DB = Path("io.containerd.metadata.v1.bolt") / "meta.db"
# What the shim's create leaves: ``runtime`` before runc create, ``init.pid``
# by it.
_MARKERS = ("runtime", "init.pid")
_CONNECT_TIMEOUT = 1.0
_KILL_WAIT = 5.0
_OCTAL = re.compile(rb"\\([0-7]{3})")


@dataclass(frozen=True, slots=True)
class TaskDirs:
    """Where one containerd keeps its tasks.

    Attributes:
        root: containerd's root directory (its metadata database, the tasks'
            work directories).
        state: containerd's state directory (the tasks' bundle directories).
        address: containerd's gRPC address (its shims name it on their
            command line).
    """

    root: Path
    state: Path
    address: str


def _is_plain_dir(path: Path) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()


def _entries(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _mount_points() -> list[str]:
    points: list[str] = []
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4:
                    # Spaces and the like are octal escapes there.
                    raw = _OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), fields[4])
                    points.append(os.fsdecode(raw))
    except OSError:
        return ["/"]  # no verdict: everything counts as mounted
    return points


def _mounted_within(path: Path, points: list[str]) -> bool:
    top = str(path)
    if any(p == top or p.startswith(top + "/") for p in points):
        return True
    device = os.lstat(path).st_dev
    for current, dirs, _files in os.walk(path, followlinks=False):
        for name in dirs:
            with contextlib.suppress(OSError):
                if os.lstat(os.path.join(current, name)).st_dev != device:
                    return True
    return False


@dataclass(frozen=True, slots=True)
class _Holders:
    """Who holds what, read from ``/proc`` once."""

    cwd: dict[str, set[int]]  # a bundle path: the processes working there
    shims: dict[str, set[int]]  # "namespace/id": its shim processes of our address
    busy: set[str]  # "namespace/id": a shim's start or delete command runs for it


def _argv(pid: str) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _holders(paths: set[str], address: str) -> _Holders:
    holders = _Holders({}, {}, set())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            cwd = os.readlink(f"/proc/{entry}/cwd")
            if cwd in paths:
                holders.cwd.setdefault(cwd, set()).add(int(entry))
        argv = _argv(entry)
        if not argv or not os.path.basename(argv[0]).startswith("containerd-shim"):
            continue
        options = dict(zip(argv[1::2], argv[2::2], strict=False))
        if options.get("-address") != address:
            continue
        name = f"{options.get('-namespace')}/{options.get('-id')}"
        if argv[-1] in ("start", "delete"):
            holders.busy.add(name)
        else:
            holders.shims.setdefault(name, set()).add(int(entry))
    return holders


def _alive(pid: int) -> bool:
    # A zombie counts as gone: nobody may reap the shims of a dead containerd.
    # Every thread is looked at: a Go program's leading thread turns zombie
    # while the others still exit, and its files (the shim's socket, still
    # accepting connections) close only with the last of them.
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        if data[data.rfind(b")") + 2 :][:1] not in (b"Z", b"X"):
            return True
    return False


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/stat", "rb") as f:
                    data = f.read()
                fields = data[data.rfind(b")") + 2 :].split()
                if len(fields) > 1 and fields[1] == str(pid).encode():
                    found.append(int(entry))
    return found


def _kill_shims(pids: set[int]) -> bool:
    """SIGKILL the shims ``pids`` and what they started; whether all of them
    are gone within a bound."""
    for pid in pids:
        for child in _children(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + _KILL_WAIT
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _socket_answers(bundle: Path) -> bool:
    """Whether the shim socket the bundle's ``address`` file names accepts a
    connection (also True when that cannot be told)."""
    try:
        fd = os.open(bundle / "address", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        text = os.read(fd, 4096).decode(errors="replace").strip()
    finally:
        os.close(fd)
    path = text.removeprefix("unix://")
    if not path:
        return False
    if not path.startswith("/"):
        return True  # not the shape containerd 1.6 writes: no verdict
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(_CONNECT_TIMEOUT)
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            return False
        except OSError:
            return True
    return True


def _candidates(dirs: TaskDirs) -> list[tuple[str, str, Path]]:
    """Bundle directories of the expected shape that ``runc create`` never
    reached."""
    found: list[tuple[str, str, Path]] = []
    top = dirs.state / TASK_PLUGIN
    if not _is_plain_dir(top):
        return found
    for ns in _entries(top):
        if ns.startswith(".") or not _is_plain_dir(top / ns):
            continue
        for cid in _entries(top / ns):
            bundle = top / ns / cid
            if cid.startswith(".") or not _is_plain_dir(bundle):
                continue
            if any(os.path.lexists(bundle / m) for m in _MARKERS):
                continue
            found.append((ns, cid, bundle))
    return found


def has_leftover_tasks(dirs: TaskDirs) -> bool:
    """Whether a bundle directory of the shape :func:`remove_leftover_tasks`
    looks further at is there (a few ``stat`` calls; never raises)."""
    try:
        return bool(_candidates(dirs))
    except OSError:
        return True  # let the removal look, and say what it found


def remove_leftover_tasks(dirs: TaskDirs) -> list[str]:
    """Remove the bundle (and work) directories of tasks whose create a
    killed containerd left half done and whose shim is gone; the
    ``namespace/id`` of each removed. Nothing is removed while containerd
    runs (its metadata database is locked)."""
    import fcntl  # Linux only: the module is imported on Windows too

    try:
        db = os.open(dirs.root / METADATA_DB, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []  # no containerd ever ran here: it left nothing
    try:
        try:
            fcntl.flock(db, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            _log.warning("daemon.leftover_check_skipped", reason="containerd runs")
            return []
        try:
            return _remove(dirs)
        except OSError as exc:
            # The next start looks again; this one must not be stopped by it.
            _log.warning("daemon.leftover_check_failed", error=str(exc))
            return []
    finally:
        os.close(db)  # releases the lock


def _shim_gone(holders: _Holders, ns: str, cid: str, bundle: Path) -> bool:
    """Whether no shim holds ``bundle`` any more: a shim of ours for it, whose
    create can never end now that its containerd is dead, is killed."""
    name = f"{ns}/{cid}"
    shims = holders.shims.get(name, set())
    if name in holders.busy or holders.cwd.get(str(bundle), set()) - shims:
        return False  # a shim command runs, or someone else works there
    if shims:
        # The containerd started next would load it, find no task in it and
        # have it reaped, and then fail to clean its directory up.
        if not _kill_shims(shims):
            return False
        _log.warning(
            "daemon.leftover_shim_killed", namespace=ns, container_id=cid, pids=sorted(shims)
        )
        if any(os.path.lexists(bundle / m) for m in _MARKERS):
            return False  # it got as far as its create meanwhile: containerd's
    return not _socket_answers(bundle)


def _remove(dirs: TaskDirs) -> list[str]:
    candidates = _candidates(dirs)
    if not candidates:
        return []
    holders = _holders({str(b) for _, _, b in candidates}, dirs.address)
    points = _mount_points()
    removed: list[str] = []
    for ns, cid, bundle in candidates:
        if not _shim_gone(holders, ns, cid, bundle):
            _log.info("daemon.leftover_task_kept", namespace=ns, container_id=cid, why="shim")
            continue
        if _mounted_within(bundle, points):
            _log.warning("daemon.leftover_task_kept", namespace=ns, container_id=cid, why="mount")
            continue
        work = dirs.root / TASK_PLUGIN / ns / cid
        try:
            # The work directory first: while the bundle stands, no create of
            # this id gets as far as making its own.
            if _is_plain_dir(work):
                shutil.rmtree(work)
            shutil.rmtree(bundle)
        except OSError as exc:
            _log.warning("daemon.leftover_task_not_removed", path=str(bundle), error=str(exc))
            continue
        _log.warning(
            "daemon.leftover_task_removed", namespace=ns, container_id=cid, path=str(bundle)
        )
        removed.append(f"{ns}/{cid}")
    return removed
