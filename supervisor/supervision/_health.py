"""Health probes: one exec at a time per container, bounded by its timeout
and killed after it, and the verdict docker's rules give."""

from __future__ import annotations

import collections
import contextlib
import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
from anyio.abc import ByteReceiveStream

from .. import errors
from .._log import get_logger
from ..domain._supervised import (
    PROBE_LOG_LENGTH,
    PROBE_OUTPUT_LIMIT,
    Health,
    HealthCheck,
    HealthStatus,
    ProbeResult,
)
from ._remake import discard
from ._strays import kill_strays, probe_process

if TYPE_CHECKING:
    from ..domain._process import Process
    from ..domain._task import Task

__all__ = ["PROBE_PREFIX", "HealthState", "clear", "last_probe", "probe"]

# Probe execs are named so: one an application killed mid-probe left behind
# is found and removed by the next run (Supervisor.resume).
PROBE_PREFIX = "health-"

_log = get_logger("supervision")


def _now() -> datetime:
    return datetime.now(UTC)


class HealthState:
    """The verdict of one task's probes (docker's rules): ``starting`` until
    the first success or until ``retries`` failures in a row after the start
    period; a success makes it ``healthy``, ``retries`` failures in a row
    ``unhealthy``."""

    def __init__(self, check: HealthCheck) -> None:
        self.check = check
        self.status: HealthStatus = "starting"
        self.streak = 0
        self.log: collections.deque[ProbeResult] = collections.deque(maxlen=PROBE_LOG_LENGTH)
        self.started = time.monotonic()
        self.succeeded = False
        self.changed = anyio.Event()

    def health(self) -> Health:
        return Health(self.status, self.streak, tuple(self.log))

    def add(self, result: ProbeResult) -> bool:
        """Count one probe; True if the status changed."""
        self.log.append(result)
        before = self.status
        if result.exit_code == 0:
            self.streak = 0
            self.status = "healthy"
            self.succeeded = True
        elif self.succeeded or time.monotonic() - self.started >= self.check.start_period:
            # docker's rule: the start period ends early with a first success.
            self.streak += 1
            if self.streak >= self.check.retries:
                self.status = "unhealthy"
        if self.status != before:
            self.changed.set()
            self.changed = anyio.Event()
            return True
        return False


async def _read_bounded(stream: ByteReceiveStream | None, keep: bytearray) -> None:
    # Everything is read (a probe blocked on a full pipe would time out),
    # only the first PROBE_OUTPUT_LIMIT bytes are kept.
    if stream is None:
        return
    with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError):
        while True:
            chunk = await stream.receive()
            room = PROBE_OUTPUT_LIMIT - len(keep)
            if room > 0:
                keep += chunk[:room]


async def probe(
    task: Task, check: HealthCheck, cleanup: float, leftovers: list[Process]
) -> ProbeResult:
    """Run the check once as an exec in ``task``; never raises a library
    error (a probe that cannot run is a failed probe saying why). The exec
    is deleted (killed first if still running) before this returns, within
    ``cleanup`` seconds, even when cancelled; one that containerd could not
    be told to delete in that time (it was restarting) is added to
    ``leftovers``, for the next probe to delete first."""
    start = _now()
    proc: Process | None = None
    out = bytearray()
    code = -1
    try:
        with anyio.move_on_after(check.timeout) as scope:
            exec_id = f"{PROBE_PREFIX}{secrets.token_hex(6)}"
            proc = await task.exec(exec_id, probe_process(task, exec_id, check.argv))
            await proc.start()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_read_bounded, proc.stdout, out)
                tg.start_soon(_read_bounded, proc.stderr, out)
            code = (await proc.wait()).exit_code
        if scope.cancelled_caught:
            out += f"\nhealth probe timed out after {check.timeout}s".encode()
            code = -1
    except errors.SupervisorError as exc:
        out += f"health probe could not run: {exc}".encode()
        code = -1
    finally:
        if proc is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(cleanup) as bound:
                await discard(proc)
            if bound.cancelled_caught:
                leftovers.append(proc)
    text = bytes(out[:PROBE_OUTPUT_LIMIT]).decode("utf-8", "replace")
    return ProbeResult(code, text, start, _now())


async def clear(leftovers: list[Process], task: Task | None = None) -> None:
    """Delete the probes an outage left (waiting for containerd as long as
    it takes, cancellable), and with ``task`` kill the processes of its
    probes that containerd no longer knows of (see ``_strays``): never two
    probes of a container at once."""
    while leftovers:
        try:
            await discard(leftovers[0])
        except errors.SupervisorError as exc:
            # Refused for good (not an outage): nothing more to do from
            # here, and no reason to stop probing.
            _log.warning("supervision.probe_left", process_id=leftovers[0].id, error=str(exc))
        leftovers.pop(0)
    if task is not None:
        await kill_strays(task)


def last_probe(health: Health) -> str:
    """What the failing probes said, for an error."""
    if not health.log:
        return f"{health.failing_streak} probes failed"
    last = health.log[-1]
    said = last.output.strip()[-200:]
    return f"{health.failing_streak} probes failed, the last exited {last.exit_code}" + (
        f": {said}" if said else ""
    )
