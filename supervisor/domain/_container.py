"""A container: containerd's record of a spec and a runtime, and its bundle."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from .. import errors
from .._cleanup import shielded, undo_if_cancelled
from .._log import get_logger
from .._types import ProcessState
from ..fifo._attach import exec_ids_in
from ..spec._bundle import remove_bundle_async
from ._archive import ArchiveMethods
from ._create import create_process
from ._found import oom_killed, report_found
from ._graceful import stop_method
from ._labels import set_labels_method
from ._live import LiveProcesses
from ._logs import LogArgs, logs_method
from ._output import LogWriter, Output, checked_output
from ._process import Process
from ._supervised_hooks import SupervisedContainer
from ._task import UNKNOWN_OUTCOME, Task, undo_unknown_create

if TYPE_CHECKING:
    from .._types import StdioPaths, TaskRecord
    from ..fifo import StdioSet
    from ._network import AttachedNetwork, NetworkAttachment
    from ._rootfs import Rootfs
    from ._session import Session

_P = TypeVar("_P", bound=Process)

__all__ = ["Container", "restore_tasks"]

_log = get_logger("container")


async def restore_tasks(
    session: Session,
    containers: list[Container],
    tasks: Mapping[str, TaskRecord],
    *,
    attach: bool,
) -> list[tuple[Container, Task | None]]:
    """Each container with a Task for containerd's record of its task (and
    its execs), or None: what :meth:`Client.restore` hands back. Every
    question first, then every adoption without an await: a call that
    fails leaves nothing opened or tracked."""
    loaded = {c.id: (tasks[c.id], await c._exec_records()) for c in containers if c.id in tasks}
    oom = await oom_killed(session, loaded)
    restored: list[tuple[Container, Task | None]] = []
    for container in containers:
        task = None
        if container.id in loaded:
            record, execs = loaded[container.id]
            task = container._adopt(record, execs, attach=attach, oom=container.id in oom)
        restored.append((container, task))
    return restored


class Container(SupervisedContainer, ArchiveMethods):
    """A container the caller keeps; made by :meth:`Client.new_container` or
    :meth:`Client.load_container`.

    Attributes:
        id: the container id.
        spec: the OCI runtime spec it was created with (a private copy).
        runtime: the containerd shim it runs under, e.g. ``io.containerd.runc.v2``.
        labels: its containerd labels.
        bundle_dir: the directory the library keeps the container's stdio in,
            derived from the state directory, the namespace and the id.
    """

    def __init__(
        self,
        session: Session,
        container_id: str,
        *,
        spec: dict[str, Any],
        runtime: str,
        labels: dict[str, str],
        bundle_dir: Path,
    ) -> None:
        self._session = session
        self.id = container_id
        self.spec = spec
        self.runtime = runtime
        self.labels = labels
        self.bundle_dir = bundle_dir
        # The Task object (and its execs) this Container object holds.
        self._live: LiveProcesses[Task, Process] = LiveProcesses()

    # A container made from an image: the snapshot that is its root
    # filesystem (handed over by the image layer), and its mounts once known.
    rootfs: Rootfs | None = None
    _mounts: tuple[Any, ...] = ()
    # A container on a network (handed over by the client's network layer):
    # what it got, released when the container is deleted.
    network_attachment: NetworkAttachment | None = None

    @property
    def network(self) -> AttachedNetwork | None:
        """What the container got from ``network=`` (a
        :class:`supervisor.network.NetworkInfo`: ``ip``, ``gateway``,
        ``interface``, ``host_port(80)``...), or ``None`` without one."""
        return None if self.network_attachment is None else self.network_attachment.info

    @property
    def snapshotter(self) -> str | None:
        """The snapshotter of the container's own snapshot (made from an image)."""
        return None if self.rootfs is None else self.rootfs.snapshotter

    @property
    def snapshot_key(self) -> str | None:
        """The key of the container's own snapshot (made from an image)."""
        return None if self.rootfs is None else self.rootfs.key

    def __repr__(self) -> str:
        return f"<Container {self.id} runtime={self.runtime}>"

    logs = logs_method

    async def new_task(
        self,
        *,
        stdin: bool = False,
        terminal: bool = False,
        log_path: str | os.PathLike[str] | None = None,
        output: Output = "pipe",
        log_writer: LogWriter = "client",
        **log_args: Unpack[LogArgs],
    ) -> Task:
        """Create the container's task (its init process), not yet started.

        The stdio FIFOs are made and opened before containerd sees the task,
        and removed again if creating it fails.

        Args:
            stdin: give the init process a standard input stream.
            terminal: run it on a terminal; its output then all comes on stdout.
                Must match the spec's ``process.terminal``.
            log_path: an absolute path: the process's stdout and stderr are
                appended to that file (opened without following links), and
                everything the process wrote is in it once :meth:`~Process.wait`
                returned. The task then has no ``stdout``/``stderr`` streams.
            output: without ``log_path``: ``"pipe"`` (read ``task.stdout`` and
                ``task.stderr``, or they fill and block the process) or
                ``"null"`` (discarded).
            log_writer: who appends to ``log_path``: ``"client"`` (default:
                this client copies the output; while no client of the state
                directory runs, up to about 1 MiB per stream waits in the
                FIFOs before the process blocks) or ``"logger"`` (a small
                logger process that containerd's shim runs beside the task:
                the output never waits for the application). See ``docs/api.md``;
                ``log_format="cri"``, ``log_max_size``, ``log_max_files``: ``docs/logs.md``.

        Raises:
            AlreadyExists: the container has a task already (the existing
                task and its stdio are left untouched).
            FailedPrecondition: a task directory a killed containerd left
                holds the id (the message says what to do; docs/daemon.md).
            InvalidArgument: ``terminal`` disagrees with the spec.
            Unavailable, DeadlineExceeded: containerd could not be reached or
                did not answer in time. Whether it made the task is asked
                again once it answers (within ``timeouts.cleanup``), and a task
                this call made is deleted before the error is raised: the
                call made nothing, and trying again is safe. Past that bound
                the question stays open; :meth:`delete` with ``force=True``
                removes whatever task is there.
        """
        session = self._session
        session.check_open()
        cid = self.id
        path = self._checked_task_output(
            stdin=stdin, terminal=terminal, log_path=log_path, output=output
        )
        task = await self._new_task(stdin=stdin, terminal=terminal, log_path=path,
            output=output, log_writer=log_writer, **log_args)  # fmt: skip
        _log.debug("task.create", container_id=cid, pid=task.pid)
        self._note_task_made(stdin, terminal, path, output, log_writer, **log_args)
        await undo_if_cancelled(
            lambda: task.delete(force=True), limit=session.timeouts.cleanup, what="task"
        )
        return task

    async def _new_task(
        self,
        *,
        stdin: bool,
        terminal: bool,
        log_path: Path | None,
        output: Output,
        log_writer: LogWriter,
        **log_args: Unpack[LogArgs],
    ) -> Task:
        """The task created in containerd, its stdio first, and held as live."""
        session = self._session
        cid = self.id
        if not self._mounts and self.rootfs is not None:
            self._mounts = await self.rootfs.mounts()
        pid, fifos, slot = await create_process(
            session,
            self.bundle_dir,
            cid,
            cid,
            stdin=stdin,
            terminal=terminal,
            create=self._create_task,
            log_path=log_path,
            output=output,
            log_writer=log_writer,
            **log_args,
        )
        task = Task(
            self, session, cid, pid=pid, fifos=fifos, slot=slot, log_path=log_path, live=self._live
        )
        self._live.add_task(task)
        return task

    def _checked_task_output(
        self,
        *,
        stdin: bool,
        terminal: bool,
        log_path: str | os.PathLike[str] | None,
        output: Output,
    ) -> Path | None:
        """Refuse a terminal the spec disagrees with, and check where the
        output goes (the log file's path if there is one)."""
        process = self.spec.get("process")
        if isinstance(process, dict) and bool(process.get("terminal")) != bool(terminal):
            raise errors.InvalidArgument(
                f"terminal={terminal} but the spec's process.terminal is "
                f"{bool(process.get('terminal'))}",
                container_id=self.id,
            )
        return checked_output(
            log_path, output, stdin=stdin, container_id=self.id, process_id=self.id
        )

    async def _create_task(self, stdio: StdioPaths) -> int:
        """containerd's CreateTask with that stdio; a task an unanswered call
        may have made is undone before the error is raised."""
        session = self._session
        try:
            if not self._mounts:
                return await session.transport.create_task(self.id, stdio)
            return await session.transport.create_task(self.id, stdio, rootfs=self._mounts)
        except UNKNOWN_OUTCOME:
            await undo_unknown_create(session, self.id, "", stdio)
            raise

    async def task(self, *, attach: bool = True) -> Task:
        """The container's existing task, loaded from containerd.

        The stdio of its live processes (the init process and the execs made
        through this library) is reopened when the FIFOs are still there:
        what they wrote while nobody read is read now, in order. Execs are in
        :attr:`Task.execs`.

        Args:
            attach: reopen that stdio. ``False`` only looks: no FIFO is opened,
                so a reader elsewhere (another object, another process on
                the same state directory) keeps the whole output; the
                processes' ``stdout``/``stderr``/``stdin`` raise
                :class:`~supervisor.errors.FailedPrecondition`, and deleting
                them still removes their files. A later ``task()`` with
                ``attach=True`` attaches the same objects.

        Raises:
            NotFound: the container has no task.
        """
        session = self._session
        session.check_open()
        live = self._live.task
        if live is not None:
            if attach:
                self._live.attach(live)
            return live
        tracker = session.tracker
        cid = self.id
        # Watch before asking, so an exit between the two is not missed.
        existed = tracker.has(cid, cid)
        slot = tracker.watch(cid, cid)
        try:
            record = await session.transport.get_task(cid)
            execs = await self._exec_records()
            oom = await oom_killed(session, {cid: (record, execs)})
        except BaseException:
            if not existed and not slot.pid:
                tracker.forget(cid, cid)
            raise
        return self._adopt(record, execs, attach=attach, oom=cid in oom)

    def _stdio(
        self, process_id: str, record: TaskRecord, attach: bool
    ) -> tuple[StdioSet | None, StdioPaths | None]:
        # Our ends of the process's FIFOs (those this client already has open
        # for it, if any), or (not attaching) the record of them, kept to
        # attach later or to remove the files.
        if not attach:
            return None, record.stdio
        return self._session.reopen_stdio(self.id, process_id, self.bundle_dir, record.stdio), None

    async def _exec_records(self) -> list[TaskRecord]:
        """containerd's records of the execs this library made in the task,
        found by their FIFOs in our own bundle directory (containerd cannot
        list stopped execs)."""
        records = []
        for exec_id in exec_ids_in(self.bundle_dir):
            try:
                records.append(await self._session.transport.get_task(self.id, exec_id))
            except errors.NotFound:
                # Either gone with an earlier instance of the task, or an exec
                # another client of this state dir is creating right now (its
                # FIFOs exist before containerd knows it): never ours to remove
                # here. The bundle goes with the container.
                continue
        return records

    def _adopt(
        self, record: TaskRecord, execs: list[TaskRecord], *, attach: bool, oom: bool
    ) -> Task:
        """A Task (and its execs) for containerd's records of them, loaded or
        listed; ``oom``: the task's cgroup counted an OOM kill. Nothing is
        awaited, so what the stream says meanwhile cannot come in between."""
        task = self._adopt_task(record, attach=attach)
        for exec_record in execs:
            if not self._live.has_exec(task, exec_record.process_id):
                self._adopt_exec(task, exec_record, attach=attach)
        found = [(r, r.exit_status) for r in (record, *execs) if r.exit_status is not None]
        if found:
            report_found(self._session, self.id, found, oom=oom)
        return task

    def _adopt_task(self, record: TaskRecord, *, attach: bool) -> Task:
        task = self._adopted(Task, self.id, record, attach)
        self._live.add_task(task)
        return task

    def _adopt_exec(self, task: Task, record: TaskRecord, *, attach: bool) -> None:
        exec_id = record.process_id
        proc = self._adopted(Process, exec_id, record, attach)
        self._live.add_exec(task, exec_id, proc)

    def _adopted(self, kind: type[_P], process_id: str, record: TaskRecord, attach: bool) -> _P:
        """A Task or Process object for containerd's record of a live
        process, its slot watched and its stdio reopened (or recorded)."""
        slot = self._session.tracker.started(self.id, process_id, record.pid)
        slot.owned = True
        fifos, detached = self._stdio(process_id, record, attach)
        return kind(
            self,
            self._session,
            process_id,
            pid=record.pid,
            fifos=fifos,
            slot=slot,
            detached_stdio=detached,
            live=self._live,
            started=record.state is not ProcessState.CREATED,
        )

    async def _has_task(self) -> bool:
        try:
            await self._session.transport.get_task(self.id)
        except errors.NotFound:
            return False
        return True

    async def _delete_task(self) -> None:
        """Kill and delete the task, if any, through the Task object that
        holds it here (or one loaded for it, without attaching its stdio)."""
        task = self._live.task
        if task is None:
            try:
                task = await self.task(attach=False)
            except errors.NotFound:
                return
        try:
            await task.delete(force=True)
        except errors.NotFound:
            pass

    stop = stop_method
    set_labels = set_labels_method

    async def delete(self, *, force: bool = False) -> None:
        """Delete the container from containerd and remove its bundle directory.

        Whether the container still has a task is asked of containerd, never
        assumed: a task made by another client (or one whose create failed
        only on our side) must not be orphaned.

        Args:
            force: first kill and delete whatever task the container has, as
                ``docker rm -f`` does: whoever made it, whatever its state
                (created, running, paused or being paused, stopped), every
                process of it (execs included) killed with SIGKILL, a frozen
                task thawed, each step bounded by ``timeouts.cleanup``. An exit
                nobody had heard yet is reported on the way. The clean-up
                for a container an outage or a crash left in a state the
                application does not know.

        Raises:
            FailedPrecondition: the container still has a task (without
                ``force``, or one made again meanwhile), as containerd's own
                client refuses too.
            NotFound: no such container.
        """
        session = self._session
        transport = session.transport
        cid = self.id
        # Asked first even with force: a container whose task is gone (the
        # usual case) costs one question, as without.
        if await self._has_task():
            if not force:
                raise errors.FailedPrecondition(
                    "cannot delete a container with a task", container_id=cid
                )
            self._note_deleting()  # no restart of what is killed now
            await self._delete_task()
            if await self._has_task():
                raise errors.FailedPrecondition(
                    "the container has a task again (made meanwhile)", container_id=cid
                )
        self._note_deleting()
        # Shielded: a delete cancelled after containerd acted would otherwise
        # leave the bundle directory behind with nothing to say it is stale.
        with shielded(session.timeouts.shield, "deleting the container"):
            await transport.delete_container(cid)
            if self.rootfs is not None:
                await self.rootfs.remove()
            if self.network_attachment is not None:
                await self.network_attachment.release()
            # Its processes are gone: the stdio any object of ours still
            # held for them (a task deleted through another client, say).
            session.release_stdio(cid)
            await remove_bundle_async(session.state_dir, self.bundle_dir)
            session.ledger.prune_container(cid)
            session.tracker.forget_container(cid)
        _log.debug("container.delete", container_id=cid)
