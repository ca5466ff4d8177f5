"""A container's task: its init process plus what applies to the whole task."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

import anyio

from .. import _platform, errors
from .._cleanup import undo_if_cancelled
from .._ids import validate_id
from .._log import get_logger
from .._timeouts import backoff
from .._types import ExitStatus, ProcessInfo, StdioPaths
from ..backends import runhcs
from ..spec._builder import checked_process, inherited_process
from ..spec._resources import checked_resources
from ..stats._model import Stats, with_host_figures
from ._create import create_process
from ._graceful import graceful_stop
from ._logs import LogArgs
from ._output import LogWriter, Output, checked_output
from ._process import Process
from ._stats_stream import stats_stream
from ._supervised_hooks import SupervisedTask

if TYPE_CHECKING:
    from ..stats._summary import ProcessSummary
    from ._checkpoint_store import Checkpoint
    from ._network import AttachedNetwork
    from ._session import Session

__all__ = ["Task", "UNKNOWN_OUTCOME", "undo_unknown_create"]

_log = get_logger("task")

# A create that failed with one of these may still have been carried out:
# the connection broke, containerd restarted, or no reply came in time.
UNKNOWN_OUTCOME = (errors.Unavailable, errors.DeadlineExceeded, errors.Cancelled)


async def undo_unknown_create(
    session: Session, container_id: str, exec_id: str, stdio: StdioPaths
) -> None:
    """After a create of a task (``exec_id`` empty) or of an exec failed with
    an unknown outcome: ask containerd, once it answers again, and delete
    what this very call made, so that the caller's error means "nothing was
    made" and trying again is safe. Undone rather than adopted: the caller
    was about to be told of a failure, and a call that fails leaves nothing.

    The process is this call's when containerd's record names this call's
    stdio (FIFO names are unique to the call; ``output="null"`` and
    ``log_path`` files are not, and a process another client made with the
    same ones in that instant would be taken for ours). Bounded by
    ``timeouts.cleanup``: a containerd that does not answer within it
    leaves the question open (logged); ``Container.delete(force=True)``
    then removes whatever task the container has.
    """
    transport = session.transport
    process_id = exec_id or container_id
    with anyio.move_on_after(session.timeouts.cleanup):
        for pause in backoff(0.01, 0.5):
            try:
                record = await transport.get_task(container_id, exec_id)
                if (record.stdio.stdin, record.stdio.stdout, record.stdio.stderr) != (
                    stdio.stdin,
                    stdio.stdout,
                    stdio.stderr,
                ):
                    return  # another client's, made in the meantime
                await _discard(session, container_id, exec_id)
                _log.info("process.create_undone", container_id=container_id, process_id=process_id)
                return
            except errors.NotFound:
                return  # containerd never made it
            except UNKNOWN_OUTCOME:
                await anyio.sleep(pause)
            except errors.SupervisorError as exc:
                _log.warning(
                    "process.create_unresolved",
                    container_id=container_id,
                    process_id=process_id,
                    error=str(exc),
                )
                return
    _log.warning(
        "process.create_unresolved",
        container_id=container_id,
        process_id=process_id,
        error="containerd did not answer in time",
    )


async def _discard(session: Session, container_id: str, exec_id: str) -> None:
    transport = session.transport

    async def delete() -> None:
        if exec_id:
            await transport.delete_process(container_id, exec_id)
        else:
            await transport.delete_task(container_id)

    try:
        # Created, never started: containerd deletes it as it is, and no
        # exit of a process that never ran reaches the backend.
        await delete()
    except errors.FailedPrecondition:
        # Running after all (a start from elsewhere): the force path.
        with contextlib.suppress(errors.NotFound, errors.FailedPrecondition):
            await transport.kill(container_id, exec_id, _platform.SIGKILL, not exec_id)
        await transport.wait(container_id, exec_id)
        await delete()


class Task(SupervisedTask):
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

    @property
    def network(self) -> AttachedNetwork | None:
        """The container's network (see :attr:`Container.network`)."""
        return self.container.network

    @property
    def execs(self) -> Mapping[str, Process]:
        """The execs made through this object, or found again by
        :meth:`Container.task`/:meth:`Client.restore`, until deleted."""
        return self._live.execs(self)

    async def stop(
        self,
        timeout: float = 10.0,  # noqa: ASYNC109 - docker stop's grace period, not a deadline
        signal: int | str | None = None,
    ) -> ExitStatus:
        """Stop the task as ``docker stop`` does: ``signal`` to the init
        process, up to ``timeout`` seconds for the task to exit, then SIGKILL
        to every process of it (a frozen task is thawed so that the signals
        land). The task is not deleted.

        Args:
            timeout: the grace period in seconds (zero: SIGKILL at once).
            signal: a number or a name (``"SIGINT"``, ``"INT"``); ``None``:
                the image's ``StopSignal`` for a container made from an
                image (or the ``io.containerd.image.config.stop-signal``
                label), else SIGTERM.

        Returns:
            The task's exit status; at once for a task that has exited. A
            task created but never started is killed without grace.

        Raises:
            InvalidArgument: a negative or non-finite ``timeout``, or no
                signal; nothing was sent.
            DeadlineExceeded: no exit within ``timeouts.cleanup`` of
                SIGKILL (containerd not answering, say).
            Unavailable: containerd could not be reached.

        Example::

            status = await task.stop(timeout=5)
            await task.delete()
        """
        return await graceful_stop(self, timeout, signal)

    async def pause(self) -> None:
        """Freeze every process of the task."""
        await self._session.transport.pause(self.container.id)
        _log.debug("task.pause", container_id=self.container.id)

    async def resume(self) -> None:
        """Thaw a paused task."""
        await self._session.transport.resume(self.container.id)
        _log.debug("task.resume", container_id=self.container.id)

    async def checkpoint(
        self,
        name: str | None = None,
        *,
        exit: bool = False,
        rw: bool = False,
        timeout: float = 300.0,  # noqa: ASYNC109 - the dump's own bound, shielded
    ) -> Checkpoint:
        """Save the running task with CRIU as checkpoint ``name`` (made up if
        ``None``) in containerd's content store; :meth:`Client.restore_checkpoint`
        resumes it. ``exit``: the task is stopped by the dump (its exit is
        reported as any), else it runs on. ``rw``: the changes the container
        made to its own snapshot (a container made from an image) are saved
        too, so that the checkpoint restores into a new container; the task
        is paused meanwhile. See ``docs/checkpoint.md``.

        Raises:
            FailedPrecondition: CRIU is missing or ``criu check`` fails (the
                reason named), the task is not running, is on a terminal or on
                a CNI network; nothing was changed.
            InvalidArgument: ``rw`` for a container without a snapshot of its
                own (a rootfs directory); nothing was changed.
            AlreadyExists: an image of that name exists.
            DeadlineExceeded: the dump took longer than ``timeout`` seconds.
        """
        from ._checkpoint import checkpoint_task

        return await checkpoint_task(self, name, exit=exit, rw=rw, limit=timeout)

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
        from ..stats._summary import with_host_details

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
        log_writer: LogWriter = "client",
        **log_args: Unpack[LogArgs],
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
            log_writer, log_format, log_max_size, log_max_files: see :meth:`Container.new_task`.

        Raises:
            InvalidArgument: bad id or spec (an id equal to the container's
                is refused: it names the init process); nothing was created.
            AlreadyExists: an exec with this id exists (it is left untouched).
            Unavailable: containerd could not be reached; an exec the call
                made all the same was deleted again once containerd answered
                (see :meth:`Container.new_task`).

        Example::

            proc = await task.exec(None, ["sh", "-c", "echo $HOME"])
            await proc.start()
        """
        session = self._session
        session.check_open()
        cid = self.container.id
        exec_id, spec = self._exec_spec(exec_id, process, terminal=terminal)
        path = checked_output(log_path, output, stdin=stdin, container_id=cid, process_id=exec_id)
        proc = await self._create_exec(
            exec_id,
            spec,
            stdin=stdin,
            terminal=terminal,
            log_path=path,
            output=output,
            log_writer=log_writer, **log_args,
        )  # fmt: skip
        _log.debug("process.exec", container_id=cid, process_id=exec_id)
        await undo_if_cancelled(
            lambda: proc.delete(force=True), limit=session.timeouts.cleanup, what="exec"
        )
        return proc

    async def _create_exec(
        self,
        exec_id: str,
        spec: dict[str, Any],
        *,
        stdin: bool,
        terminal: bool,
        log_path: Path | None,
        output: Output,
        log_writer: LogWriter,
        **log_args: Unpack[LogArgs],
    ) -> Process:
        """The exec created in containerd, its stdio first, and listed as live."""
        session = self._session
        cid = self.container.id

        async def create(stdio: StdioPaths) -> int:
            try:
                await session.transport.exec(cid, exec_id, spec, stdio)
            except UNKNOWN_OUTCOME:
                await undo_unknown_create(session, cid, exec_id, stdio)
                raise
            return 0

        _, fifos, slot = await create_process(
            session,
            self.container.bundle_dir,
            cid,
            exec_id,
            stdin=stdin,
            terminal=terminal,
            create=create,
            log_path=log_path,
            output=output,
            log_writer=log_writer,
            **log_args,
        )
        proc = Process(
            self.container,
            session,
            exec_id,
            pid=0,
            fifos=fifos,
            slot=slot,
            log_path=log_path,
            live=self._live,
        )
        self._live.add_exec(self, exec_id, proc)
        return proc

    def _exec_spec(
        self,
        exec_id: str | None,
        process: Mapping[str, Any] | Sequence[str],
        *,
        terminal: bool,
    ) -> tuple[str, dict[str, Any]]:
        """The new exec's id (made up if ``None``) and its checked OCI process."""
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
        return exec_id, spec
