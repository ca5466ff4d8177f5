"""An embedded containerd: started, health-checked, restarted and stopped by us.

Layout under the two directories given to :class:`Daemon`::

    root_dir/                  containerd's root (content, snapshots, metadata)
    state_dir/containerd.toml  the config we write
    state_dir/containerd.sock  its gRPC socket (``Daemon.address``; a named pipe on Windows)
    state_dir/debug.sock       its debug socket (a named pipe on Windows)
    state_dir/containerd.pid   the pid of the containerd we run or adopted
    state_dir/containerd.log   its output, followed into logging
    state_dir/supervisor.lock  held (flock; msvcrt.locking) by the one Daemon running it
    state_dir/daemon/          containerd's state directory (task directories a
                               killed containerd left half made are removed
                               before each start: ``_leftovers``)
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

While the context is open, the :class:`~._watchdog.Watchdog` keeps
containerd running (``_launcher`` brings one process up and down). Should the
watchdog itself die, the Daemon fails at once, as :func:`supervisor.connect`
does when its event machinery dies: ``closed`` turns true and what leads a
caller to containerd raises the error.

What touches the operating system (addresses, the lock, starting, adopting,
stopping and killing containerd, opening its log) comes from the platform's
:class:`~._platform_parts.DaemonParts`; the rest is the same on Linux and
Windows.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import anyio

from .. import errors
from .._background import Background
from .._log import get_logger
from . import _containerd_toml, _platform_parts
from ._config import ConfigStore, DaemonConfig
from ._files import owned_dir, remove_empty_scope_dir
from ._launcher import Launcher
from ._leftovers import TaskDirs
from ._log_follower import LogFollower
from ._runtimes import ResolvedRuntime, clean_stale_wrappers
from ._timeouts import DaemonTimeouts
from ._watchdog import Watchdog

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


def _check_options(binary: object, log_level: object, config: object, timeouts: object) -> None:
    if not isinstance(binary, str) or not binary or "\0" in binary:
        raise errors.InvalidArgument(f"binary must be a non-empty string, not {binary!r}")
    if config is not None and not isinstance(config, DaemonConfig):
        raise errors.InvalidArgument(f"config must be a DaemonConfig, not {type(config).__name__}")
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
        SupervisorError: (on entry) its log or pid file could not be
            written: the class :func:`supervisor.errors.from_os_error` gives
            (``Unavailable`` for a full disk, say). (After entry) the
            watchdog failed: see :attr:`closed`.

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
        _check_options(binary, log_level, config, timeouts)
        self._binary = binary
        self._initial_config = config or DaemonConfig()
        self._log_level = log_level or self._initial_config.log_level
        self._timeouts = timeouts or DaemonTimeouts()
        self._entered = False
        self._closed = False
        # What the watchdog died of, as the callers see it.
        self._failure: errors.SupervisorError | None = None
        self._failure_event: anyio.Event | None = None
        self._store: ConfigStore | None = None
        parts = self._parts = _platform_parts.select()
        self._address = parts.address(self._state)
        self._debug_address = parts.debug_address(self._state)
        self._background = Background(f"supervisor-daemon:{self._state}", on_failure=self._failed)
        self._watchdog = Watchdog(
            Launcher(
                parts,
                binary=binary,
                config_path=self.config_path,
                pid_file=self.pid_file,
                address=self._address,
                follower=LogFollower(
                    self._state / "containerd.log", self._timeouts.log_poll, opener=parts.open_file
                ),
                health=parts.health(self._address),
                timeouts=self._timeouts,
                tasks=TaskDirs(self._root, self._state / "daemon", self._address)
                if parts.unix_sockets
                else None,
            )
        )
        self._lock = parts.lock(self._state / "supervisor.lock")

    # -- what callers read ---------------------------------------------------

    @property
    def address(self) -> str:
        """containerd's socket path (a named pipe on Windows), for :func:`supervisor.connect`.

        Raises:
            SupervisorError: the watchdog failed (see :attr:`closed`).
        """
        self._raise_failure()
        return self._address

    @property
    def debug_address(self) -> str:
        """containerd's debug socket path (a named pipe on Windows).

        Raises:
            SupervisorError: the watchdog failed (see :attr:`closed`).
        """
        self._raise_failure()
        return self._debug_address

    @property
    def closed(self) -> bool:
        """True once the context was left, or as soon as the watchdog failed.

        A watchdog that dies (of anything but containerd's own exits and
        hangs, which it rides out) fails the daemon at once, as a task group
        would: from then on :attr:`address`, :attr:`debug_address`,
        :attr:`config`, :meth:`runtime` and :meth:`reload` raise its error
        (``Unknown``, chained to it, for an unexpected exception), and so does
        leaving the context; containerd is stopped.
        """
        return self._closed or self._failure is not None

    async def wait_failed(self) -> errors.SupervisorError:
        """Until the watchdog fails; its error (as :attr:`closed` describes).

        For a program whose only other work is waiting (the ``supervisor
        daemon`` command waits for signals): it ends with the daemon.
        """
        await self._failed_event().wait()
        assert self._failure is not None
        return self._failure

    def _failed_event(self) -> anyio.Event:
        if self._failure_event is None:
            self._failure_event = anyio.Event()
            if self._failure is not None:
                self._failure_event.set()
        return self._failure_event

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
        child = self._watchdog.child
        return None if child is None or child.exited.is_set() else child.pid

    @property
    def restarts(self) -> int:
        """How many times containerd was replaced since entry."""
        return self._watchdog.restarts

    @property
    def config(self) -> ConfigStore:
        """The runtimes configuration; read ``daemon.config.current`` once per operation.

        Raises:
            FailedPrecondition: the daemon has not been started.
            SupervisorError: the watchdog failed (see :attr:`closed`).
        """
        self._raise_failure()
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
            SupervisorError: the watchdog failed (see :attr:`closed`).
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
        if self._parts.unix_sockets and len(os.fsencode(self._address)) > _MAX_SOCKET_PATH:
            raise errors.InvalidArgument(
                f"socket path {self._address!r} is longer than a unix socket allows"
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
            self._closed = True
            raise
        except Exception as exc:
            self._closed = True
            raise errors.Unknown(f"the embedded containerd failed to start: {exc!r}") from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._background.stop()
        self._closed = True
        error = self._background.error
        if error is not None and exc is None:
            # As a task group reports a failed task on exit, also to a
            # caller that swallowed the error its calls raised meanwhile.
            raise self._failure or self._as_error(error)

    def _as_error(self, exc: BaseException) -> errors.SupervisorError:
        return errors.as_library_error(exc, "the daemon's watchdog")

    def _failed(self, exc: BaseException) -> None:
        # Called at once when the watchdog dies (Background.fail), before it
        # stops containerd: nothing the callers do from now on can work.
        self._failure = self._as_error(exc)
        if self._failure_event is not None:
            self._failure_event.set()
        _log.error("daemon.watchdog_failed", error=str(self._failure), exc_info=exc)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise errors.raised_again(self._failure)

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
                address=self._address,
                debug_address=self._debug_address,
                log_level=self._log_level,
                runc_root=self.runc_root if self._parts.unix_sockets else None,
            )
        except BaseException:
            self._lock.release()
            raise
        self._store = store

    async def _run(self) -> None:
        try:
            await self._watchdog.run(self._background)
        finally:
            try:
                # Under the lock: no other Daemon runs this containerd now.
                remove_empty_scope_dir(self._address)
            finally:
                self._lock.release()
