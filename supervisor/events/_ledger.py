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
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection
from datetime import datetime
from pathlib import Path

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

    def _path(self, container_id: str, process_id: str) -> Path:
        return self.directory / f"{container_id}@{process_id}"

    def record(
        self, container_id: str, process_id: str, pid: int, exited_at: datetime | None
    ) -> None:
        """The backend has handled this exit."""
        path = self._path(container_id, process_id)
        try:
            _paths.private_dir(self.directory)
            _paths.write_new(path, _identity(pid, exited_at).encode())
        except OSError as exc:
            # Not fatal: the exit is reported again after a restart.
            _log.warning(
                "events.ledger_write_failed",
                container_id=container_id,
                process_id=process_id,
                error=str(exc),
            )

    def handled(
        self, container_id: str, process_id: str, pid: int, exited_at: datetime | None
    ) -> bool:
        """True if this very exit (same pid and exit time) was handled before."""
        try:
            data = _paths.read_small(self._path(container_id, process_id))
        except OSError:
            return False
        return data == _identity(pid, exited_at).encode()

    def forget(self, container_id: str, process_id: str) -> None:
        """The process was deleted: its exit can never be found again."""
        with contextlib.suppress(OSError):
            self._path(container_id, process_id).unlink()

    def has_records(self) -> bool:
        """Anything recorded at all (a prune is worth an RPC only then)."""
        try:
            with os.scandir(self.directory) as entries:
                return any(True for _ in entries)
        except OSError:
            return False

    def prune_container(self, container_id: str) -> None:
        """The container was deleted: none of its exits can be found again."""
        for path in self.directory.glob(f"{container_id}@*"):
            with contextlib.suppress(OSError):
                path.unlink()

    def prune(self, containers: Collection[str]) -> int:
        """Drop the records of containers not in ``containers`` (deleted by
        somebody else); returns how many went."""
        removed = 0
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return 0
        for entry in entries:
            cid = entry.name.partition("@")[0]
            if cid not in containers:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
        return removed


class NullLedger(ExitLedger):
    """The ledger of a client without a backend: nothing is handled, nothing kept."""

    def __init__(self) -> None:
        super().__init__(Path(os.devnull))

    def record(
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
