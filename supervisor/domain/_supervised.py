"""The values of supervision: restart policies, health checks, probe results
and a container's health, checked at the edge so that a bad one is refused
before anything is made.

They live in the domain layer because :class:`Container` and :class:`Task`
read them back (``container.restart_policy``, ``task.health()``); the loops
that act on them are in :mod:`supervisor.supervision`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .. import errors

__all__ = [
    "Health",
    "HealthCheck",
    "LastExit",
    "ProbeResult",
    "RestartPolicy",
    "checked_healthcheck",
    "checked_policy",
]

PolicyName = Literal["no", "on-failure", "always", "unless-stopped"]
HealthStatus = Literal["none", "starting", "healthy", "unhealthy"]

_NAMES: tuple[PolicyName, ...] = ("no", "on-failure", "always", "unless-stopped")

# What a probe keeps of its output, and how many results a container keeps
# (docker's figures: 4 KiB, the last 5).
PROBE_OUTPUT_LIMIT = 4096
PROBE_LOG_LENGTH = 5


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When a container's task is made again after it exited (docker's rules;
    see ``docs/supervision.md``).

    Attributes:
        name: ``"no"``, ``"on-failure"``, ``"always"`` or ``"unless-stopped"``.
        max_retries: for ``on-failure``: restarts at most this many times
            (0: no limit).
        initial_delay: the first restart's delay in seconds (docker: 0.1).
        max_delay: the cap of the doubling delay (docker: 60).
        reset_after: a task that stayed up this long (seconds) starts the
            delay over at ``initial_delay`` (docker: 10).
    """

    name: PolicyName = "no"
    max_retries: int = 0
    initial_delay: float = 0.1
    max_delay: float = 60.0
    reset_after: float = 10.0

    def __str__(self) -> str:
        if self.name == "on-failure" and self.max_retries:
            return f"on-failure:{self.max_retries}"
        return self.name

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "max_retries": self.max_retries,
            "initial_delay": self.initial_delay,
            "max_delay": self.max_delay,
            "reset_after": self.reset_after,
        }


def _bad(message: str, container_id: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(message, container_id=container_id)


def _seconds(value: object, what: str, container_id: str, *, zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(f"{what} must be a number of seconds, not {value!r}", container_id)
    if value < 0 or (value == 0 and not zero):
        raise _bad(f"{what} must be {'>= 0' if zero else '> 0'}, not {value!r}", container_id)
    return float(value)


def checked_policy(value: str | RestartPolicy | None, container_id: str) -> RestartPolicy:
    """A policy from docker's spelling (``"on-failure:3"``) or a value.

    Raises:
        InvalidArgument: an unknown name, a count that is not a number >= 0,
            a count on anything but ``on-failure``, or bad delays.
    """
    if value is None:
        return RestartPolicy()
    if isinstance(value, RestartPolicy):
        policy = value
    elif isinstance(value, str):
        name, sep, count = value.partition(":")
        if name not in _NAMES:
            raise _bad(
                f"restart policy {value!r}: not one of no, on-failure[:N], always, unless-stopped",
                container_id,
            )
        retries = 0
        if sep:
            if name != "on-failure":
                raise _bad(f"restart policy {value!r}: only on-failure takes a count", container_id)
            if not count.isdigit() or not count.isascii():
                raise _bad(
                    f"restart policy {value!r}: the count must be a number >= 0", container_id
                )
            retries = int(count)
        policy = RestartPolicy(name, retries)
    else:
        raise _bad(f"restart must be a string or a RestartPolicy, not {value!r}", container_id)
    if policy.name not in _NAMES:
        raise _bad(f"unknown restart policy {policy.name!r}", container_id)
    retries = policy.max_retries
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise _bad(f"max_retries must be an int >= 0, not {retries!r}", container_id)
    if retries and policy.name != "on-failure":
        raise _bad("only on-failure takes max_retries", container_id)
    initial = _seconds(policy.initial_delay, "initial_delay", container_id, zero=False)
    cap = _seconds(policy.max_delay, "max_delay", container_id, zero=False)
    _seconds(policy.reset_after, "reset_after", container_id, zero=False)
    if cap < initial:
        raise _bad("max_delay must be >= initial_delay", container_id)
    return policy


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """docker's HEALTHCHECK: a probe run in the container every ``interval``.

    Attributes:
        test: ``("CMD", program, arg, ...)`` (run as is) or
            ``("CMD-SHELL", command)`` (run by ``/bin/sh -c``).
        interval: seconds between the end of one probe and the next (docker: 30).
        timeout: a probe still running after this long fails and is killed
            (docker: 30).
        start_period: seconds after the start in which failures do not count
            (a success still makes the container healthy) (docker: 0).
        retries: consecutive failures that make the container unhealthy
            (docker: 3).
        restart_unhealthy: restart the container when it turns unhealthy
            (by its restart policy, as a failure). Off by default, as in docker.
    """

    test: tuple[str, ...]
    interval: float = 30.0
    timeout: float = 30.0
    start_period: float = 0.0
    retries: int = 3
    restart_unhealthy: bool = False

    @property
    def argv(self) -> list[str]:
        """The probe's command line."""
        if self.test[0] == "CMD-SHELL":
            return ["/bin/sh", "-c", self.test[1]]
        return list(self.test[1:])

    def as_dict(self) -> dict[str, Any]:
        return {
            "test": list(self.test),
            "interval": self.interval,
            "timeout": self.timeout,
            "start_period": self.start_period,
            "retries": self.retries,
            "restart_unhealthy": self.restart_unhealthy,
        }


def checked_healthcheck(
    value: HealthCheck | Mapping[str, Any] | None, container_id: str
) -> HealthCheck | None:
    """A health check from a value or a mapping of its fields (None: none;
    a test of ``["NONE"]``: none either, as docker's).

    Raises:
        InvalidArgument: a test that is not ``["CMD", ...]``/``["CMD-SHELL", cmd]``,
            an interval or timeout that is not > 0, a start period < 0,
            retries that are not an int >= 1.
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        unknown = set(value) - set(HealthCheck.__dataclass_fields__)
        if unknown or "test" not in value:
            raise _bad(f"healthcheck: unknown keys {sorted(unknown)} or no test", container_id)
        value = HealthCheck(**{**value, "test": _test(value["test"], container_id)})
    if not isinstance(value, HealthCheck):
        raise _bad(f"healthcheck must be a HealthCheck or a mapping, not {value!r}", container_id)
    test = _test(value.test, container_id)
    if test == ("NONE",):
        return None
    retries = value.retries
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 1:
        raise _bad(f"healthcheck retries must be an int >= 1, not {retries!r}", container_id)
    return HealthCheck(
        test,
        interval=_seconds(value.interval, "healthcheck interval", container_id, zero=False),
        timeout=_seconds(value.timeout, "healthcheck timeout", container_id, zero=False),
        start_period=_seconds(
            value.start_period, "healthcheck start_period", container_id, zero=True
        ),
        retries=retries,
        restart_unhealthy=bool(value.restart_unhealthy),
    )


def _test(test: object, container_id: str) -> tuple[str, ...]:
    if isinstance(test, str) or not isinstance(test, Sequence):
        raise _bad(f"healthcheck test must be a list, not {test!r}", container_id)
    words = tuple(test)
    if not all(isinstance(w, str) for w in words) or not words:
        raise _bad(f"healthcheck test must be a non-empty list of strings: {test!r}", container_id)
    kind = words[0]
    if kind == "NONE" and len(words) == 1:
        return words
    if kind == "CMD" and len(words) >= 2 and words[1]:
        return words
    if kind == "CMD-SHELL" and len(words) == 2 and words[1].strip():
        return words
    raise _bad(
        f'healthcheck test {list(words)!r}: not ["CMD", program, ...], '
        '["CMD-SHELL", command] or ["NONE"]',
        container_id,
    )


@dataclass(frozen=True, slots=True)
class LastExit:
    """How a supervised container's task last ended.

    Attributes:
        exit_code: its exit code (128 + signal when killed).
        oom_killed: whether the kernel's OOM killer struck.
        exited_at: when it exited (UTC), as containerd says.
        by_caller: it was stopped by a kill or delete of the caller's: no
            failure, not restarted.
        unhealthy: killed because its health check failed (only with
            ``restart_unhealthy``).
    """

    exit_code: int
    oom_killed: bool = False
    exited_at: datetime | None = None
    by_caller: bool = False
    unhealthy: bool = False


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One health probe.

    Attributes:
        exit_code: 0 healthy, anything else a failure (-1: it could not run,
            or did not end within the timeout; ``output`` says why).
        output: what it wrote (stdout then stderr), at most 4 KiB.
        start, end: when it began and ended (UTC).
    """

    exit_code: int
    output: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Health:
    """A task's health, as :meth:`Task.health` reads it.

    Attributes:
        status: ``"starting"`` (no verdict yet), ``"healthy"``, ``"unhealthy"``,
            or ``"none"`` (the container has no health check).
        failing_streak: consecutive failed probes (counted after the start period).
        log: the last 5 probe results, oldest first.
    """

    status: HealthStatus = "none"
    failing_streak: int = 0
    log: tuple[ProbeResult, ...] = field(default=())
