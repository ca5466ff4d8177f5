"""The fake's containers service: containers as containerd's metadata
store keeps them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ... import errors
from ..._ids import validate_id
from ..._types import ContainerRecord
from ._connection import Connection
from ._rules import check_container, check_runtime_options
from ._state import _json, _now

__all__ = ["ContainerCalls"]


class ContainerCalls:
    """The Transport's container calls, for :class:`FakeTransport`."""

    _conn: Connection

    async def create_container(
        self,
        container_id: str,
        spec: Mapping[str, Any],
        *,
        runtime: str,
        runtime_options: Mapping[str, Any] | None,
        labels: Mapping[str, str],
        snapshotter: str = "",
        snapshot_key: str = "",
        image: str = "",
    ) -> None:
        await self._conn.before("create_container", container_id)
        validate_id(container_id, kind="container id")
        body = _json(spec, "Spec", container_id)
        options = (
            None if runtime_options is None else _json(runtime_options, "Options", container_id)
        )
        check_container(container_id, runtime, labels, snapshotter, snapshot_key)
        check_runtime_options(container_id, runtime, runtime_options, spec)
        ns = self._conn.ns
        if container_id in ns.containers:
            raise errors.AlreadyExists(
                f'container "{container_id}": already exists', container_id=container_id
            )
        ns.containers[container_id] = ContainerRecord(
            id=container_id,
            spec=body,
            runtime=runtime,
            # containerd stores no label whose value is empty.
            labels={k: v for k, v in labels.items() if v},
            created_at=_now(),
            snapshotter=snapshotter,
            snapshot_key=snapshot_key,
            image=image,
        )
        ns.runtime_options[container_id] = options
        await self._conn.after("create_container")

    async def get_container(self, container_id: str) -> ContainerRecord:
        await self._conn.before("get_container", container_id)
        record = self._conn.container(container_id)
        await self._conn.after("get_container")
        return _copy_record(record)

    async def list_containers(
        self, labels: Mapping[str, str | None] | None = None
    ) -> list[ContainerRecord]:
        await self._conn.before("list_containers")
        containers = self._conn.ns.containers
        records = [
            _copy_record(containers[c])
            for c in sorted(containers)
            if _matches(containers[c].labels, labels or {})
        ]
        await self._conn.after("list_containers")
        return records

    async def update_container_labels(
        self, container_id: str, labels: Mapping[str, str | None]
    ) -> dict[str, str]:
        await self._conn.before("update_container_labels", container_id)
        record = self._conn.container(container_id)
        updated = dict(record.labels)
        for key, value in labels.items():
            if value:
                updated[key] = value
            else:
                # containerd stores no empty label: the key goes.
                updated.pop(key, None)
        check_container(container_id, record.runtime, updated, "", "")
        self._conn.ns.containers[container_id] = replace(record, labels=updated)
        await self._conn.after("update_container_labels")
        return dict(updated)

    async def delete_container(self, container_id: str) -> None:
        await self._conn.before("delete_container", container_id)
        ns = self._conn.ns
        if container_id not in ns.containers:
            raise errors.NotFound(f"container {container_id}: not found", container_id=container_id)
        # containerd does not look for a task here: one left behind is orphaned.
        del ns.containers[container_id]
        ns.runtime_options.pop(container_id, None)
        await self._conn.after("delete_container")


def _matches(have: Mapping[str, str], wanted: Mapping[str, str | None]) -> bool:
    # containerd's selectors: a bare key needs it present, `==` present and
    # equal (a stored label is never empty, so "" matches nothing).
    for key, value in wanted.items():
        if key not in have or (value is not None and have[key] != value):
            return False
    return True


def _copy_record(record: ContainerRecord) -> ContainerRecord:
    # Each reply is decoded afresh from containerd's bytes: callers never
    # share (and never alter) what the fake stores.
    return ContainerRecord(
        id=record.id,
        spec=json.loads(json.dumps(record.spec)),
        runtime=record.runtime,
        labels=dict(record.labels),
        created_at=record.created_at,
        snapshotter=record.snapshotter,
        snapshot_key=record.snapshot_key,
        image=record.image,
    )
