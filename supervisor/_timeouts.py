"""Timeouts and back-off: every number the client side waits by lives here."""

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
        connect: how long :func:`supervisor.connect` may take to reach
            containerd and make its event subscription live.
        cleanup: bound on shielded clean-up after a failure or cancellation
            (undoing a create, a forced delete, closing a client).
        resubscribe_initial: first pause before resubscribing to events.
        resubscribe_max: longest pause between resubscription attempts.
        sync: how long a fresh event subscription may take to prove it is live.
        sync_publish_initial: first pause between republished sync markers.
        sync_publish_max: longest pause between republished sync markers.
        handler: how long a backend's ``process_event`` may run when the
            client is closing before it is cancelled.
        output_drain: after a process exited, how long its remaining output
            may take to reach end-of-file (a child left in the container can
            hold the pipe open).
        failure_yield: the pause after a call failed because containerd is
            unreachable, so a caller that retries at once cannot starve the
            event loop (and with it the embedded containerd's watchdog).
    """

    rpc: float | None = 30.0
    connect: float = 30.0
    cleanup: float = 10.0
    resubscribe_initial: float = 0.02
    resubscribe_max: float = 1.0
    sync: float = 10.0
    sync_publish_initial: float = 0.005
    sync_publish_max: float = 0.5
    handler: float = 10.0
    output_drain: float = 5.0
    failure_yield: float = 0.001

    @property
    def shield(self) -> float:
        """The bound of one shielded step (a few calls and their clean-up):
        even with ``rpc=None`` no shield waits forever."""
        return 3 * (self.rpc if self.rpc is not None else self.cleanup) + self.cleanup


def backoff(initial: float, maximum: float, factor: float = 2.0) -> Iterator[float]:
    """Pauses for retrying: exponential from ``initial`` up to ``maximum``, with
    +-20% jitter so that many clients do not retry in lockstep."""
    delay = initial
    while True:
        yield delay * random.uniform(0.8, 1.2)
        delay = min(delay * factor, maximum)
