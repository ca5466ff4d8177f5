"""The client's side of supervision: new_container's ``restart=`` and
``healthcheck=`` checked before anything is made, and the container handed
to the supervisor once it exists."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import anyio

from .. import errors
from ..domain._container import Container
from ..domain._session import Session
from ..domain._supervised import HealthCheck, RestartPolicy, checked_healthcheck
from ..domain._supervised_state import POLICY_LABEL
from ..domain._task import Task
from ..supervision import Plan, checked_plan, restored, supervise

__all__ = [
    "HealthCheck",
    "RestartPolicy",
    "checked_supervision",
    "restored_supervision",
    "start_supervising",
]


async def checked_supervision(
    session: Session,
    container_id: str,
    restart: str | RestartPolicy | None,
    healthcheck: HealthCheck | Mapping[str, Any] | None,
    image: str | None,
    labels: dict[str, str],
) -> Plan | None:
    """The checked policy and health check (InvalidArgument if bad: nothing
    made yet); the policy is labelled on the container too."""
    plan = checked_plan(restart, healthcheck, container_id)
    if healthcheck is None and image is not None:
        found = await _image_healthcheck(session, image, container_id)
        if found is not None:
            plan = (RestartPolicy() if plan is None else plan[0], found)
    if plan is not None and plan[0].name != "no":
        labels[POLICY_LABEL] = str(plan[0])
    return plan


async def _image_healthcheck(session: Session, image: str, container_id: str) -> HealthCheck | None:
    # docker's rule: the image's HEALTHCHECK unless the caller gave one. An
    # image that cannot be read here fails the create later, with its own error.
    from ..images._service import ImageService
    from ..oci._image_config import image_config

    try:
        local = await ImageService(session).local(image)
    except errors.SupervisorError:
        return None
    found = image_config(local.record.name, local.manifest_desc.digest, local.config.config)
    hc = found.healthcheck
    if hc is None:
        return None
    fields: dict[str, Any] = {"test": hc.test}
    for name in ("interval", "timeout", "start_period", "retries"):
        value = getattr(hc, name)
        if value is not None:
            fields[name] = value
    try:
        return checked_healthcheck(fields, container_id)
    except errors.InvalidArgument:
        return None  # an image's odd values are no reason to refuse the container


async def start_supervising(session: Session, container: Container, plan: Plan | None) -> Container:
    """Hand the new container to the supervisor (if ``plan``); if its record
    cannot be written, the container is deleted again and the error raised."""
    if plan is None:
        return container
    try:
        await supervise(session, container, plan)
    except OSError as exc:
        with anyio.CancelScope(shield=True), anyio.move_on_after(session.timeouts.cleanup):
            with contextlib.suppress(errors.SupervisorError):
                await container.delete(force=True)
        raise errors.from_os_error(
            exc, "cannot write the container's supervision record", container_id=container.id
        ) from exc
    return container


async def restored_supervision(
    session: Session, pairs: list[tuple[Container, Task | None]]
) -> None:
    """After restore(): supervision taken up again (by the lock's holder)."""
    await restored(session, pairs)
