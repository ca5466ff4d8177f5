"""The client's checkpoint calls: list, remove, and restore into a container
(docs/checkpoint.md). Taking one is :meth:`Task.checkpoint`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Unpack

import anyio

from .. import errors
from .._ids import validate_id
from .._log import get_logger
from .._types import ProcessState
from ..domain._checkpoint_restore import restore_task
from ..domain._checkpoint_store import (
    SPEC_MARK,
    Checkpoint,
    SavedCheckpoint,
    list_checkpoints,
    load_checkpoint,
    remove_checkpoint,
)
from ..domain._container import Container
from ..domain._criu import criu_ready
from ..domain._logs import LogArgs
from ..domain._output import LogWriter, Output
from ..domain._task import Task
from ._arguments import checked_arguments
from ._checkpoint_rw import RwPlan, rw_container, rw_plan
from ._containers import ContainerCalls

if TYPE_CHECKING:
    from ..images._containers import RootfsSnapshot

__all__ = ["CheckpointCalls"]

_log = get_logger("client")


class CheckpointCalls(ContainerCalls):
    """Checkpoints in containerd's content store, for :class:`~supervisor.Client`."""

    async def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint of the namespace (:meth:`Task.checkpoint`'s, and
        ``ctr``'s), oldest first."""
        return await list_checkpoints(self._session)

    async def remove_checkpoint(self, name: str) -> None:
        """Remove a checkpoint; its content is gone when this returns.

        Raises:
            NotFound: no checkpoint of that name (an image that is no
                checkpoint is never removed by this).
        """
        await remove_checkpoint(self._session, name)
        _log.info("checkpoint.remove", checkpoint=name)

    async def restore_checkpoint(
        self,
        name: str,
        id: str,
        *,
        labels: Mapping[str, str] | None = None,
        runtime_options: Mapping[str, Any] | None = None,
        stdin: bool = False,
        log_path: str | os.PathLike[str] | None = None,
        output: Output = "pipe",
        log_writer: LogWriter = "client",
        **log_args: Unpack[LogArgs],
    ) -> tuple[Container, Task]:
        """Resume a checkpoint's processes in container ``id``, where they
        left off: a running :class:`Task` whose stdio is opened as for any new
        task (``stdin``, ``output``, ``log_path``... as :meth:`Container.new_task`).

        ``id`` may name the checkpoint's own container once its task was
        deleted (the container is used as it is), or a new id (a container is
        made with the checkpoint's spec and runtime, and
        ``labels``/``runtime_options``). A checkpoint of a container made from
        an image restores into a new id only if it was taken with ``rw=True``:
        the new container gets a snapshot of the same image (which must be
        here, unpacked) with the checkpoint's changes applied.

        Raises:
            FailedPrecondition: CRIU is missing or ``criu check`` fails here,
                a checkpoint of a container made from an image without its rw
                layer is restored into a new id, or the image is not unpacked
                (nothing was made); CRIU could not restore it (nothing is
                left: no task, and no container or snapshot if the call made
                them).
            AlreadyExists: container ``id`` exists and has a task.
            NotFound: no such checkpoint; the image or the rw layer of a
                checkpoint restored into a new id is not here.

        Example::

            await task.checkpoint("job-1", exit=True)
            await task.delete()
            container, task = await client.restore_checkpoint("job-1", "job-again")
        """
        session = self._session
        session.check_open()
        validate_id(id, kind="container id")
        saved = await load_checkpoint(session, name)
        existing = await self._restorable(id)
        plan = None
        if existing is None and saved.snapshotter:
            plan = await rw_plan(session, id, saved)
        await criu_ready(session.timeouts.cleanup, container_id=id)
        made = existing is None
        if existing is None:
            container = await self._new_restored(id, saved, plan, labels, runtime_options)
        else:
            container = existing
        try:
            task = await restore_task(
                container, saved.criu, stdin=stdin, log_path=log_path, output=output,
                log_writer=log_writer, **log_args,
            )  # fmt: skip
        except BaseException:
            if made:
                with anyio.CancelScope(shield=True), anyio.move_on_after(session.timeouts.cleanup):
                    with contextlib.suppress(errors.SupervisorError):
                        await container.delete(force=True)
            raise
        _log.info("checkpoint.restore", checkpoint=name, container_id=id)
        return container, task

    async def _restorable(self, id: str) -> Container | None:
        """Container ``id`` if it exists (without a task), else None."""
        try:
            container = await self.load_container(id)
        except errors.NotFound:
            return None
        if await container._has_task():
            raise errors.AlreadyExists(
                "the container has a task: delete it before restoring into it",
                container_id=id,
            )
        return container

    async def _new_restored(
        self,
        id: str,
        saved: SavedCheckpoint,
        plan: RwPlan | None,
        labels: Mapping[str, str] | None,
        runtime_options: Mapping[str, Any] | None,
    ) -> Container:
        """A new container made from the checkpoint (on a snapshot made by
        ``plan`` for a container made from an image)."""
        await self._check_cgroup_free(id, saved)
        spec = dict(saved.spec)
        annotations = {k: v for k, v in (spec.get("annotations") or {}).items() if k != SPEC_MARK}
        spec["annotations"] = annotations
        runtime = saved.runtime or "io.containerd.runc.v2"
        if plan is None:
            return await self.new_container(
                id, spec, runtime=runtime, runtime_options=runtime_options, labels=labels
            )
        label_map = checked_arguments(id, runtime, runtime_options, labels)

        async def create(rootfs: RootfsSnapshot) -> Container:
            return await self._create_container(
                id, spec, runtime, runtime_options, label_map, False, None, rootfs, plan.image
            )

        return await rw_container(self._session, id, plan, create)

    async def _check_cgroup_free(self, id: str, saved: SavedCheckpoint) -> None:
        """The restored processes go back into the cgroup they were dumped
        from (runc 1.1 maps no cgroup at restore on cgroup v2), so the new
        container keeps the checkpoint's cgroupsPath: refused while the
        checkpointed container's task, which is in that cgroup, is alive."""
        source = saved.checkpoint.container_id
        if not source:
            return
        try:
            record = await self._session.transport.get_task(source)
        except errors.NotFound:
            return
        if record.state in (ProcessState.RUNNING, ProcessState.PAUSED, ProcessState.PAUSING):
            raise errors.FailedPrecondition(
                f"container {source}'s task is alive in the cgroup the checkpoint restores "
                "into: delete it before restoring into a new container",
                container_id=id,
            )
