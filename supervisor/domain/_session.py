"""What every object made through one client shares.

A :class:`Session` is made once per :func:`supervisor.connect` and handed to
the Client, and through it to every Container, Task and Process: the
transport, the exit tracker, the event monitor, the handled-exit ledger, the
timeouts and the state directory. It is always complete: a client without
events still has a tracker (its waits are resolved by containerd's Wait call
and recorded there) and a ledger that keeps nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .. import errors
from .._platform import SYSTEM_INSTANCE, Instance
from .._timeouts import Timeouts
from ..backends.base import Transport
from ..events._ledger import ExitLedger
from ..events._monitor import EventMonitor
from ..events._tracker import ExitTracker
from ..fifo._attach import attach_stdio
from ..stats._sampler import StatsSampler

if TYPE_CHECKING:
    from .._types import StdioPaths
    from ..fifo import StdioSet

__all__ = ["Session"]


@dataclass(eq=False)
class Session:
    """One client's shared machinery (see the module docstring).

    Attributes:
        raw_transport: the way to containerd, for this client's namespace
            (use :attr:`transport`, which refuses once the client closed).
        tracker: process instances, their exits and their waiters.
        monitor: applies events to the tracker and feeds the backend.
        ledger: exits the backend handled (a :class:`NullLedger` without one).
        timeouts: every bound the library waits by.
        state_dir: where bundles, FIFOs and the ledger live.
        events: True when an event subscription resolves waits; False when
            each wait asks containerd.
        instance: the containerd the client talks to, for the defaults that
            must differ between two containerds (cgroup, runc's root).
    """

    raw_transport: Transport
    tracker: ExitTracker
    monitor: EventMonitor
    ledger: ExitLedger
    timeouts: Timeouts
    state_dir: Path
    events: bool
    closed: bool = field(default=False)
    instance: Instance = SYSTEM_INSTANCE
    # Why the client stopped, when its event machinery failed (see fail()).
    failure: errors.SupervisorError | None = field(default=None)
    # Every open stdio set per process, whichever object opened it: a process
    # deleted through one Task or Process object must not leave another
    # object's fds (and so its FIFOs) open.
    stdio: dict[tuple[str, str], list[StdioSet]] = field(default_factory=dict)
    # Every stats stream of the client joins this, so all of them together
    # cost one Metrics call per interval.
    stats_sampler: StatsSampler = field(default_factory=StatsSampler)

    def track_stdio(self, container_id: str, process_id: str, stdio: StdioSet) -> None:
        sets = self.stdio.setdefault((container_id, process_id), [])
        if not any(s is stdio for s in sets):
            sets.append(stdio)

    def untrack_stdio(self, container_id: str, process_id: str, stdio: StdioSet) -> None:
        """Forget one set (a create that failed): its owner removes it."""
        key = (container_id, process_id)
        sets = [s for s in self.stdio.get(key, ()) if s is not stdio]
        if sets:
            self.stdio[key] = sets
        else:
            self.stdio.pop(key, None)

    def open_stdio_for(self, container_id: str, process_id: str, stdout: str) -> StdioSet | None:
        """The stdio this client already has open for that instance of the
        process (same stdout FIFO), so loading it again shares it rather than
        opening the FIFOs once more per load."""
        for s in self.stdio.get((container_id, process_id), ()):
            if stdout and s.stdout_path == stdout and _open(s):
                return s
        return None

    def reopen_stdio(
        self, container_id: str, process_id: str, bundle_dir: Path, stdio: StdioPaths
    ) -> StdioSet | None:
        """The set this client already has open for that instance of the
        process, else its FIFOs opened again (None if they are not ours)."""
        shared = self.open_stdio_for(container_id, process_id, stdio.stdout)
        if shared is not None:
            return shared
        init = process_id == container_id
        return attach_stdio(bundle_dir, process_id, init=init, stdio=stdio)

    def release_stdio(self, container_id: str, process_id: str | None = None) -> None:
        """Close and remove the stdio of one process, or (``process_id``
        None) of every process of the container."""
        keys = (
            [(container_id, process_id)]
            if process_id is not None
            else [k for k in self.stdio if k[0] == container_id]
        )
        for key in keys:
            for stdio in self.stdio.pop(key, ()):
                stdio.remove()

    @property
    def namespace(self) -> str:
        return self.raw_transport.namespace

    @property
    def transport(self) -> Transport:
        """The transport, while the client is open: every call made through
        a closed client fails here with one clear error."""
        self.check_open()
        return self.raw_transport

    def check_open(self) -> None:
        """Raise :class:`~supervisor.errors.Closed` once the client has closed,
        or the error its event machinery failed with."""
        if self.closed:
            if self.failure is not None:
                raise errors.raised_again(self.failure)
            raise errors.Closed(f"the client of namespace {self.namespace!r} is closed")

    def close(self) -> None:
        """From now on every call fails with Closed and every wait wakes."""
        self.closed = True
        self.tracker.close()
        self._close_stdio()

    def _close_stdio(self) -> None:
        # A closed client keeps no fd of the processes it did not delete (an
        # application that reconnects would pile them up) and copies no more
        # log output. The files stay, and the shim keeps its own ends of
        # every FIFO (stdin's too, so the process reads no end of input):
        # what is unread waits there for the next client that attaches.
        for sets in self.stdio.values():
            for stdio in sets:
                stdio.close()

    def fail(self, error: errors.SupervisorError) -> None:
        """The client's background machinery died: from now on every call,
        and every wait pending or begun later, raises ``error`` (a copy of
        it, chained to it), as callers in a failed task group would. A client
        that closed already stays closed."""
        if self.closed:
            return
        self.failure = error
        self.closed = True
        self.tracker.close(error)


def _open(stdio: StdioSet) -> bool:
    # A set whose stdout a caller closed cannot be handed on: the process is
    # opened again instead. (Our FIFO streams show -1 once closed; a
    # shim-run logger's set has no stream of ours at all.)
    from ..fifo._logger import LoggerStdio

    if isinstance(stdio, LoggerStdio):
        return True
    fileno = getattr(stdio.stdout, "fileno", None)
    return not isinstance(fileno, int) or fileno >= 0
