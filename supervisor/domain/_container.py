"""A container: containerd's record of a spec and a runtime, and its bundle."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import errors
from .._cleanup import shielded, undo_if_cancelled
from .._log import get_logger
from .._types import ExitStatus, ProcessState, TaskEvent, Topic
from ..fifo._attach import attach_stdio, exec_ids_in
from ..spec._bundle import remove_bundle_async
from ._process import LogWriter, Output, Process, checked_output, create_process
from ._task import UNKNOWN_OUTCOME, Task, undo_unknown_create

if TYPE_CHECKING:
    from .._types import StdioPaths, TaskRecord
    from ..fifo import StdioSet
    from ._rootfs import Rootfs
    from ._session import Session

__all__ = ["Container", "oom_killed"]

_log = get_logger("container")


async def oom_killed(
    session: Session, loaded: Mapping[str, tuple[TaskRecord, Sequence[TaskRecord]]]
) -> set[str]:
    """Of the tasks just loaded (container id: the task's record and its
    execs'), those with a process found stopped whose cgroup counted an OOM
    kill.

    No event can tell: an OOM while nobody listened is gone from the stream.
    But the task's cgroup lives until the task is deleted, and its OOM-kill
    counter (v1 ``memory.oom_control``, v2 ``memory.events``) counts every
    kill in the task's life. Only tasks with a stopped process are asked,
    all in one Metrics call, so loading running tasks costs nothing more.
    """
    wanted = [
        cid
        for cid, (record, execs) in loaded.items()
        if any(r.exit_status is not None for r in (record, *execs))
    ]
    if not wanted:
        return set()
    try:
        samples = await session.transport.metrics(wanted)
    except (errors.Unavailable, errors.DeadlineExceeded, errors.Cancelled):
        raise
    except errors.SupervisorError as exc:
        # A runtime without cgroup metrics: the exits are still reported,
        # without what cannot be known.
        _log.warning("task.oom_unknown", containers=len(wanted), error=str(exc))
        return set()
    return {cid for cid, sample in samples.items() if sample.memory.oom_kills}


class Container:
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
        self._task: Task | None = None

    # A container made from an image: the snapshot that is its root
    # filesystem (handed over by the image layer), and its mounts once known.
    rootfs: Rootfs | None = None
    _mounts: tuple[Any, ...] = ()

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

    async def new_task(
        self,
        *,
        stdin: bool = False,
        terminal: bool = False,
        log_path: str | os.PathLike[str] | None = None,
        output: Output = "pipe",
        log_writer: LogWriter = "client",
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
                the output never waits for the application). See
                ``docs/api.md``.

        Raises:
            AlreadyExists: the container has a task already (the existing
                task and its stdio are left untouched).
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
        process = self.spec.get("process")
        if isinstance(process, dict) and bool(process.get("terminal")) != bool(terminal):
            raise errors.InvalidArgument(
                f"terminal={terminal} but the spec's process.terminal is "
                f"{bool(process.get('terminal'))}",
                container_id=cid,
            )

        path = checked_output(log_path, output, stdin=stdin, container_id=cid, process_id=cid)

        if not self._mounts and self.rootfs is not None:
            self._mounts = await self.rootfs.mounts()

        async def create(stdio: StdioPaths) -> int:
            try:
                if not self._mounts:
                    return await session.transport.create_task(cid, stdio)
                return await session.transport.create_task(cid, stdio, rootfs=self._mounts)
            except UNKNOWN_OUTCOME:
                await undo_unknown_create(session, cid, "", stdio)
                raise

        pid, fifos, slot = await create_process(
            session,
            self.bundle_dir,
            cid,
            cid,
            stdin=stdin,
            terminal=terminal,
            create=create,
            log_path=path,
            output=output,
            log_writer=log_writer,
        )
        task = Task(self, session, cid, pid=pid, fifos=fifos, slot=slot, log_path=path)
        self._task = task
        _log.debug("task.create", container_id=cid, pid=pid)
        await undo_if_cancelled(
            lambda: task.delete(force=True), limit=session.timeouts.cleanup, what="task"
        )
        return task

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
        if self._task is not None and not self._task._deleted:
            if attach:
                self._task._attach_detached()
                for proc in self._task._execs.values():
                    proc._attach_detached()
            return self._task
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
        return self._open_stdio(process_id, record.stdio), None

    def _open_stdio(self, process_id: str, stdio: StdioPaths) -> StdioSet | None:
        """The set this client already has open for that instance of the
        process, else its FIFOs opened again (None if they are not ours)."""
        shared = self._session.open_stdio_for(self.id, process_id, stdio.stdout)
        if shared is not None:
            return shared
        init = process_id == self.id
        return attach_stdio(self.bundle_dir, process_id, init=init, stdio=stdio)

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
            if exec_record.process_id not in task._execs:
                self._adopt_exec(task, exec_record, attach=attach)
        found = [(r, r.exit_status) for r in (record, *execs) if r.exit_status is not None]
        if found:
            self._report_found(found, oom=oom)
        return task

    def _adopt_task(self, record: TaskRecord, *, attach: bool) -> Task:
        session = self._session
        cid = self.id
        slot = session.tracker.started(cid, cid, record.pid)
        slot.owned = True
        fifos, detached = self._stdio(cid, record, attach)
        task = Task(
            self, session, cid, pid=record.pid, fifos=fifos, slot=slot, detached_stdio=detached
        )
        task._started = record.state is not ProcessState.CREATED
        self._task = task
        return task

    def _adopt_exec(self, task: Task, record: TaskRecord, *, attach: bool) -> None:
        session = self._session
        exec_id = record.process_id
        slot = session.tracker.started(self.id, exec_id, record.pid)
        slot.owned = True
        fifos, detached = self._stdio(exec_id, record, attach)
        proc = Process(
            self,
            session,
            exec_id,
            pid=record.pid,
            fifos=fifos,
            slot=slot,
            detached_stdio=detached,
        )
        proc._started = record.state is not ProcessState.CREATED
        task._execs[exec_id] = proc

    def _report_found(self, found: list[tuple[TaskRecord, ExitStatus]], *, oom: bool) -> None:
        """Processes found stopped: they exited while nobody here listened
        (the application's own restart). The backend hears each exit now,
        once (the tracker drops a copy from the stream), and, when the
        cgroup counted an OOM kill, the OOM first, as it would have live:
        the init's exit then carries ``oom_killed``."""
        session = self._session
        cid = self.id
        if oom:
            news = any(
                not session.ledger.handled(cid, r.process_id, r.pid, status.exited_at)
                for r, status in found
            )
            if news:
                event = TaskEvent(session.raw_transport.namespace, Topic.OOM, cid, cid)
                session.monitor.handle(event)
            else:
                # The earlier run's backend handled these exits (and heard the
                # OOM then): the status alone learns it.
                session.tracker.oom(cid)
        for r, status in found:
            session.monitor.found_exited(
                cid, r.process_id, r.pid, status.exit_code, status.exited_at
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
        task = self._task
        if task is None or task._deleted:
            try:
                task = await self.task(attach=False)
            except errors.NotFound:
                return
        try:
            await task.delete(force=True)
        except errors.NotFound:
            pass

    def _task_deleted(self, task: Task) -> None:
        if self._task is task:
            self._task = None

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
            await self._delete_task()
            if await self._has_task():
                raise errors.FailedPrecondition(
                    "the container has a task again (made meanwhile)", container_id=cid
                )
        # Shielded: a delete cancelled after containerd acted would otherwise
        # leave the bundle directory behind with nothing to say it is stale.
        with shielded(session.timeouts.shield, "deleting the container"):
            await transport.delete_container(cid)
            if self.rootfs is not None:
                await self.rootfs.remove()
            # Its processes are gone: the stdio any object of ours still
            # held for them (a task deleted through another client, say).
            session.release_stdio(cid)
            await remove_bundle_async(session.state_dir, self.bundle_dir)
            session.ledger.prune_container(cid)
            session.tracker.forget_container(cid)
        _log.debug("container.delete", container_id=cid)
