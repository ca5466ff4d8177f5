"""A container's task restored from a checkpoint: created as any new task is
(its stdio opened first, a tracker slot before containerd can report an
exit), from CRIU's image, then started, which is when runc has CRIU restore
the processes. A restore that fails leaves no task behind."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Unpack

import anyio

from .. import errors
from .._cleanup import undo_if_cancelled
from .._log import get_logger
from .._types import StdioPaths
from ._create import create_process
from ._criu import criu_failure
from ._logs import LogArgs
from ._output import LogWriter, Output
from ._task import UNKNOWN_OUTCOME, Task, undo_unknown_create

if TYPE_CHECKING:
    from pathlib import Path

    from ..oci._manifest import Descriptor
    from ._container import Container

__all__ = ["restore_task"]

_log = get_logger("checkpoint")


async def restore_task(
    container: Container,
    criu: Descriptor,
    *,
    stdin: bool = False,
    log_path: str | os.PathLike[str] | None = None,
    output: Output = "pipe",
    log_writer: LogWriter = "client",
    **log_args: Unpack[LogArgs],
) -> Task:
    """The container's task made from CRIU's image ``criu`` and started.

    Raises:
        AlreadyExists: the container has a task.
        FailedPrecondition: CRIU could not restore it (nothing is left).
    """
    session = container._session
    session.check_open()
    cid = container.id
    path = container._checked_task_output(
        stdin=stdin, terminal=False, log_path=log_path, output=output
    )
    task = await _created(container, criu, stdin, path, output, log_writer, log_args)
    limit = session.timeouts.cleanup
    await undo_if_cancelled(lambda: task.delete(force=True), limit=limit, what="task")
    try:
        await task.start()
    except errors.SupervisorError as exc:
        # CRIU's log is read before the delete takes the bundle it is in.
        failure = criu_failure(exc, "restore the checkpoint", container_id=cid)
        await _discard(task, limit)
        if failure is exc:
            raise
        raise failure from exc
    except BaseException:
        await _discard(task, limit)
        raise
    _log.info("task.restore", container_id=cid, pid=task.pid)
    return task


async def _created(
    container: Container,
    criu: Descriptor,
    stdin: bool,
    path: Path | None,
    output: Output,
    log_writer: LogWriter,
    log_args: LogArgs,
) -> Task:
    """The task created from ``criu``, its stdio first, held as live."""
    from ._checkpoint_store import stores

    session = container._session
    cid = container.id
    dumps, _ = stores(session)
    if not container._mounts and container.rootfs is not None:
        container._mounts = await container.rootfs.mounts()

    async def create(stdio: StdioPaths) -> int:
        try:
            return await dumps.create_task(cid, stdio, criu, container._mounts)
        except UNKNOWN_OUTCOME:
            await undo_unknown_create(session, cid, "", stdio)
            raise

    pid, fifos, slot = await create_process(
        session, container.bundle_dir, cid, cid, stdin=stdin, terminal=False, create=create,
        log_path=path, output=output, log_writer=log_writer, **log_args,
    )  # fmt: skip
    task = Task(
        container, session, cid, pid=pid, fifos=fifos, slot=slot, log_path=path,
        live=container._live,
    )  # fmt: skip
    container._live.add_task(task)
    return task


async def _discard(task: Task, limit: float) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(limit):
        try:
            await task.delete(force=True)
        except errors.SupervisorError as exc:
            _log.warning("task.restore_undo_failed", container_id=task.container.id, error=str(exc))
