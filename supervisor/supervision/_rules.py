"""docker's restart rules as pure functions: whether an exit is restarted,
and the back-off before it."""

from __future__ import annotations

from ..domain._supervised import RestartPolicy

__all__ = ["next_delay", "should_restart"]


def should_restart(
    policy: RestartPolicy, exit_code: int, *, by_caller: bool, restart_count: int
) -> bool:
    """Whether an exit of the container's task is followed by a restart.

    A stop by the caller (its kill or forced delete) is no failure: nothing
    is restarted after it, whatever the policy. ``on-failure`` restarts a
    non-zero exit while fewer than ``max_retries`` restarts were made (no
    limit when 0); ``always`` and ``unless-stopped`` restart any other exit.
    """
    if policy.name == "no" or by_caller:
        return False
    if policy.name == "on-failure":
        if policy.max_retries and restart_count >= policy.max_retries:
            return False
        return exit_code != 0
    return True


def next_delay(policy: RestartPolicy, previous: float, uptime: float) -> float:
    """The pause before the next restart: ``initial_delay``, doubled at each
    restart, capped at ``max_delay``, and started over once a task stayed up
    ``reset_after`` seconds (docker: 100 ms, x2, 1 min, 10 s)."""
    if uptime >= policy.reset_after or previous <= 0:
        return policy.initial_delay
    return min(previous * 2, policy.max_delay)
