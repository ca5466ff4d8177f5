"""A container: containerd's record of a spec and a runtime, and its bundle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from . import errors
from ._cleanup import undo_if_cancelled
from ._log import get_logger
from ._process import Process
from ._task import Task, stdio_paths
from .fifo import open_stdio

if TYPE_CHECKING:
    from ._client import Client
    from ._types import TaskRecord

__all__ = ["Container"]

_log = get_logger("container")


class Container:
    """A container the caller keeps; made by :meth:`Client.new_container` or
    :meth:`Client.load_container`.

    Attributes:
        id: the container id.
        spec: the OCI runtime spec it was created with (a private copy).
        runtime: the containerd shim it runs under, e.g. ``io.containerd.runc.v2``.
        labels: its containerd labels.
        bundle_dir: the directory the library keeps the container's stdio in.
    """

    def __init__(
        self,
        client: Client,
        container_id: str,
        *,
        spec: dict[str, Any],
        runtime: str,
        labels: dict[str, str],
        bundle_dir: Path,
        task_known: bool | None,
    ) -> None:
        self._client = client
        self.id = container_id
        self.spec = spec
        self.runtime = runtime
        self.labels = labels
        self.bundle_dir = bundle_dir
        # True: a task made or loaded here is alive; False: none (we made the
        # container and deleted its tasks ourselves); None: ask containerd.
        self._task_known = task_known
        self._task: Task | None = None

    def __repr__(self) -> str:
        return f"<Container {self.id} runtime={self.runtime}>"

    async def new_task(self, *, stdin: bool = False, terminal: bool = False) -> Task:
        """Create the container's task (its init process), not yet started.

        The stdio FIFOs are made and opened before containerd sees the task,
        and removed again if creating it fails.

        Args:
            stdin: give the init process a standard input stream.
            terminal: run it on a terminal; its output then all comes on stdout.
                Match the spec's ``process.terminal`` (set here if different).

        Raises:
            AlreadyExists: the container has a task already.
        """
        client = self._client
        cid = self.id
        process = self.spec.get("process")
        if isinstance(process, dict) and bool(process.get("terminal")) != terminal:
            raise errors.InvalidArgument(
                f"terminal={terminal} but the spec's process.terminal is "
                f"{bool(process.get('terminal'))}",
                container_id=cid,
            )
        fifos = await open_stdio(self.bundle_dir, "init", stdin=stdin, terminal=terminal)
        tracker = client._tracker
        slot = tracker.watch(cid, cid) if tracker is not None else None
        try:
            with anyio.CancelScope(shield=True):
                pid = await client._transport.create_task(cid, stdio_paths(fifos))
        except BaseException:
            fifos.remove()
            if tracker is not None:
                tracker.forget(cid, cid)
            raise
        task = Task(self, cid, pid=pid, fifos=fifos, slot=slot)
        self._task = task
        self._task_known = True
        _log.info("task.create", container_id=cid, pid=pid)
        await undo_if_cancelled(
            lambda: task.delete(force=True), limit=client._timeouts.cleanup, what="task"
        )
        return task

    async def task(self) -> Task:
        """The container's existing task, loaded from containerd (no stdio attached).

        Raises:
            NotFound: the container has no task.
        """
        client = self._client
        cid = self.id
        if self._task is not None and not self._task._deleted:
            return self._task
        tracker = client._tracker
        # Watch before asking, so an exit between the two is not missed.
        slot = tracker.watch(cid, cid) if tracker is not None else None
        try:
            record = await client._transport.get_task(cid)
        except BaseException:
            if tracker is not None and slot is not None and not slot.pid:
                tracker.forget(cid, cid)
            raise
        return self._adopt_task(record)

    def _adopt_task(self, record: TaskRecord) -> Task:
        """A Task for containerd's record of it (loaded or listed)."""
        client = self._client
        cid = self.id
        tracker = client._tracker
        slot = None
        if tracker is not None:
            slot = tracker.started(cid, cid, record.pid)
            status = record.exit_status
            if status is not None:
                if client._monitor is not None:
                    # Exited while nobody here listened: the backend hears it
                    # now, once (the tracker drops a copy from the stream).
                    client._monitor.found_exited(
                        cid, cid, record.pid, status.exit_code, status.exited_at
                    )
                else:
                    tracker.exited(cid, cid, record.pid, status.exit_code, status.exited_at)
        task = Task(self, cid, pid=record.pid, fifos=None, slot=slot)
        task._started = record.pid != 0
        self._task = task
        self._task_known = True
        return task

    def _task_deleted(self, task: Process) -> None:
        if self._task is task:
            self._task = None
        self._task_known = False

    async def delete(self) -> None:
        """Delete the container from containerd and remove its bundle directory.

        Raises:
            FailedPrecondition: the container still has a task (delete it first),
                as containerd's own client refuses too.
            NotFound: no such container.
        """
        client = self._client
        cid = self.id
        if self._task_known is None:
            try:
                await client._transport.get_task(cid)
            except errors.NotFound:
                self._task_known = False
            else:
                self._task_known = True
        if self._task_known:
            raise errors.FailedPrecondition(
                "cannot delete a container with a task", container_id=cid
            )
        # Shielded: a delete cancelled after containerd acted would otherwise
        # leave the bundle directory behind with nothing to say it is stale.
        with anyio.CancelScope(shield=True):
            await client._transport.delete_container(cid)
            client._forget_container(self)
        _log.info("container.delete", container_id=cid)
