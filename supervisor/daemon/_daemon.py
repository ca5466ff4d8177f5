"""An embedded containerd: started, health-checked, restarted and stopped by us.

Layout under the two directories given to :class:`Daemon`::

    root_dir/                  containerd's root (content, snapshots, metadata)
    state_dir/containerd.toml  the config we write
    state_dir/containerd.sock  its gRPC socket (``Daemon.address``)
    state_dir/debug.sock       its debug socket
    state_dir/containerd.pid   the pid of the containerd we run or adopted
    state_dir/containerd.log   its output, followed into logging
    state_dir/supervisor.lock  held (flock) by the one Daemon running it
    state_dir/daemon/          containerd's state directory
    state_dir/runtimes/        wrapper scripts of runtimes with arguments

What we do better than dockerd's supervisor: a containerd that is alive but
stops answering is killed and replaced, an adopted containerd is watched like
our own child (its exit is noticed through a pidfd, at once), and a crash is
noticed the moment the child exits rather than at the next health poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import anyio
import anyio.abc

from .. import errors
from .._background import Background
from .._log import get_logger
from .._timeouts import backoff
from ..backends.health import HealthChecker
from ._config import ConfigStore, DaemonConfig
from ._log_follower import LogFollower
from ._runtimes import ResolvedRuntime, clean_stale_wrappers
from ._timeouts import DaemonTimeouts

__all__ = ["Daemon"]

_log = get_logger("daemon")

# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107
# Our level names (Python's) in logrus' words; logrus refuses "critical".
_CONTAINERD_LEVELS = {"warning": "warn", "critical": "fatal"}
# CRI is kubelet's business, not ours; the snapshotters need kernel modules
# or filesystems this kind of host rarely has, and only add warnings at boot.
_DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
)
# How long a hung containerd gets to write its goroutine dump before SIGKILL.
_DUMP_GRACE = 0.2


def _alive(pid: int) -> bool:
    """True while ``pid`` runs. A zombie is not alive: pid 1 on some machines
    never reaps orphans, so a killed containerd can linger as one."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split(":", 1)[1].split()[0]
    except OSError:
        return False
    return False


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


async def _wait_exit(pid: int) -> None:
    """Return when ``pid`` (not necessarily our child) has exited.

    A pidfd becomes readable the moment the process exits, reaped or not, so
    an adopted containerd's crash is seen as fast as our own child's.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:  # pragma: no cover - kernels before 5.3
        while _alive(pid):  # noqa: ASYNC110 - no event exists to wait on
            await anyio.sleep(0.1)
        return
    loop = asyncio.get_running_loop()
    gone = loop.create_future()

    def on_readable() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        if _alive(pid):
            await gone
    finally:
        loop.remove_reader(fd)
        os.close(fd)


@dataclass(eq=False)
class _Child:
    """One containerd process, started by us or adopted from a pid file."""

    pid: int
    process: asyncio.subprocess.Process | None  # None when adopted
    exited: anyio.Event = field(default_factory=anyio.Event)


class Daemon:
    """An embedded containerd that this object starts, watches and stops.

    Use as ``async with Daemon(root_dir, state_dir) as daemon`` and connect
    clients to :attr:`address`. While the context is open, a containerd that
    exits or stops answering its health check is killed and replaced, with
    back-off; clients connected to :attr:`address` ride through it by
    themselves (they reconnect, resubscribe and reconcile missed exits).

    If the pid file names a containerd started with this daemon's config that
    is still running (left by an earlier process that died), it is adopted and
    watched the same way instead of starting a second one.

    Leaving the context stops containerd with SIGTERM, then SIGKILL after
    ``timeouts.stop`` seconds. Running containers' shims are left alone, as
    dockerd leaves them: the next containerd on the same directories finds
    their tasks again.

    Args:
        root_dir: containerd's root directory (persistent data).
        state_dir: where the config, socket, pid file, containerd's state and
            runtime wrapper scripts live.
        binary: the containerd executable.
        log_level: containerd's log level; its lines are forwarded to
            the ``supervisor.containerd`` logger at their own level.
        config: runtimes and defaults (see :class:`DaemonConfig`).
        timeouts: start, stop, health-check and restart timings.

    Raises (on entry):
        InvalidArgument: the binary does not exist or the socket path is too
            long for a unix socket.
        Unavailable: containerd did not come up within ``timeouts.start``.

    Example::

        async with Daemon("/var/lib/app/containerd", "/run/app/containerd") as daemon:
            async with supervisor.connect(daemon.address, namespace="app") as client:
                ...
    """

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        state_dir: str | os.PathLike[str],
        *,
        binary: str = "containerd",
        log_level: str | None = None,
        config: DaemonConfig | None = None,
        timeouts: DaemonTimeouts | None = None,
    ) -> None:
        self._root = Path(root_dir).absolute()
        self._state = Path(state_dir).absolute()
        self._binary = binary
        self._initial_config = config or DaemonConfig()
        self._log_level = log_level or self._initial_config.log_level
        self._timeouts = timeouts or DaemonTimeouts()
        self._store: ConfigStore | None = None
        self._child: _Child | None = None
        self._restarts = 0
        self._health = HealthChecker(str(self.address))
        self._background = Background(f"supervisor-daemon:{self._state}")
        self._log_reader = LogFollower(self._state / "containerd.log")
        self._lock_fd = -1

    # -- what callers read ---------------------------------------------------

    @property
    def address(self) -> str:
        """containerd's socket path, for :func:`supervisor.connect`."""
        return str(self._state / "containerd.sock")

    @property
    def debug_address(self) -> str:
        """containerd's debug socket path."""
        return str(self._state / "debug.sock")

    @property
    def config_path(self) -> Path:
        """The containerd config file this daemon writes."""
        return self._state / "containerd.toml"

    @property
    def pid_file(self) -> Path:
        return self._state / "containerd.pid"

    @property
    def wrapper_dir(self) -> Path:
        """Where wrapper scripts of runtimes with arguments are written."""
        return self._state / "runtimes"

    @property
    def pid(self) -> int | None:
        """The pid of the current containerd, or None while none runs."""
        child = self._child
        return None if child is None or child.exited.is_set() else child.pid

    @property
    def restarts(self) -> int:
        """How many times containerd was replaced since entry."""
        return self._restarts

    @property
    def config(self) -> ConfigStore:
        """The runtimes configuration; read ``daemon.config.current`` once per operation."""
        if self._store is None:
            raise errors.FailedPrecondition("the daemon has not been started")
        return self._store

    def runtime(self, name: str | None = None) -> ResolvedRuntime:
        """The runtime ``name`` (the default one if None) of the current config.

        Pass its ``shim`` and ``options`` to :meth:`Client.new_container`; the
        container keeps that runtime across any later reload.
        """
        return self.config.current.runtime(name)

    def reload(self, config: DaemonConfig) -> None:
        """Swap in a new runtimes configuration, atomically.

        Containers created before keep their runtime: wrapper scripts are
        never rewritten and only stale ones are removed, at the next start.

        Raises:
            InvalidArgument: the config is invalid; the current one stays.
        """
        self.config.reload(config)  # logs the swap itself

    # -- lifetime --------------------------------------------------------------

    async def __aenter__(self) -> Daemon:
        if sys.platform == "win32":  # pragma: no cover
            raise errors.FailedPrecondition("the embedded containerd is supported on Linux only")
        if len(os.fsencode(self.address)) > _MAX_SOCKET_PATH:
            raise errors.InvalidArgument(
                f"socket path {self.address!r} is longer than a unix socket allows"
            )
        if self._store is not None:
            raise errors.FailedPrecondition("a Daemon can be entered once")
        self._prepare()
        # The watchdog runs in a Background task, not in a task group around
        # the caller's block: some callers (pytest-asyncio fixtures) enter and
        # leave from different tasks.
        await self._background.start(self._run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._background.stop()
        error = self._background.error
        if error is not None and exc is None:
            raise error

    def _prepare(self) -> None:
        for directory in (self._root, self._state, self._state / "daemon"):
            directory.mkdir(parents=True, exist_ok=True, mode=0o711)
        self._lock()
        try:
            self._store = ConfigStore(self._initial_config, self.wrapper_dir)
            # Stale wrappers only go at start: a running container may still
            # exec through any script written by an earlier config of ours.
            clean_stale_wrappers(self.wrapper_dir, keep=self._store.wrapper_paths())  # logs
            self._write_config()
        except BaseException:
            self._unlock()
            raise

    def _lock(self) -> None:
        # Two supervisors on one state directory would adopt the same
        # containerd and then restart it against each other. The kernel drops
        # the lock when its holder dies, so a crashed one never blocks the next.
        fd = os.open(self._state / "supervisor.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise errors.FailedPrecondition(
                f"another supervisor runs the containerd of {self._state}"
            ) from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            os.close(fd)  # closing the only descriptor releases the flock

    def _write_config(self) -> None:
        def q(value: str | Path) -> str:
            # TOML basic strings share JSON's escapes for what a path can hold.
            return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

        text = "\n".join(
            [
                "# Written by containerd-supervisor; rewritten at every start.",
                "version = 2",
                f"root = {q(self._root)}",
                f"state = {q(self._state / 'daemon')}",
                f"disabled_plugins = [{', '.join(q(p) for p in _DISABLED_PLUGINS)}]",
                "",
                "[grpc]",
                f"  address = {q(self.address)}",
                "",
                "[debug]",
                f"  address = {q(self.debug_address)}",
                f"  level = {q(_CONTAINERD_LEVELS.get(self._log_level, self._log_level))}",
                "",
            ]
        )
        _atomic_write(self.config_path, text.encode())

    async def _run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._log_reader.follow)
                child = await self._adopt(tg)
                if child is None:
                    child = await self._start(tg)
                self._child = child
                self._background.ready()
                tg.start_soon(self._watch, tg)
                await self._background.until_stopped()
                tg.cancel_scope.cancel()
        except Exception as exc:
            if self._background.up:  # before that, entering the context raises it
                _log.error("daemon.watchdog_failed", exc_info=errors.unwrap_group(exc))
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop_child()
                self._log_reader.drain()
                self._log_reader.close()
                self._health.close()
                self._unlock()

    # -- starting and adopting -----------------------------------------------------

    async def _adopt(self, tg: anyio.abc.TaskGroup) -> _Child | None:
        try:
            text = self.pid_file.read_text().strip()
        except FileNotFoundError:
            return None
        pid = int(text) if text.isdigit() else 0
        # Only a containerd started on *this* config is ours to adopt; a
        # reused pid belongs to somebody else and must not be touched.
        argv = _cmdline(pid) if pid > 0 else []
        ours = (
            _alive(pid)
            and bool(argv)
            and os.path.basename(argv[0]) == os.path.basename(self._binary)
            and str(self.config_path) in argv
        )
        if not ours:
            _log.info("daemon.stale_pid_file", pid=text, path=str(self.pid_file))
            self.pid_file.unlink(missing_ok=True)
            return None
        child = _Child(pid, None)
        tg.start_soon(self._watch_exit, child)
        if await self._wait_ready(child):
            _log.info("daemon.adopted", pid=pid, address=self.address)
            return child
        _log.warning("daemon.adopted_unresponsive", pid=pid)
        await self._kill(child)
        return None

    async def _start(self, tg: anyio.abc.TaskGroup) -> _Child:
        # A socket file left by a killed containerd makes its successor's
        # listen fail; nobody else can be serving on it (we hold the pid file).
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address)
        # Output goes to a file, not a pipe: Go programs die of SIGPIPE when
        # fd 1 or 2 breaks, so a pipe would take containerd down with us and
        # make adoption after our own crash impossible.
        log_fd = os.open(self._log_reader.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            process = await asyncio.create_subprocess_exec(
                self._binary,
                "--config",
                str(self.config_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                # Its own session: a terminal's ^C reaches us, and we decide
                # how containerd stops.
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise errors.InvalidArgument(f"containerd binary {self._binary!r} not found") from exc
        except PermissionError as exc:
            raise errors.InvalidArgument(f"containerd binary {self._binary!r}: {exc}") from exc
        finally:
            os.close(log_fd)
        child = _Child(process.pid, process)
        started = time.monotonic()
        try:
            _atomic_write(self.pid_file, f"{process.pid}\n".encode())
            tg.start_soon(self._watch_exit, child)
            ready = await self._wait_ready(child)
        except BaseException:
            # Cancelled (the loop shutting down) or the pid file unwritable:
            # a child nobody tracks yet must not outlive us.
            with anyio.CancelScope(shield=True):
                await self._kill(child)
            raise
        if ready:
            _log.info(
                "daemon.started",
                pid=child.pid,
                address=self.address,
                seconds=round(time.monotonic() - started, 3),
            )
            return child
        await self._kill(child)
        self._log_reader.drain()
        tail = "\n".join(self._log_reader.tail)
        raise errors.Unavailable(
            f"containerd (pid {child.pid}) did not answer within {self._timeouts.start}s"
            + (f"; its last lines:\n{tail}" if tail else "")
        )

    async def _wait_ready(self, child: _Child) -> bool:
        with anyio.move_on_after(self._timeouts.start):
            while not child.exited.is_set():
                if await self._health.check(self._timeouts.health_timeout):
                    return True
                with anyio.move_on_after(0.02):
                    await child.exited.wait()
        return False

    async def _watch_exit(self, child: _Child) -> None:
        await _wait_for(child)
        child.exited.set()
        code = child.process.returncode if child.process is not None else None
        _log.debug("daemon.exited", pid=child.pid, code=code)

    # -- watching and replacing ------------------------------------------------------

    async def _watch(self, tg: anyio.abc.TaskGroup) -> None:
        t = self._timeouts
        delays = backoff(t.restart_initial, t.restart_max)
        healthy_since = time.monotonic()
        failures = 0
        while True:
            child = self._child
            assert child is not None
            with anyio.move_on_after(t.health_interval):
                await child.exited.wait()
            if child.exited.is_set():
                reason = "exited"
            elif await self._health.check(t.health_timeout):
                failures = 0
                if time.monotonic() - healthy_since > t.stable:
                    delays = backoff(t.restart_initial, t.restart_max)
                continue
            else:
                failures += 1
                _log.warning("daemon.health_check_failed", pid=child.pid, failures=failures)
                if failures < t.health_failures and not child.exited.is_set():
                    continue
                reason = "exited" if child.exited.is_set() else "unresponsive"
            _log.warning("daemon.containerd_down", pid=child.pid, reason=reason)
            if reason == "unresponsive":
                await self._dump_stacks(child)
            await self._kill(child)
            self._child = await self._replace(tg, delays)
            self._restarts += 1
            healthy_since = time.monotonic()
            failures = 0

    async def _replace(self, tg: anyio.abc.TaskGroup, delays: Iterator[float]) -> _Child:
        while True:
            await anyio.sleep(next(delays))
            try:
                child = await self._start(tg)
            except errors.Unavailable as exc:
                _log.error("daemon.restart_failed", error=str(exc))
                continue
            _log.info("daemon.restarted", pid=child.pid, restarts=self._restarts + 1)
            return child

    async def _dump_stacks(self, child: _Child) -> None:
        # containerd logs every goroutine's stack on SIGUSR1: the one record
        # of where a hung containerd was stuck, taken before it is killed.
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGUSR1)
        await anyio.sleep(_DUMP_GRACE)
        self._log_reader.drain()

    async def _kill(self, child: _Child) -> None:
        if not child.exited.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
            # Waited on directly, not through child.exited: the task that
            # sets it may be cancelled already.
            with anyio.move_on_after(10):
                await _wait_for(child)
                child.exited.set()
        self._health.close()

    async def _stop_child(self) -> None:
        child = self._child
        self._child = None
        if child is None:
            return
        if not child.exited.is_set() and _alive(child.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
            # The watcher tasks were cancelled with the task group: wait here.
            with anyio.move_on_after(self._timeouts.stop):
                await _wait_for(child)
            if _alive(child.pid):
                _log.warning("daemon.stop_timeout", pid=child.pid, seconds=self._timeouts.stop)
                await self._kill(child)
        self.pid_file.unlink(missing_ok=True)
        _log.info("daemon.stopped", pid=child.pid, restarts=self._restarts)


async def _wait_for(child: _Child) -> None:
    if child.process is not None:
        await child.process.wait()
    else:
        await _wait_exit(child.pid)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
