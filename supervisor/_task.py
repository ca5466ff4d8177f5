"""A container's task: its init process plus what applies to the whole task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio

from . import errors
from ._cleanup import undo_if_cancelled
from ._ids import validate_id
from ._log import get_logger
from ._process import Process
from ._spec import checked_process
from ._types import ProcessInfo, Stats, StdioPaths
from .fifo import StdioSet, open_stdio

__all__ = ["Task"]

_log = get_logger("task")


def stdio_paths(fifos: StdioSet) -> StdioPaths:
    return StdioPaths(
        stdin=fifos.stdin_path or "",
        stdout=fifos.stdout_path,
        stderr=fifos.stderr_path or "",
        terminal=fifos.terminal,
    )


class Task(Process):
    """The running (or created) instance of a container: its init process, and
    the calls that act on every process in it.

    Made by :meth:`Container.new_task` (created, not started) or loaded by
    :meth:`Container.task`.

    Example::

        task = await container.new_task()
        await task.start()
        print(await task.stdout.receive())
        status = await task.wait()
        await task.delete()
    """

    async def pause(self) -> None:
        """Freeze every process of the task."""
        await self.container._client._transport.pause(self.container.id)
        _log.info("task.pause", container_id=self.container.id)

    async def resume(self) -> None:
        """Thaw a paused task."""
        await self.container._client._transport.resume(self.container.id)
        _log.info("task.resume", container_id=self.container.id)

    async def pids(self) -> list[ProcessInfo]:
        """The host pids of every process in the task."""
        return await self.container._client._transport.pids(self.container.id)

    async def stats(self) -> Stats:
        """A sample of the task's cgroup metrics (memory, CPU, pids, block IO)."""
        return await self.container._client._transport.stats(self.container.id)

    async def update_resources(self, resources: Mapping[str, Any]) -> None:
        """Change the task's limits: an OCI ``LinuxResources`` mapping, e.g.
        ``{"memory": {"limit": 64 << 20}}``.

        Raises:
            InvalidArgument: ``resources`` is not a mapping, or containerd refused it.
        """
        if not isinstance(resources, Mapping):
            raise errors.InvalidArgument(
                "resources must be a mapping", container_id=self.container.id
            )
        await self.container._client._transport.update_resources(self.container.id, dict(resources))
        _log.info("task.update", container_id=self.container.id)

    async def exec(
        self,
        exec_id: str,
        process_spec: Mapping[str, Any],
        *,
        stdin: bool = False,
        terminal: bool = False,
    ) -> Process:
        """Add a process to the task (created, not started: call :meth:`Process.start`).

        Args:
            exec_id: the new process's id, unique within the task.
            process_spec: an OCI ``process`` mapping (see :func:`supervisor.process_spec`).
            stdin: give the process a standard input stream.
            terminal: run it on a terminal (stdout carries the terminal's output).

        Raises:
            InvalidArgument: bad id or spec; nothing was created.
            AlreadyExists: an exec with this id exists.
        """
        cid = self.container.id
        validate_id(exec_id, kind="exec id")
        spec = checked_process(process_spec)
        spec["terminal"] = terminal
        client = self.container._client
        fifos = await open_stdio(
            self.container.bundle_dir, f"exec.{exec_id}", stdin=stdin, terminal=terminal
        )
        tracker = client._tracker
        slot = tracker.watch(cid, exec_id) if tracker is not None else None
        try:
            # Shielded: once containerd may have the exec, we must learn so,
            # or a cancellation here would leak it.
            with anyio.CancelScope(shield=True):
                await client._transport.exec(cid, exec_id, spec, stdio_paths(fifos))
        except BaseException:
            fifos.remove()
            if tracker is not None:
                tracker.forget(cid, exec_id)
            raise
        process = Process(self.container, exec_id, pid=0, fifos=fifos, slot=slot)
        _log.info("process.exec", container_id=cid, process_id=exec_id)
        await undo_if_cancelled(
            lambda: process.delete(force=True), limit=client._timeouts.cleanup, what="exec"
        )
        return process
