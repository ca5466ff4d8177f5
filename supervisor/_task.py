"""A container's task: its init process plus what applies to the whole task."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import _platform, errors
from ._cleanup import undo_if_cancelled
from ._ids import validate_id
from ._log import get_logger
from ._process import Output, Process, checked_output, create_process
from ._resources import checked_resources
from ._spec import checked_process, inherited_process
from ._stats import with_host_figures
from ._stats_stream import stats_stream
from ._types import ProcessInfo, Stats, StdioPaths
from .backends import runhcs

if TYPE_CHECKING:
    from ._summary import ProcessSummary

__all__ = ["Task"]

_log = get_logger("task")


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._execs: dict[str, Process] = {}

    @property
    def execs(self) -> Mapping[str, Process]:
        """The execs made through this object, or found again by
        :meth:`Container.task`/:meth:`Client.restore`, until deleted."""
        return dict(self._execs)

    async def pause(self) -> None:
        """Freeze every process of the task."""
        await self._session.transport.pause(self.container.id)
        _log.debug("task.pause", container_id=self.container.id)

    async def resume(self) -> None:
        """Thaw a paused task."""
        await self._session.transport.resume(self.container.id)
        _log.debug("task.resume", container_id=self.container.id)

    async def pids(self) -> list[ProcessInfo]:
        """The host pids of every process in the task."""
        return await self._session.transport.pids(self.container.id)

    async def stats(self) -> Stats:
        """A sample of the task's resource usage: its cgroup's CPU, memory,
        pids and block IO, the network counters of its own network namespace,
        and the host's CPU time (for :meth:`Stats.cpu_percent`).

        Raises:
            NotFound: the task is gone (containerd has no metrics for it).
        """
        sample = await self._session.transport.stats(self.container.id)
        return with_host_figures(sample, pid=self.pid)

    async def summary(self) -> list[ProcessSummary]:
        """Every process of the task with what the platform tells of it:
        command, state, start time, CPU times and memory (``/proc`` on
        Linux; runhcs's process details on Windows)."""
        # Loaded with the first summary, not with `import supervisor`.
        from ._summary import with_host_details

        found = await self._session.transport.process_summaries(self.container.id)
        return with_host_details(found)

    def stats_stream(self, interval: float = 1.0) -> AsyncIterator[Stats]:
        """Samples of the task's usage, one per ``interval`` seconds, until it
        exits (the iterator then ends). Every stream of one client shares one
        Metrics call per interval, however many tasks are streamed. Use
        :meth:`Stats.cpu_percent` between two samples for ``docker stats``'s
        CPU %.

        Example::

            async for sample in task.stats_stream(1.0):
                print(sample.memory.usage)
        """
        return stats_stream(self._session, self.container.id, self._pid, interval)

    async def update_resources(self, resources: Mapping[str, Any]) -> None:
        """Change the task's limits: an OCI ``LinuxResources`` mapping, e.g.
        ``{"memory": {"limit": 64 << 20}}``.

        Raises:
            InvalidArgument: not a ``LinuxResources`` mapping (unknown keys,
                wrong types, out-of-range values), or containerd refused it.
        """
        if not _platform.PLATFORM.update_resources:
            runhcs.update_unsupported(self.container.id)
            return
        body = checked_resources(resources, container_id=self.container.id)
        await self._session.transport.update_resources(self.container.id, body)
        _log.debug("task.update", container_id=self.container.id)

    async def exec(
        self,
        exec_id: str | None,
        process: Mapping[str, Any] | Sequence[str],
        *,
        stdin: bool = False,
        terminal: bool = False,
        log_path: str | os.PathLike[str] | None = None,
        output: Output = "pipe",
    ) -> Process:
        """Add a process to the task (created, not started: call :meth:`Process.start`).

        Args:
            exec_id: the new process's id, unique within the task; ``None``
                makes one up.
            process: a sequence of args, run like ``docker exec`` with the
                container's own process settings (env, cwd, user,
                capabilities, rlimits); or a full OCI ``process`` mapping
                (see :func:`supervisor.process_spec`).
            stdin: give the process a standard input stream.
            terminal: run it on a terminal (stdout carries the terminal's output).
            log_path: append the process's output to this file (see
                :meth:`Container.new_task`).
            output: ``"pipe"`` (default) or ``"null"`` without ``log_path``.

        Raises:
            InvalidArgument: bad id or spec (an id equal to the container's
                is refused: it names the init process); nothing was created.
            AlreadyExists: an exec with this id exists (it is left untouched).

        Example::

            proc = await task.exec(None, ["sh", "-c", "echo $HOME"])
            await proc.start()
        """
        session = self._session
        session.check_open()
        cid = self.container.id
        if exec_id is None:
            exec_id = f"exec-{secrets.token_hex(6)}"
        validate_id(exec_id, kind="exec id")
        if exec_id == cid:
            raise errors.InvalidArgument(
                "an exec id must differ from the container id (which names the init process)",
                container_id=cid,
                process_id=exec_id,
            )
        if isinstance(process, Mapping):
            spec = checked_process(process)
        else:
            spec = inherited_process(self.container.spec, process)
        spec["terminal"] = bool(terminal)
        path = checked_output(log_path, output, stdin=stdin, container_id=cid, process_id=exec_id)
        transport = session.transport

        async def create(stdio: StdioPaths) -> int:
            await transport.exec(cid, exec_id, spec, stdio)
            return 0

        _, fifos, slot = await create_process(
            session,
            self.container.bundle_dir,
            cid,
            exec_id,
            stdin=stdin,
            terminal=terminal,
            create=create,
            log_path=path,
            output=output,
        )
        proc = Process(
            self.container, session, exec_id, pid=0, fifos=fifos, slot=slot, log_path=path
        )
        self._execs[exec_id] = proc
        _log.debug("process.exec", container_id=cid, process_id=exec_id)
        await undo_if_cancelled(
            lambda: proc.delete(force=True), limit=session.timeouts.cleanup, what="exec"
        )
        return proc
