"""One containerd process brought up and taken down for the Daemon.

The :class:`Launcher` adopts the containerd the pid file names (when it is
ours and runs), or starts a new one, and waits until it answers its health
check; it discards one that never does, and stops the last one when the
Daemon's context is left. What touches the operating system comes from the
platform's :class:`~._platform_parts.DaemonParts`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc

from .. import errors
from .._log import get_logger
from ._leftovers import TaskDirs, has_leftover_tasks, remove_leftover_tasks
from ._log_follower import LogFollower
from ._platform_parts import DaemonChild, DaemonParts, HealthProbe
from ._timeouts import DaemonTimeouts

__all__ = ["Launcher"]

_log = get_logger("daemon")


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exited"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass(frozen=True, slots=True)
class Launcher:
    """Starts, adopts, discards and stops containerd processes, one at a time.

    Attributes:
        parts: the platform's pieces.
        binary: the containerd executable.
        config_path: the config file it is started with.
        pid_file: where the running containerd's pid is recorded.
        address: its gRPC address (a stale socket file there is removed
            before a start).
        follower: its log, followed into logging (the last lines of one that
            failed to start go into the error).
        health: the health check over ``address``.
        timeouts: the Daemon's timings.
        tasks: containerd's task directories, cleared of what a killed
            containerd left half made before each start (see ``_leftovers``);
            None where there is no such clean-up (Windows).
    """

    parts: DaemonParts
    binary: str
    config_path: Path
    pid_file: Path
    address: str
    follower: LogFollower
    health: HealthProbe
    timeouts: DaemonTimeouts
    tasks: TaskDirs | None = None

    async def adopt(self, tg: anyio.abc.TaskGroup) -> DaemonChild | None:
        """The containerd the pid file names, watched in ``tg``, once it
        answers; None if there is none of ours (or it never answered, and
        was killed)."""
        child = self.parts.adopt(
            self.pid_file, self.binary, self.config_path, poll=self.timeouts.health_interval
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
        await self.discard(child)
        return None

    async def start(self, tg: anyio.abc.TaskGroup, *, replacing: bool = False) -> DaemonChild:
        """A new containerd, watched in ``tg``, once it answers.

        Raises:
            Unavailable: it exited while starting, or did not answer within
                ``timeouts.start`` (killed then); the message has its last lines.
            InvalidArgument, FailedPrecondition, OSError: as the platform's spawn.
        """
        t = self.timeouts
        if self.parts.unix_sockets:
            # A socket file left by a killed containerd makes its successor's
            # listen fail; nobody else can be serving on it (we hold the
            # lock). A named pipe goes with the process that served it.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)
        # The follower takes its place in the log before containerd writes,
        # so that the lines of a containerd that dies at once are ours to show.
        self.follower.drain()
        self.follower.tail.clear()
        if self.tasks is not None and has_leftover_tasks(self.tasks):
            # Before containerd loads its tasks: a half-made one wedges its
            # id. Off the loop, as its shim may have to be killed first; only
            # then, so that a start is otherwise what it always was.
            await anyio.to_thread.run_sync(remove_leftover_tasks, self.tasks)
        started = time.monotonic()
        child = await self.parts.spawn(
            self.binary,
            self.config_path,
            self.follower.path,
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
                await self.discard(child)
            raise
        if not ready:
            raise await self._not_started(child)
        # A replacement is announced by the watchdog as daemon.restarted.
        (_log.debug if replacing else _log.info)(
            "daemon.started",
            pid=child.pid,
            address=self.address,
            seconds=round(time.monotonic() - started, 3),
        )
        return child

    async def _not_started(self, child: DaemonChild) -> errors.Unavailable:
        exited = child.exited.is_set()
        await self.discard(child)
        self.forget_pid_file()
        self.follower.drain()
        tail = "\n".join(self.follower.tail)
        lines = f"; its last lines:\n{tail}" if tail else "; it wrote nothing"
        if exited:
            what = _exit_text(child.returncode)
            return errors.Unavailable(f"containerd (pid {child.pid}) {what} while starting{lines}")
        return errors.Unavailable(
            f"containerd (pid {child.pid}) did not answer within {self.timeouts.start}s{lines}"
        )

    async def _wait_ready(self, child: DaemonChild) -> bool:
        t = self.timeouts
        with anyio.move_on_after(t.start):
            while not child.exited.is_set():
                if await self.health.check(t.health_timeout):
                    return True
                with anyio.move_on_after(t.start_poll):
                    await child.exited.wait()
        return False

    async def discard(self, child: DaemonChild) -> None:
        """Kill ``child`` (if it still runs) and let go of it."""
        if not await child.kill(self.timeouts.kill):
            _log.error("daemon.kill_timeout", pid=child.pid, seconds=self.timeouts.kill)
        child.close()
        # A channel to the old containerd would fail or hang on the new one.
        self.health.close()

    def forget_pid_file(self) -> None:
        try:
            self.pid_file.unlink(missing_ok=True)
        except OSError as exc:
            _log.warning("daemon.pid_file_not_removed", path=str(self.pid_file), error=str(exc))

    async def stop(self, child: DaemonChild, *, restarts: int) -> None:
        """Stop ``child`` (SIGTERM or CTRL_BREAK, then a kill after
        ``timeouts.stop``) and let go of it; its tasks were cancelled already."""
        t = self.timeouts
        child.terminate()
        if not await child.wait_gone(t.stop):
            _log.warning("daemon.stop_timeout", pid=child.pid, seconds=t.stop)
            await child.kill(t.kill)
        gone = child.exited.is_set()
        child.close()
        self.health.close()
        if not gone:
            # Still there (stuck in the kernel): its pid file stays, so that
            # the next Daemon adopts or replaces it rather than start a second.
            _log.error("daemon.kill_timeout", pid=child.pid, seconds=t.kill)
            return
        self.forget_pid_file()
        _log.info("daemon.stopped", pid=child.pid, restarts=restarts)
