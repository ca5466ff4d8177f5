"""Timeouts and back-off: every number the library waits by lives here."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["DaemonTimeouts", "Timeouts", "backoff"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long the library waits, in seconds.

    Attributes:
        rpc: deadline of each unary call to containerd (``None``: no deadline).
            Wait-like calls that block until a process exits have none.
        cleanup: bound on shielded clean-up after a failure or cancellation.
        resubscribe_initial: first pause before resubscribing to events.
        resubscribe_max: longest pause between resubscription attempts.
        sync: how long a fresh event subscription may take to prove it is live.
    """

    rpc: float | None = 30.0
    cleanup: float = 10.0
    resubscribe_initial: float = 0.02
    resubscribe_max: float = 1.0
    sync: float = 10.0


@dataclass(frozen=True, slots=True)
class DaemonTimeouts:
    """How the embedded containerd is started, watched and stopped, in seconds.

    Attributes:
        start: how long a new containerd may take to answer its health check.
        stop: how long containerd may take to exit on SIGTERM before SIGKILL.
        health_interval: pause between health checks of a running containerd.
        health_timeout: deadline of one health check.
        health_failures: consecutive failed checks after which a containerd
            that is alive but not answering is killed and replaced.
        restart_initial: first pause before starting a replacement.
        restart_max: longest pause between restart attempts.
        stable: a containerd healthy this long resets the restart back-off.
    """

    start: float = 10.0
    stop: float = 10.0
    health_interval: float = 0.5
    health_timeout: float = 1.0
    health_failures: int = 2
    restart_initial: float = 0.05
    restart_max: float = 5.0
    stable: float = 30.0


def backoff(initial: float, maximum: float, factor: float = 2.0) -> Iterator[float]:
    """Pauses for retrying: exponential from ``initial`` up to ``maximum``, with
    +-20% jitter so that many clients do not retry in lockstep."""
    delay = initial
    while True:
        yield delay * random.uniform(0.8, 1.2)
        delay = min(delay * factor, maximum)
