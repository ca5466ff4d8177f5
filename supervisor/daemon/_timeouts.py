"""How the embedded containerd is started, watched and stopped."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DaemonTimeouts"]


@dataclass(frozen=True, slots=True)
class DaemonTimeouts:
    """How the embedded containerd is started, watched and stopped, in seconds.

    Attributes:
        start: how long a new containerd may take to answer its health check.
        stop: how long containerd may take to exit on SIGTERM before SIGKILL.
        kill: how long a SIGKILLed containerd may take to be gone.
        health_interval: pause between health checks of a running containerd.
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
