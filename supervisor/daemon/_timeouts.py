"""How the embedded containerd is started, watched and stopped."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from .. import errors

__all__ = ["DaemonTimeouts"]


@dataclass(frozen=True, slots=True)
class DaemonTimeouts:
    """How the embedded containerd is started, watched and stopped, in seconds.

    Every pause and bound of the daemon comes from here.

    Attributes:
        start: how long a new containerd may take to answer its health check.
        stop: how long containerd may take to exit on SIGTERM before SIGKILL.
        kill: how long a SIGKILLed containerd may take to be gone.
        health_interval: pause between health checks of a running containerd
            (and, on a kernel without pidfds, between looks at whether an
            adopted containerd is still there).
        health_timeout: deadline of one health check.
        health_failures: consecutive failed checks after which a containerd
            that is alive but not answering is killed and replaced.
        start_poll: pause between health checks while containerd starts.
        restart_initial: first pause before starting a replacement.
        restart_max: longest pause between restart attempts.
        stable: a containerd healthy this long resets the restart back-off.
        dump_grace: how long a hung containerd gets to write its goroutine
            stacks (SIGUSR1) before it is killed.
        log_poll: how often containerd's log file is read.
        reap_interval: how often, while containerd runs, shims an earlier
            containerd lost are looked for (also after every start).
        lost_create: how long a shim this containerd started may serve no
            task it knows (a create in flight) before it is taken for the
            leftover of a create whose caller was killed, and killed.

    Raises:
        InvalidArgument: a value is not a finite, non-negative number, a
            bound that must be positive is zero, or ``health_failures`` is not
            a positive integer.
    """

    start: float = 10.0
    stop: float = 10.0
    kill: float = 10.0
    health_interval: float = 0.5
    health_timeout: float = 1.0
    health_failures: int = 2
    start_poll: float = 0.02
    restart_initial: float = 0.05
    restart_max: float = 5.0
    stable: float = 30.0
    dump_grace: float = 0.2
    log_poll: float = 0.1
    reap_interval: float = 5.0
    lost_create: float = 120.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "health_failures":
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise errors.InvalidArgument(
                        f"health_failures must be a positive integer, not {value!r}"
                    )
                continue
            # bool is an int to Python; a timeout of True is a mistake.
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not math.isfinite(value)
                or value < 0
            ):
                raise errors.InvalidArgument(
                    f"{f.name} must be a finite number of seconds >= 0, not {value!r}"
                )
        # A zero pause would spin the event loop; a zero deadline never succeeds.
        positive = (
            "start",
            "health_interval",
            "health_timeout",
            "start_poll",
            "restart_initial",
            "log_poll",
            "reap_interval",
            "lost_create",
        )
        for name in positive:
            if getattr(self, name) == 0:
                raise errors.InvalidArgument(f"{name} must be more than 0 seconds")
        if self.restart_max < self.restart_initial:
            raise errors.InvalidArgument(
                f"restart_max ({self.restart_max}) is less than restart_initial "
                f"({self.restart_initial})"
            )
