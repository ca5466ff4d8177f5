"""What supervision keeps of a container, on disk and in memory, and the
hooks through which Container and Task tell the supervisor what the caller
did.

The record of a supervised container is one small JSON file,
``<state>/.supervision/<namespace>/<container id>.json``, written whole
(beside, then renamed) by the client that enforces the policies: the policy,
the health check, how the task was made (to make it again the same way), the
restart count, the last exit, whether the caller stopped it, and a restart
in progress. Any client of the state directory (and the command's ``ps``)
reads it back. containerd holds the policy too, as the label
``supervisor.restart``, so that other tools see it.

The domain layer cannot import :mod:`supervisor.supervision` (it sits above);
instead the supervisor of a client installs itself here as the session's
:class:`Hooks`, and the Container/Task calls report to whatever is installed.
"""

from __future__ import annotations

import json
import os
import weakref
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .. import _paths, errors
from .._log import get_logger
from ._supervised import (
    Health,
    HealthCheck,
    LastExit,
    ProbeResult,
    RestartPolicy,
    checked_healthcheck,
    checked_policy,
)

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["Hooks", "Record", "hooks_of", "install_hooks", "read_record", "write_record"]

_log = get_logger("supervision")

POLICY_LABEL = "supervisor.restart"


class Hooks(Protocol):
    """What the supervisor of a session hears from Container and Task calls."""

    def task_made(self, container: Any, settings: dict[str, Any]) -> None: ...

    def task_started(self, task: Any) -> None: ...

    def caller_stop(self, container_id: str) -> None: ...

    def deleting(self, container_id: str) -> None: ...

    def health(self, container_id: str) -> Health | None: ...

    async def wait_healthy(self, container_id: str) -> Health: ...


_HOOKS: weakref.WeakKeyDictionary[Session, Hooks] = weakref.WeakKeyDictionary()


def install_hooks(session: Session, hooks: Hooks) -> None:
    _HOOKS[session] = hooks


def hooks_of(session: Session) -> Hooks | None:
    return _HOOKS.get(session)


@dataclass
class Record:
    """A supervised container's record (see the module docstring)."""

    policy: RestartPolicy
    healthcheck: HealthCheck | None = None
    # How the caller made the task: new_task's keyword arguments.
    settings: dict[str, Any] = field(default_factory=dict)
    restart_count: int = 0
    last_exit: LastExit | None = None
    caller_stopped: bool = False
    # The back-off the next restart waits (0: the next one starts over).
    delay: float = 0.0
    started_at: datetime | None = None
    # A restart decided on and not yet done: {"attempt", "delay", "pid"}.
    pending: dict[str, Any] | None = None
    # The exit decided on last: [pid, exited_at], so that an exit found again
    # (after a restart of the application) is not decided on twice.
    handled: list[Any] | None = None
    health: Health = field(default_factory=Health)

    def to_json(self) -> bytes:
        body = {
            "policy": self.policy.as_dict(),
            "healthcheck": None if self.healthcheck is None else self.healthcheck.as_dict(),
            "settings": self.settings,
            "restart_count": self.restart_count,
            "last_exit": None if self.last_exit is None else _exit_dict(self.last_exit),
            "caller_stopped": self.caller_stopped,
            "delay": self.delay,
            "started_at": _iso(self.started_at),
            "pending": self.pending,
            "handled": self.handled,
            "health": {
                "status": self.health.status,
                "failing_streak": self.health.failing_streak,
                "log": [
                    [r.exit_code, r.output, _iso(r.start), _iso(r.end)] for r in self.health.log
                ],
            },
        }
        return json.dumps(body).encode()

    @classmethod
    def from_json(cls, data: bytes, container_id: str) -> Record:
        body = json.loads(data)
        policy = checked_policy(RestartPolicy(**body["policy"]), container_id)
        hc = body.get("healthcheck")
        exit_ = body.get("last_exit")
        health = body.get("health") or {}
        return cls(
            policy=policy,
            healthcheck=None if hc is None else checked_healthcheck(hc, container_id),
            settings=dict(body.get("settings") or {}),
            restart_count=int(body.get("restart_count", 0)),
            last_exit=None if exit_ is None else _exit_of(exit_),
            caller_stopped=bool(body.get("caller_stopped", False)),
            delay=float(body.get("delay", 0.0)),
            started_at=_time(body.get("started_at")),
            pending=body.get("pending"),
            handled=body.get("handled"),
            health=Health(
                health.get("status", "none"),
                int(health.get("failing_streak", 0)),
                tuple(
                    ProbeResult(int(c), str(o), _time(s) or _EPOCH, _time(e) or _EPOCH)
                    for c, o, s, e in health.get("log", ())
                ),
            ),
        )

    def copy(self) -> Record:
        return replace(self, settings=dict(self.settings))


_EPOCH = datetime.fromtimestamp(0).astimezone()


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _exit_dict(e: LastExit) -> dict[str, Any]:
    return {
        "exit_code": e.exit_code,
        "oom_killed": e.oom_killed,
        "exited_at": _iso(e.exited_at),
        "by_caller": e.by_caller,
        "unhealthy": e.unhealthy,
    }


def _exit_of(d: dict[str, Any]) -> LastExit:
    return LastExit(
        int(d["exit_code"]),
        bool(d.get("oom_killed")),
        _time(d.get("exited_at")),
        bool(d.get("by_caller")),
        bool(d.get("unhealthy")),
    )


def record_dir(state_dir: Path, namespace: str) -> Path:
    return state_dir / ".supervision" / namespace


def record_path(state_dir: Path, namespace: str, container_id: str) -> Path:
    return record_dir(state_dir, namespace) / f"{container_id}.json"


def read_record(state_dir: Path, namespace: str, container_id: str) -> Record | None:
    """The container's record, or None if it has none (or an unreadable one,
    logged: a damaged record must not stop anything else)."""
    path = record_path(state_dir, namespace, container_id)
    try:
        return Record.from_json(_paths.read_small(path), container_id)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, errors.InvalidArgument) as exc:
        _log.warning("supervision.record_unreadable", container_id=container_id, error=str(exc))
        return None


def write_record(state_dir: Path, namespace: str, container_id: str, record: Record) -> None:
    """Write the record whole (raises OSError)."""
    directory = _paths.private_dir(record_dir(state_dir, namespace))
    _paths.write_new(directory / f"{container_id}.json", record.to_json())


def remove_record(state_dir: Path, namespace: str, container_id: str) -> None:
    try:
        os.unlink(record_path(state_dir, namespace, container_id))
    except FileNotFoundError:
        pass


# -- what Container and Task call ------------------------------------------------


def task_made(session: Session, container: Any, settings: dict[str, Any]) -> None:
    hooks = _HOOKS.get(session)
    if hooks is not None:
        hooks.task_made(container, settings)


def task_started(session: Session, task: Any) -> None:
    hooks = _HOOKS.get(session)
    if hooks is not None:
        hooks.task_started(task)


def caller_stop(session: Session, container_id: str) -> None:
    hooks = _HOOKS.get(session)
    if hooks is not None:
        hooks.caller_stop(container_id)


def deleting(session: Session, container_id: str) -> None:
    hooks = _HOOKS.get(session)
    if hooks is not None:
        hooks.deleting(container_id)
    else:
        # Deleted through a client that supervises nothing: the record goes
        # all the same (the enforcing client, if any, sees the task go).
        remove_record(session.state_dir, session.namespace, container_id)


def record_for(session: Session, container_id: str) -> Record | None:
    return read_record(session.state_dir, session.namespace, container_id)


def health_of(session: Session, container_id: str) -> Health:
    """The enforcing client's view if this is it, else the record's."""
    hooks = _HOOKS.get(session)
    if hooks is not None:
        health = hooks.health(container_id)
        if health is not None:
            return health
    record = record_for(session, container_id)
    return Health() if record is None else record.health


async def wait_healthy(session: Session, container_id: str, timeout: float | None) -> Health:  # noqa: ASYNC109
    """Until the task is healthy (see :meth:`Task.wait_healthy`)."""
    import anyio  # here: the command's ps reads records without an event loop library

    hooks = _HOOKS.get(session)
    if hooks is None or hooks.health(container_id) is None:
        raise errors.FailedPrecondition(
            "no health check of this container runs in this client (none was given, "
            "or another client of the state directory enforces it)",
            container_id=container_id,
        )
    with anyio.move_on_after(timeout) as scope:
        return await hooks.wait_healthy(container_id)
    assert scope.cancelled_caught
    raise errors.DeadlineExceeded(
        f"not healthy within {timeout}s ({health_of(session, container_id).status})",
        container_id=container_id,
    )
