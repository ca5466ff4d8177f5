"""An embedded containerd: started, health-checked, restarted and stopped by us.

Layout under the two directories given to :class:`Daemon`::

    root_dir/                  containerd's root (content, snapshots, metadata)
    state_dir/containerd.toml  the config we write
    state_dir/containerd.sock  its gRPC socket (``Daemon.address``; a named pipe on Windows)
    state_dir/debug.sock       its debug socket (a named pipe on Windows)
    state_dir/containerd.pid   the pid of the containerd we run or adopted
    state_dir/containerd.log   its output, followed into logging
    state_dir/supervisor.lock  held (flock; msvcrt.locking) by the one Daemon running it
    state_dir/daemon/          containerd's state directory
    state_dir/runc/            runc's state (``--root``) of this containerd's containers
    state_dir/runtimes/        wrapper scripts of runtimes with arguments

Two Daemons never share anything that names a container: containerd's
metadata, shim state and bundles are under their own directories, runc's
state is under ``state_dir/runc`` (clients put it beside the socket, see
:func:`supervisor._platform.instance_of`), and clients give containers of a
containerd other than the machine's default cgroups and bundle directories
of that containerd's own. The one thing outside: the shims' sockets, which
containerd 1.6 always makes in ``/run/containerd/s/``, named by a hash of
containerd's address, namespace and id, so they never meet either.

The watchdog: a containerd that exits is noticed the moment it exits (an
adopted one too, through its pidfd) and replaced with back-off; one that is
alive but fails ``health_failures`` health checks in a row is asked for its
goroutine stacks, killed and replaced. A replacement that fails (containerd
exits at once, a full disk, a log that cannot be opened) is logged and tried
again, with back-off, until one succeeds or the context is left.

What touches the operating system (addresses, the lock, starting, adopting,
stopping and killing containerd, opening its log) comes from the platform's
:class:`~._platform_parts.DaemonParts`; the rest is the same on Linux and
Windows.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import anyio
import anyio.abc

from .. import errors
from .._background import Background
from .._log import get_logger
from .._timeouts import backoff
from . import _containerd_toml, _platform_parts
from ._config import ConfigStore, DaemonConfig
from ._files import owned_dir
from ._log_follower import LogFollower
from ._platform_parts import DaemonChild
from ._runtimes import ResolvedRuntime, clean_stale_wrappers
from ._timeouts import DaemonTimeouts

__all__ = ["Daemon"]

_log = get_logger("daemon")

# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107


def _path_argument(value: object, what: str) -> Path:
    if isinstance(value, bytes) or not isinstance(value, str | os.PathLike):
        raise errors.InvalidArgument(f"{what} must be a path, not {type(value).__name__}")
    text = os.fspath(value)
    if not isinstance(text, str):
        raise errors.InvalidArgument(f"{what} must be a str path, not {type(text).__name__}")
    if not text or "\0" in text:
        raise errors.InvalidArgument(f"{what} {text!r} is empty or contains a NUL byte")
    return Path(text).absolute()


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exited"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Daemon:
    """An embedded containerd that this object starts, watches and stops.

    Use as ``async with Daemon(root_dir, state_dir) as daemon`` and connect
    clients to :attr:`address`. While the context is open, a containerd that
    exits or stops answering its health check is killed and replaced, with
    back-off, for as long as it takes; clients connected to :attr:`address`
    ride through it by themselves (they reconnect, resubscribe and reconcile
    missed exits).

    If the pid file names a containerd that this daemon would have started
    (our user, our executable, our command line) and that still runs (left by
    an earlier process that died), it is adopted and watched the same way
    instead of starting a second one. Any other process the file names is
    left alone.

    Leaving the context stops containerd with SIGTERM (CTRL_BREAK on
    Windows), then SIGKILL (TerminateProcess) after ``timeouts.stop``
    seconds. Running containers' shims are left alone, as dockerd leaves
    them: the next containerd on the same directories finds their tasks
    again.

    ``root_dir`` and ``state_dir`` (and any parent of them made here, mode
    0711) must belong to the calling user and be writable by nobody else;
    files in them are never opened through a symlink.

    Args:
        root_dir: containerd's root directory (persistent data).
        state_dir: where the config, socket, pid file, containerd's state and
            runtime wrapper scripts live.
        binary: the containerd executable (a path, or a name found on PATH).
        log_level: containerd's log level (Python's or logrus' level names;
            default: the config's); its lines are forwarded to the
            ``supervisor.containerd`` logger at their own level.
        config: runtimes and defaults (see :class:`DaemonConfig`).
        timeouts: start, stop, health-check and restart timings.

    Raises:
        InvalidArgument: (constructing) an argument of the wrong type or
            value; (on entry) the binary is missing or cannot be run, or the
            socket path is too long for a unix socket.
        FailedPrecondition: (on entry) a directory is not ours or writable by
            others, a file in the state directory is a symlink, another
            supervisor runs this state directory, or the directories could
            not be prepared.
        Unavailable: (on entry) containerd exited while starting (the message
            has its exit code and last lines), or did not answer within
            ``timeouts.start``.

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
        self._root = _path_argument(root_dir, "root_dir")
        self._state = _path_argument(state_dir, "state_dir")
        if not isinstance(binary, str) or not binary or "\0" in binary:
            raise errors.InvalidArgument(f"binary must be a non-empty string, not {binary!r}")
        if config is not None and not isinstance(config, DaemonConfig):
            raise errors.InvalidArgument(
                f"config must be a DaemonConfig, not {type(config).__name__}"
            )
        if timeouts is not None and not isinstance(timeouts, DaemonTimeouts):
            raise errors.InvalidArgument(
                f"timeouts must be a DaemonTimeouts, not {type(timeouts).__name__}"
            )
        if log_level is not None and (
            not isinstance(log_level, str) or log_level not in _containerd_toml.CONTAINERD_LEVELS
        ):
            raise errors.InvalidArgument(
                f"log_level {log_level!r} is not one of "
                f"{', '.join(sorted(_containerd_toml.CONTAINERD_LEVELS))}"
            )
        self._binary = binary
        self._initial_config = config or DaemonConfig()
        self._log_level = log_level or self._initial_config.log_level
        self._timeouts = timeouts or DaemonTimeouts()
        self._entered = False
        self._store: ConfigStore | None = None
        self._child: DaemonChild | None = None
        self._restarts = 0
        parts = self._parts = _platform_parts.select()
        self._address = parts.address(self._state)
        self._debug_address = parts.debug_address(self._state)
        self._health = parts.health(self._address)
        self._background = Background(f"supervisor-daemon:{self._state}")
        self._follower = LogFollower(
            self._state / "containerd.log", self._timeouts.log_poll, opener=parts.open_file
        )
        self._lock = parts.lock(self._state / "supervisor.lock")

    # -- what callers read ---------------------------------------------------

    @property
    def address(self) -> str:
        """containerd's socket path (a named pipe on Windows), for :func:`supervisor.connect`."""
        return self._address

    @property
    def debug_address(self) -> str:
        """containerd's debug socket path (a named pipe on Windows)."""
        return self._debug_address

    @property
    def config_path(self) -> Path:
        """The containerd config file this daemon writes."""
        return self._state / "containerd.toml"

    @property
    def pid_file(self) -> Path:
        """Where the pid of the running containerd is recorded."""
        return self._state / "containerd.pid"

    @property
    def runc_root(self) -> Path:
        """runc's state directory (``--root``) for this containerd's containers.

        Clients of :attr:`address` use it by themselves (runc's root beside
        the socket; see :func:`supervisor._platform.instance_of`); the legacy
        v1 shim is told it in containerd's config.
        """
        return self._state / "runc"

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
            InvalidArgument: ``config`` is not a DaemonConfig; nothing changes.
            FailedPrecondition: the daemon was not started, or a wrapper
                script could not be written; the current config stays.
        """
        if not isinstance(config, DaemonConfig):
            raise errors.InvalidArgument(
                f"config must be a DaemonConfig, not {type(config).__name__}"
            )
        try:
            self.config.reload(config)  # logs the swap itself
        except OSError as exc:
            raise errors.FailedPrecondition(f"cannot write a runtime wrapper: {exc}") from exc

    # -- lifetime --------------------------------------------------------------

    async def __aenter__(self) -> Daemon:
        if self._parts.unix_sockets and len(os.fsencode(self.address)) > _MAX_SOCKET_PATH:
            raise errors.InvalidArgument(
                f"socket path {self.address!r} is longer than a unix socket allows"
            )
        if self._entered:
            raise errors.FailedPrecondition("a Daemon can be entered once")
        try:
            self._prepare()
        except OSError as exc:
            raise errors.FailedPrecondition(f"cannot prepare {self._state}: {exc}") from exc
        self._entered = True
        # The watchdog runs in a Background task, not in a task group around
        # the caller's block: some callers (pytest-asyncio fixtures) enter and
        # leave from different tasks.
        try:
            await self._background.start(self._run)
        except errors.SupervisorError:
            raise
        except Exception as exc:
            raise errors.Unknown(f"the embedded containerd failed to start: {exc!r}") from exc
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
            if isinstance(error, errors.SupervisorError):
                raise error
            raise errors.Unknown(f"the daemon's watchdog failed: {error!r}") from error

    def _prepare(self) -> None:
        # containerd's root and state: 0711 as containerd makes them, so that
        # shims and containers of other users can reach what they need.
        directories = [self._root, self._state, self._state / "daemon"]
        if self._parts.unix_sockets:
            # Made and checked here, not left to runc's MkdirAll: a directory
            # that another user made first would hold our containers' state.
            directories.append(self.runc_root)
        for directory in directories:
            owned_dir(directory, 0o711)
        self._lock.acquire()
        try:
            store = ConfigStore(self._initial_config, self.wrapper_dir)
            # Stale wrappers only go at start: a running container may still
            # exec through any script written by an earlier config of ours.
            clean_stale_wrappers(self.wrapper_dir, keep=store.wrapper_paths())
            _containerd_toml.write(
                self.config_path,
                root=self._root,
                state=self._state / "daemon",
                address=self.address,
                debug_address=self.debug_address,
                log_level=self._log_level,
                runc_root=self.runc_root if self._parts.unix_sockets else None,
            )
        except BaseException:
            self._lock.release()
            raise
        self._store = store

    async def _run(self) -> None:
        t = self._timeouts
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._follower.follow)
                try:
                    child = await self._adopt(tg) or await self._start(tg)
                except OSError as exc:
                    raise errors.FailedPrecondition(f"cannot start containerd: {exc}") from exc
                self._child = child
                await self._reap(child)
                self._background.ready()
                tg.start_soon(self._watch, tg)
                await self._background.until_stopped()
                tg.cancel_scope.cancel()
        except Exception as exc:
            if self._background.up:  # before that, entering the context raises it
                _log.error("daemon.watchdog_failed", exc_info=errors.unwrap_group(exc))
            raise
        finally:
            with anyio.CancelScope(shield=True) as scope:
                scope.deadline = anyio.current_time() + t.stop + t.kill
                try:
                    await self._stop_child()
                finally:
                    self._follower.drain()
                    self._follower.close()
                    self._health.close()
                    self._lock.release()

    # -- starting and adopting -----------------------------------------------------

    async def _adopt(self, tg: anyio.abc.TaskGroup) -> DaemonChild | None:
        child = self._parts.adopt(
            self.pid_file, self._binary, self.config_path, poll=self._timeouts.health_interval
        )
        if child is None:
            return None
        tg.start_soon(child.watch)
        try:
            ready = await self._wait_ready(child)
        except BaseException:
            # Cancelled: it ran before us and runs on, as we found it.
            child.close()
            raise
        if ready:
            _log.info("daemon.adopted", pid=child.pid, address=self.address)
            return child
        _log.warning("daemon.adopted_unresponsive", pid=child.pid)
        await self._discard(child)
        return None

    async def _start(self, tg: anyio.abc.TaskGroup, *, replacing: bool = False) -> DaemonChild:
        t = self._timeouts
        if self._parts.unix_sockets:
            # A socket file left by a killed containerd makes its successor's
            # listen fail; nobody else can be serving on it (we hold the
            # lock). A named pipe goes with the process that served it.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)
        # The follower takes its place in the log before containerd writes,
        # so that the lines of a containerd that dies at once are ours to show.
        self._follower.drain()
        self._follower.tail.clear()
        started = time.monotonic()
        child = await self._parts.spawn(
            self._binary,
            self.config_path,
            self._follower.path,
            self.pid_file,
            kill_within=t.kill,
            poll=t.health_interval,
        )
        try:
            tg.start_soon(child.watch)
            ready = await self._wait_ready(child)
        except BaseException:
            # Cancelled (the loop shutting down): a child nobody tracks yet
            # must not outlive us.
            with anyio.CancelScope(shield=True) as scope:
                scope.deadline = anyio.current_time() + t.kill
                await self._discard(child)
            raise
        if ready:
            # A replacement is announced by the watchdog as daemon.restarted.
            (_log.debug if replacing else _log.info)(
                "daemon.started",
                pid=child.pid,
                address=self.address,
                seconds=round(time.monotonic() - started, 3),
            )
            return child
        exited = child.exited.is_set()
        await self._discard(child)
        self._forget_pid_file()
        self._follower.drain()
        tail = "\n".join(self._follower.tail)
        lines = f"; its last lines:\n{tail}" if tail else "; it wrote nothing"
        if exited:
            what = _exit_text(child.returncode)
            raise errors.Unavailable(f"containerd (pid {child.pid}) {what} while starting{lines}")
        raise errors.Unavailable(
            f"containerd (pid {child.pid}) did not answer within {t.start}s{lines}"
        )

    async def _wait_ready(self, child: DaemonChild) -> bool:
        t = self._timeouts
        with anyio.move_on_after(t.start):
            while not child.exited.is_set():
                if await self._health.check(t.health_timeout):
                    return True
                with anyio.move_on_after(t.start_poll):
                    await child.exited.wait()
        return False

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
            _log.warning(
                "daemon.containerd_down",
                pid=child.pid,
                reason=reason,
                code=child.returncode,
            )
            if reason == "unresponsive":
                await self._dump_stacks(child)
            await self._discard(child)
            self._child = None
            self._child = await self._replace(tg, delays)
            self._restarts += 1
            await self._reap(self._child)
            healthy_since = time.monotonic()
            failures = 0

    async def _reap(self, child: DaemonChild) -> None:
        """Kill the shims an earlier containerd lost mid-create (see _orphans)."""
        if not self._parts.unix_sockets:
            return  # /proc and shim command lines are Linux's
        from ._orphans import reap_orphans

        t = self._timeouts
        try:
            with anyio.move_on_after(t.start):
                await reap_orphans(self.address, child.pid, t.health_timeout)
        except Exception as exc:  # noqa: BLE001 - reaping must never stop the watchdog
            _log.warning("daemon.reap_failed", error=str(exc) or type(exc).__name__)

    async def _replace(self, tg: anyio.abc.TaskGroup, delays: Iterator[float]) -> DaemonChild:
        attempt = 0
        while True:
            await anyio.sleep(next(delays))
            attempt += 1
            try:
                child = await self._start(tg, replacing=True)
            except Exception as exc:
                # Whatever failed (containerd exiting at once, a full disk, a
                # log that cannot be opened, the binary gone mid-upgrade), a
                # later attempt may succeed: the watchdog must outlive it.
                _log.error(
                    "daemon.restart_failed",
                    attempt=attempt,
                    error=str(exc) or type(exc).__name__,
                    error_type=type(exc).__name__,
                )
                continue
            _log.info("daemon.restarted", pid=child.pid, restarts=self._restarts + 1)
            return child

    async def _dump_stacks(self, child: DaemonChild) -> None:
        # containerd logs every goroutine's stack when asked (SIGUSR1, or its
        # stackdump event on Windows): the one record of where a hung
        # containerd was stuck, taken before it is killed.
        child.dump_stacks()
        await anyio.sleep(self._timeouts.dump_grace)
        self._follower.drain()

    async def _discard(self, child: DaemonChild) -> None:
        """Kill ``child`` (if it still runs) and let go of it."""
        if not await child.kill(self._timeouts.kill):
            _log.error("daemon.kill_timeout", pid=child.pid, seconds=self._timeouts.kill)
        child.close()
        # A channel to the old containerd would fail or hang on the new one.
        self._health.close()

    def _forget_pid_file(self) -> None:
        try:
            self.pid_file.unlink(missing_ok=True)
        except OSError as exc:
            _log.warning("daemon.pid_file_not_removed", path=str(self.pid_file), error=str(exc))

    async def _stop_child(self) -> None:
        child = self._child
        self._child = None
        if child is None:
            return
        t = self._timeouts
        # The watcher tasks were cancelled with the task group: wait here.
        child.terminate()
        if not await child.wait_gone(t.stop):
            _log.warning("daemon.stop_timeout", pid=child.pid, seconds=t.stop)
            await child.kill(t.kill)
        gone = child.exited.is_set()
        child.close()
        self._health.close()
        if not gone:
            # Still there (stuck in the kernel): its pid file stays, so that
            # the next Daemon adopts or replaces it rather than start a second.
            _log.error("daemon.kill_timeout", pid=child.pid, seconds=t.kill)
            return
        self._forget_pid_file()
        _log.info("daemon.stopped", pid=child.pid, restarts=self._restarts)
