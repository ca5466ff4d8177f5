"""The Daemon's watchdog: containerd kept running while the context is open.

A containerd that exits is noticed the moment it exits (an adopted one too,
through its pidfd) and replaced with back-off; one that is alive but fails
``health_failures`` health checks in a row is asked for its goroutine
stacks, killed and replaced. A replacement that fails (containerd exits at
once, a full disk, a log that cannot be opened) is logged and tried again,
with back-off, until one succeeds or the context is left. After each start,
and every ``reap_interval`` while containerd runs, shims an earlier
containerd lost are reaped (see ``_orphans``).

The watchdog runs as the body of the Daemon's
:class:`~supervisor._background.Background` task: should it die of anything
else, it hands the error to the Daemon at once (which fails its callers),
then stops containerd all the same.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import anyio
import anyio.abc

from .. import errors
from .._background import Background
from .._log import get_logger
from .._timeouts import backoff
from ._launcher import Launcher
from ._platform_parts import DaemonChild

__all__ = ["Watchdog"]

_log = get_logger("daemon")


class Watchdog:
    """Runs containerd through ``launcher`` and keeps it running.

    Attributes:
        launcher: brings each containerd up and down.
        child: the containerd now running (None between one and the next).
        restarts: how many times containerd was replaced.
    """

    def __init__(self, launcher: Launcher) -> None:
        self.launcher = launcher
        self._timeouts = launcher.timeouts
        self.child: DaemonChild | None = None
        self.restarts = 0
        # One reap at a time: the one after a restart and the periodic one
        # would otherwise look at (and kill) the same shims.
        self._reaping = anyio.Lock()
        # Shims seen serving no task, and since when (see _orphans).
        self._pending_shims: dict[tuple[int, int], float] = {}

    async def run(self, background: Background) -> None:
        """The body of ``background``: start or adopt containerd, say
        :meth:`~Background.ready`, watch it until :meth:`~Background.stop`,
        then stop it (bounded by ``timeouts.stop + timeouts.kill``)."""
        launcher, t = self.launcher, self._timeouts
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(launcher.follower.follow)
                try:
                    child = await launcher.adopt(tg) or await launcher.start(tg)
                except OSError as exc:
                    raise errors.from_os_error(exc, "cannot start containerd") from exc
                self.child = child
                await self._reap(child)
                background.ready()
                tg.start_soon(self._watch, tg)
                tg.start_soon(self._reap_now_and_then)
                await background.until_stopped()
                tg.cancel_scope.cancel()
        except Exception as exc:
            if background.up:  # before that, entering the context raises it
                # The Daemon's callers fail now, not after the stop below.
                background.fail(exc)
            raise
        finally:
            with anyio.CancelScope(shield=True) as scope:
                scope.deadline = anyio.current_time() + t.stop + t.kill
                try:
                    last, self.child = self.child, None
                    if last is not None:
                        # Its watcher task was cancelled with the task group.
                        await launcher.stop(last, restarts=self.restarts)
                finally:
                    launcher.follower.drain()
                    launcher.follower.close()
                    launcher.health.close()

    async def _watch(self, tg: anyio.abc.TaskGroup) -> None:
        t = self._timeouts
        delays = backoff(t.restart_initial, t.restart_max)
        healthy_since = time.monotonic()
        while True:
            child = self.child
            assert child is not None
            reason = await self._until_down(child)
            if reason is None:
                # Healthy for long enough: the next outage starts the
                # back-off from the beginning again.
                if time.monotonic() - healthy_since > t.stable:
                    delays = backoff(t.restart_initial, t.restart_max)
                continue
            _log.warning(
                "daemon.containerd_down", pid=child.pid, reason=reason, code=child.returncode
            )
            if reason == "unresponsive":
                await self._dump_stacks(child)
            await self.launcher.discard(child)
            self.child = None
            self.child = await self._replace(tg, delays)
            self.restarts += 1
            await self._reap(self.child)
            healthy_since = time.monotonic()

    async def _until_down(self, child: DaemonChild) -> str | None:
        """None once ``child`` passed a health check; else why it is down:
        ``"exited"``, or ``"unresponsive"`` after ``health_failures`` failed
        checks in a row."""
        t = self._timeouts
        failures = 0
        while True:
            with anyio.move_on_after(t.health_interval):
                await child.exited.wait()
            if child.exited.is_set():
                return "exited"
            if await self.launcher.health.check(t.health_timeout):
                return None
            failures += 1
            _log.warning("daemon.health_check_failed", pid=child.pid, failures=failures)
            if failures >= t.health_failures or child.exited.is_set():
                return "exited" if child.exited.is_set() else "unresponsive"

    async def _reap(self, child: DaemonChild) -> None:
        """Kill the shims an earlier containerd lost (see _orphans)."""
        launcher = self.launcher
        if not launcher.parts.unix_sockets:
            return  # /proc and shim command lines are Linux's
        from ._orphans import reap_orphans

        t = self._timeouts
        try:
            async with self._reaping:
                with anyio.move_on_after(t.start):
                    await reap_orphans(
                        launcher.address,
                        child.pid,
                        t.health_timeout,
                        self._pending_shims,
                        t.lost_create,
                    )
        except Exception as exc:  # noqa: BLE001 - reaping must never stop the watchdog
            _log.warning("daemon.reap_failed", error=str(exc) or type(exc).__name__)

    async def _reap_now_and_then(self) -> None:
        # Not only after a start: a shim older than the running containerd
        # can be lost later too (its task, known at the start, deleted through
        # another shim of the same id; a look at the start cut short by the
        # next outage), and nothing but a look while it runs finds it.
        while True:
            await anyio.sleep(self._timeouts.reap_interval)
            child = self.child
            if child is not None and not child.exited.is_set():
                await self._reap(child)

    async def _replace(self, tg: anyio.abc.TaskGroup, delays: Iterator[float]) -> DaemonChild:
        attempt = 0
        while True:
            await anyio.sleep(next(delays))
            attempt += 1
            try:
                child = await self.launcher.start(tg, replacing=True)
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
            _log.info("daemon.restarted", pid=child.pid, restarts=self.restarts + 1)
            return child

    async def _dump_stacks(self, child: DaemonChild) -> None:
        # containerd logs every goroutine's stack when asked (SIGUSR1, or its
        # stackdump event on Windows): the one record of where a hung
        # containerd was stuck, taken before it is killed.
        child.dump_stacks()
        await anyio.sleep(self._timeouts.dump_grace)
        self.launcher.follower.drain()
