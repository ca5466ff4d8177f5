"""Supervision: restart policies and health checks (see ``docs/supervision.md``).

``_rules``       docker's restart rules and back-off, as pure functions
``_health``      one health probe as an exec, and the verdict of a series
``_supervisor``  the watchers of one client, the state directory's lock
This file: the one Supervisor of a session, made on first use.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..domain import _supervised_state as state
from ..domain._supervised import (
    HealthCheck,
    RestartPolicy,
    checked_healthcheck,
    checked_policy,
)
from ._supervisor import Supervisor

if TYPE_CHECKING:
    from ..domain._container import Container
    from ..domain._session import Session
    from ..domain._task import Task

__all__ = ["Supervisor", "checked_plan", "close_supervision", "restored", "supervise"]

_SUPERVISORS: weakref.WeakKeyDictionary[Session, Supervisor] = weakref.WeakKeyDictionary()

# What new_container checked: the policy and the health check, or None.
Plan = tuple[RestartPolicy, HealthCheck | None]


def supervisor_for(session: Session) -> Supervisor:
    sup = _SUPERVISORS.get(session)
    if sup is None:
        sup = Supervisor(session)
        _SUPERVISORS[session] = sup
        state.install_hooks(session, sup)
    return sup


def checked_plan(
    restart: str | RestartPolicy | None,
    healthcheck: HealthCheck | Mapping[str, Any] | None,
    container_id: str,
) -> Plan | None:
    """The checked options of new_container (InvalidArgument if bad), or
    None when there is nothing to supervise."""
    policy = checked_policy(restart, container_id)
    check = checked_healthcheck(healthcheck, container_id)
    if policy.name == "no" and check is None:
        return None
    return policy, check


async def supervise(session: Session, container: Container, plan: Plan) -> None:
    """Start supervising a container just made (raises OSError if its record
    cannot be written)."""
    sup = supervisor_for(session)
    sup.register(container, state.Record(policy=plan[0], healthcheck=plan[1]))
    await sup.start()


async def restored(session: Session, pairs: list[tuple[Container, Task | None]]) -> None:
    """After Client.restore(): the supervised containers among ``pairs``
    (those with a record) supervised again, if this client takes the lock."""
    sup = supervisor_for(session)
    found = False
    # Containers this client supervises already are left as they are: a
    # second restore() decides nothing twice.
    pairs = [(c, t) for c, t in pairs if not sup.watching(c.id)]
    for container, _task in pairs:
        record = state.read_record(session.state_dir, session.namespace, container.id)
        if record is not None:
            sup.adopt(container, record)
            found = True
    if not found:
        return
    await sup.start()
    if sup.enforcing:
        await sup.resume(pairs)


async def close_supervision(session: Session) -> None:
    """End the session's supervisor, if it has one (bounded)."""
    sup = _SUPERVISORS.pop(session, None)
    if sup is not None:
        await sup.close(session.timeouts.cleanup)
