"""Which exits the application's backend has already handled, on disk.

containerd keeps a stopped process until it is deleted, so after the
application restarts, loading its containers finds every exit that was not
yet followed by a delete, including the ones the previous run's backend had
already handled. The ledger remembers those, so such an exit is reported
once across restarts rather than once per run.

One small file per exited process, ``<state>/.exits/<namespace>/<cid>@<process id>``,
holding the pid and exit time that identify that exit: written after the
backend's ``process_event`` returned for it, removed when the process is
deleted through the library. A backend that raised, or a run that died before
writing, leaves no file, and the exit is reported again: at least once,
never lost. Ids are validated to ``[A-Za-z0-9._-]``, so ``@`` cannot occur in
them and the file names are unambiguous.

The write is the one ledger operation on the path of every handled exit, and
creating a file can wait on the filesystem's journal for milliseconds on a
busy host, so :meth:`ExitLedger.record_async` makes it in a worker thread.
The thread is waited for even when the caller is cancelled: the handler's
result counts as acknowledged only once its record is on disk, and the file
appears whole or not at all (written beside, then renamed).

Which records exist is also kept in memory (listed once from the directory,
then kept up to date by this object), so forgetting a process or pruning a
container that has no record, the usual case, touches no file at all, and a
container's records are found without listing the directory each time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection
from datetime import datetime
from pathlib import Path

import anyio

from .. import _paths
from .._log import get_logger

__all__ = ["ExitLedger", "NullLedger"]

_log = get_logger("events")


def _identity(pid: int, exited_at: datetime | None) -> str:
    return f"{pid} {exited_at.isoformat() if exited_at is not None else '-'}\n"


class ExitLedger:
    """The handled exits of one namespace (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # Container id -> process ids with a record on disk; None until the
        # directory is first listed. Records that another client sharing the
        # state directory writes after that are not in it: that client
        # forgets them itself (it sees the same deletes), and prune() at the
        # next connect drops anything left.
        self._index: dict[str, set[str]] | None = None
        # Records being written in a thread: (container, process) -> whether
        # they were forgotten meanwhile.
        self._writing: dict[tuple[str, str], bool] = {}

    def _path(self, container_id: str, process_id: str) -> Path:
        return self.directory / f"{container_id}@{process_id}"

    def _list(self) -> list[str]:
        """Every entry of the directory (a crashed write's temporary file
        too); the index is rebuilt from it."""
        try:
            with os.scandir(self.directory) as entries:
                found = [e.name for e in entries]
        except OSError:
            found = []
        index: dict[str, set[str]] = {}
        for name in found:
            cid, at, process_id = name.partition("@")
            if at and not name.startswith("."):
                index.setdefault(cid, set()).add(process_id)
        self._index = index
        return found

    def _known(self) -> dict[str, set[str]]:
        if self._index is None:
            self._list()
        assert self._index is not None
        return self._index

    def _write(self, container_id: str, process_id: str, data: bytes) -> bool:
        try:
            _paths.private_dir(self.directory)
            _paths.write_new(self._path(container_id, process_id), data)
        except OSError as exc:
            # Not fatal: the exit is reported again after a restart.
            _log.warning(
                "events.ledger_write_failed",
                container_id=container_id,
                process_id=process_id,
                error=str(exc),
            )
            return False
        return True

    def record(
        self, container_id: str, process_id: str, pid: int, exited_at: datetime | None
    ) -> None:
        """The backend has handled this exit (written on the calling thread;
        :meth:`record_async` keeps the event loop free)."""
        index = self._known()
        if self._write(container_id, process_id, _identity(pid, exited_at).encode()):
            index.setdefault(container_id, set()).add(process_id)

    async def record_async(
        self, container_id: str, process_id: str, pid: int, exited_at: datetime | None
    ) -> None:
        """:meth:`record`, in a worker thread. Returns once the record is on
        disk (or its write failed, which is logged), also when cancelled
        meanwhile. A :meth:`forget` or :meth:`prune_container` of the process
        while the thread writes removes the record as soon as it exists."""
        key = (container_id, process_id)
        # One exit handler at a time per container (the queue's order), so
        # never two writes of one record.
        self._writing[key] = False
        try:
            # Not abandoned on cancellation: the caller learns that the
            # record is there before the cancellation goes on, and nothing
            # can remove the file before it exists.
            written = await anyio.to_thread.run_sync(
                self._write, container_id, process_id, _identity(pid, exited_at).encode()
            )
        finally:
            forgotten = self._writing.pop(key)
        if not written:
            return
        if forgotten:
            with contextlib.suppress(OSError):
                os.unlink(self._path(container_id, process_id))
        else:
            # The index as it is now: has_records() may have rebuilt it meanwhile.
            self._known().setdefault(container_id, set()).add(process_id)

    def handled(
        self, container_id: str, process_id: str, pid: int, exited_at: datetime | None
    ) -> bool:
        """True if this very exit (same pid and exit time) was handled before."""
        # From disk, not the index: another run of the application may have
        # recorded it since this one listed the directory.
        try:
            data = _paths.read_small(self._path(container_id, process_id))
        except OSError:
            return False
        return data == _identity(pid, exited_at).encode()

    def forget(self, container_id: str, process_id: str) -> None:
        """The process was deleted: its exit can never be found again."""
        if (container_id, process_id) in self._writing:
            self._writing[container_id, process_id] = True
        processes = self._known().get(container_id)
        if processes is None or process_id not in processes:
            return
        processes.discard(process_id)
        if not processes:
            del self._known()[container_id]
        with contextlib.suppress(OSError):
            self._path(container_id, process_id).unlink()

    def has_records(self) -> bool:
        """Anything recorded at all (a prune is worth an RPC only then)."""
        return bool(self._list())

    def prune_container(self, container_id: str) -> None:
        """The container was deleted: none of its exits can be found again."""
        for key in self._writing:
            if key[0] == container_id:
                self._writing[key] = True
        for process_id in self._known().pop(container_id, ()):
            with contextlib.suppress(OSError):
                self._path(container_id, process_id).unlink()

    def prune(self, containers: Collection[str]) -> int:
        """Drop the records of containers not in ``containers`` (deleted by
        somebody else); returns how many went."""
        removed = 0
        for name in self._list():
            if name.partition("@")[0] not in containers:
                with contextlib.suppress(OSError):
                    os.unlink(self.directory / name)
                    removed += 1
        self._index = {c: p for c, p in self._known().items() if c in containers}
        return removed


class NullLedger(ExitLedger):
    """The ledger of a client without a backend: nothing is handled, nothing kept."""

    def __init__(self) -> None:
        super().__init__(Path(os.devnull))

    def record(
        self, container_id: str, process_id: str, pid: int, exited_at: datetime | None
    ) -> None:
        pass

    async def record_async(
        self, container_id: str, process_id: str, pid: int, exited_at: datetime | None
    ) -> None:
        pass

    def handled(
        self, container_id: str, process_id: str, pid: int, exited_at: datetime | None
    ) -> bool:
        return False

    def forget(self, container_id: str, process_id: str) -> None:
        pass

    def has_records(self) -> bool:
        return False

    def prune_container(self, container_id: str) -> None:
        pass

    def prune(self, containers: Collection[str]) -> int:
        return 0
