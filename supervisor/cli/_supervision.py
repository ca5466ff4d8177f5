"""What ``ps`` and ``inspect`` show of supervision, read from the records in
the state directory (the command's own client may use a scratch one), and
``run --restart``'s check."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import errors
from ..domain._supervised import checked_policy
from ..domain._supervised_state import Record, read_record
from ._errors import CliError
from ._format import rfc3339

__all__ = ["check_restart", "supervision_fields", "supervision_json", "supervision_of"]


def _base(args: argparse.Namespace) -> Path:
    from .._platform import default_state_dir

    return Path(args.state_dir) if args.state_dir else default_state_dir(address=args.address)


def supervision_of(args: argparse.Namespace, container_id: str) -> Record | None:
    """The container's supervision record, or None (none, or unreadable)."""
    try:
        return read_record(_base(args), args.namespace, container_id)
    except (OSError, errors.SupervisorError):
        return None


def _last_exit(record: Record) -> str:
    e = record.last_exit
    if e is None:
        return ""
    why = " by the caller" if e.by_caller else " unhealthy" if e.unhealthy else ""
    oom = " (OOM)" if e.oom_killed else ""
    return f"{e.exit_code}{oom}{why} at {rfc3339(e.exited_at) or '?'}"


def supervision_json(record: Record | None) -> dict[str, Any] | None:
    if record is None:
        return None
    e = record.last_exit
    return {
        "restart_policy": str(record.policy),
        "restart_count": record.restart_count,
        "last_exit": None
        if e is None
        else {
            "exit_code": e.exit_code,
            "oom_killed": e.oom_killed,
            "exited_at": rfc3339(e.exited_at),
            "by_caller": e.by_caller,
        },
        "health": None if record.healthcheck is None else record.health.status,
    }


def supervision_fields(record: Record | None) -> list[tuple[str, list[str]]]:
    """``inspect``'s lines for it (none without a record)."""
    if record is None:
        return []
    fields = [
        ("Restart policy", [str(record.policy)]),
        ("Restarts", [str(record.restart_count)]),
        ("Last exit", [_last_exit(record)]),
    ]
    if record.healthcheck is not None:
        log = [f"{r.exit_code}: {r.output.strip()[:60]}" for r in record.health.log]
        fields.append(("Health", [record.health.status, *log]))
    return fields


def ps_columns(record: Record | None) -> tuple[str, str]:
    """``ps``'s RESTARTS and HEALTH cells."""
    if record is None:
        return "", ""
    health = record.health.status if record.healthcheck is not None else ""
    return str(record.restart_count), health


def check_restart(args: argparse.Namespace) -> str | None:
    """``run --restart``: docker's spelling, recorded with the container and
    enforced by the application (a client holding the state directory's
    lock), not by this command, which ends."""
    value = getattr(args, "restart", None)
    if value is None:
        return None
    try:
        checked_policy(value, "run")
    except errors.InvalidArgument as exc:
        raise CliError(f"--restart {value}: {exc}") from None
    if args.rm and value != "no":
        raise CliError("--restart cannot be combined with --rm")
    if not args.detach and value != "no":
        # A foreground run deletes the task it waited for: nothing to restart.
        raise CliError("--restart needs -d: the policy is for a container that stays")
    return str(value)
