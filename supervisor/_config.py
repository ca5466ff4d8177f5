"""Timeouts and back-off: every number the library waits by lives here."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Timeouts", "backoff"]


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


def backoff(initial: float, maximum: float, factor: float = 2.0) -> Iterator[float]:
    """Pauses for retrying: exponential from ``initial`` up to ``maximum``, with
    +-20% jitter so that many clients do not retry in lockstep."""
    delay = initial
    while True:
        yield delay * random.uniform(0.8, 1.2)
        delay = min(delay * factor, maximum)
