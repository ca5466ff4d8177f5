"""The test session's namespaces in containerd: named, labelled, emptied,
removed, and reaped after a run that was killed.

Every namespace a session uses starts with ``svt-<pid>-<nonce>`` (the
session token). One of them, the *anchor*, is exactly that name and carries
labels saying which process owns the session (pid, its start time, the boot
and pid namespace it runs in). A later session that finds an anchor whose
owner is gone empties and removes every namespace of that token: this is what
cleans up after a ``kill -9`` of pytest, when no teardown ran.

The library's clients have no namespace calls (an application works in the
one namespace it is given); listing, labelling and removing namespaces goes
through :mod:`supervisor.backends.blocking`, which the plugin can call from
any thread without an event loop.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import anyio

from .. import errors

if TYPE_CHECKING:
    from .._types import TaskRecord
    from ..backends.blocking import Channel

__all__ = [
    "PREFIX",
    "Namespaces",
    "Owner",
    "Session",
    "alive",
    "blocking",
    "new_token",
    "purge",
    "reap",
]

PREFIX = "svt"
_LABEL = "supervisor.pytest"
_TOKEN = re.compile(rf"({PREFIX}-(\d+)-([0-9a-z]{{4}}))(?:-.*)?")
_NAMESPACE_TIMEOUT = 30.0
_T = TypeVar("_T")
# containerd's states of a task whose shim still runs a process (or could).
_LIVE = {"created", "running", "paused", "pausing"}


def blocking(fn: Callable[..., Awaitable[_T]], *args: object) -> _T:
    """Run ``fn(*args)`` on an event loop of its own, in a thread of its own,
    so that it never meets the test's loop (running or not)."""
    with ThreadPoolExecutor(1, thread_name_prefix="supervisor-pytest") as pool:
        return pool.submit(anyio.run, fn, *args).result()


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Running, not a zombie (some machines' pid 1 never reaps orphans)."""
    status = _read(f"/proc/{pid}/status")
    for line in status.splitlines():
        if line.startswith("State:"):
            return "Z" not in line.split(":", 1)[1].split()[0]
    return False


def start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' if gone): with
    the pid it names one process, even after the pid is reused."""
    stat = _read(f"/proc/{pid}/stat")
    # The command name (field 2) may hold spaces and parentheses: split after it.
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""


@dataclass(frozen=True)
class Owner:
    """The process owning a session, as recorded in its anchor's labels."""

    pid: int
    start: str
    boot: str
    pidns: str

    @classmethod
    def me(cls) -> Owner:
        pid = os.getpid()
        try:
            pidns = os.readlink("/proc/self/ns/pid").strip("pid:[]")
        except OSError:
            pidns = ""
        return cls(pid, start_time(pid), _read("/proc/sys/kernel/random/boot_id"), pidns)

    def labels(self) -> dict[str, str]:
        return {
            f"{_LABEL}/pid": str(self.pid),
            f"{_LABEL}/start": self.start,
            f"{_LABEL}/boot": self.boot,
            f"{_LABEL}/pidns": self.pidns,
        }

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> Owner | None:
        try:
            return cls(
                int(labels[f"{_LABEL}/pid"]),
                labels[f"{_LABEL}/start"],
                labels[f"{_LABEL}/boot"],
                labels[f"{_LABEL}/pidns"],
            )
        except (KeyError, ValueError):
            return None

    def is_gone(self, me: Owner) -> bool:
        """True only when this owner is certainly dead: same boot and pid
        namespace as ``me`` (else its pid means nothing here), and its pid
        no longer runs the process that started at ``start``."""
        if not self.boot or self.boot != me.boot or self.pidns != me.pidns:
            return False
        return not alive(self.pid) or start_time(self.pid) != self.start


class Namespaces:
    """containerd's namespaces (see the module docstring); each call opens
    its own connection, so any thread may make it."""

    def __init__(self, address: str) -> None:
        self.address = address

    def _channel(self) -> Channel:
        from ..backends.blocking import Channel

        # containerd publishes namespace events in the caller's namespace,
        # so even these calls need one: ctr's default.
        return Channel(self.address, "default", timeout=_NAMESPACE_TIMEOUT)

    def list(self) -> dict[str, dict[str, str]]:
        """Every namespace with its labels."""
        from ..backends.blocking import list_namespaces

        with self._channel() as channel:
            return list_namespaces(channel)

    def create(self, name: str, labels: Mapping[str, str]) -> None:
        from ..backends.blocking import create_namespace

        with self._channel() as channel:
            create_namespace(channel, name, dict(labels))

    def remove(self, *names: str) -> None:
        """Delete the (emptied) namespaces; one already gone is no error."""
        from ..backends.blocking import delete_namespace

        with self._channel() as channel:
            for name in names:
                with contextlib.suppress(errors.NotFound):
                    delete_namespace(channel, name)


async def purge(address: str, namespace: str, state_dir: Path | None = None) -> list[str]:
    """Kill and delete every task and container of ``namespace``.

    ``state_dir`` should not be the one the test's client uses: a client on
    another state directory never reopens (and so never holds) its FIFOs.

    Returns:
        What the test had left to the purge, one line each: a task still
        live (created, running or paused), killed and deleted, and an
        exited task with stdio FIFOs that was never deleted, deleted (a
        client lets go of the FIFOs' fds when it closes, so the task is
        what names that leak).
    """
    # Imported here: the plugin's import must stay cheap.
    import supervisor

    live: list[str] = []
    async with supervisor.connect(
        address, namespace=namespace, events=False, state_dir=state_dir
    ) as client:
        # One snapshot of every task's state and stdio, for the report.
        records = {t.container_id: t for t in await client._session.transport.list_tasks()}
        for container in await client.containers():
            try:
                task = await container.task()
            except errors.NotFound:
                task = None
            if task is not None:
                record = records.get(container.id)
                if record is not None:
                    live.extend(_left_task(container.id, record))
                with contextlib.suppress(errors.NotFound):
                    await task.delete(force=True)
            with contextlib.suppress(errors.NotFound):
                await container.delete()
    return live


def _left_task(container_id: str, record: TaskRecord) -> list[str]:
    """The line :func:`purge` reports for a task it found, if any."""
    state = record.state.value
    if state in _LIVE:
        return [
            f"task of container {container_id!r} ({state}, pid {record.pid}), killed and deleted"
        ]
    # A FIFO is a path; a shim-run logger or a file is a URI.
    stdio = record.stdio
    if any(p and "://" not in p for p in (stdio.stdin, stdio.stdout, stdio.stderr)):
        return [
            f"task of container {container_id!r} ({state}), never deleted, deleted with its stdio"
        ]
    return []


def remove_emptied(address: str, namespaces: Namespaces, name: str, admin_dir: Path) -> None:
    """Remove a namespace whose tasks and containers are gone. containerd
    refuses while images, or snapshots its GC has not collected yet, are
    left (a test that imported an image; an image removed while a container
    still used its layers): those are removed, the GC run, and it is asked again."""
    try:
        namespaces.remove(name)
    except errors.FailedPrecondition:
        blocking(collect, address, name, admin_dir)
        namespaces.remove(name)


async def collect(address: str, namespace: str, state_dir: Path | None = None) -> None:
    """Remove every image of ``namespace`` and run containerd's GC."""
    import supervisor

    async with supervisor.connect(
        address, namespace=namespace, events=False, state_dir=state_dir
    ) as client:
        for image in await client.images():
            with contextlib.suppress(errors.NotFound):
                await client.remove_image(image.name)
        # Deleting a lease with sync runs the GC before containerd answers.
        from ..images._service import ImageService

        store = ImageService(client._session).store
        lease = f"svt-gc-{secrets.token_hex(4)}"
        await store.create_lease(lease, datetime.timedelta(minutes=1))
        await store.delete_lease(lease, sync=True)


def new_token(owner: Owner) -> str:
    """A session token: ``svt-<pid>-<nonce>``."""
    return f"{PREFIX}-{owner.pid}-{secrets.token_hex(2)}"


class Session:
    """This pytest run's token, anchor namespace and namespace names."""

    def __init__(
        self,
        token: str,
        owner: Owner,
        address: str,
        admin_dir: Path,
        namespaces: Namespaces | None = None,
    ) -> None:
        self.token = token
        self.owner = owner
        self.address = address
        self.admin_dir = admin_dir
        self.namespaces = namespaces or Namespaces(address)
        self._count = 0

    def labels(self) -> dict[str, str]:
        """Labels for the containers this session makes."""
        return {f"{_LABEL}/session": self.token, f"{_LABEL}/pid": str(self.owner.pid)}

    def namespace(self, test_name: str) -> str:
        """A fresh namespace for one test: the token, a counter (two tests may
        share a name) and the test's name, at most 60 characters."""
        self._count += 1
        slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")
        return f"{self.token}-{self._count}-{slug}"[:60].rstrip("-")

    def open(self) -> list[str]:
        """Reap what killed sessions left, then record ours (the anchor).

        Returns:
            Problems met while reaping, one line each.
        """
        problems = reap(self.address, self.namespaces, self.owner, self.admin_dir)
        self.namespaces.create(self.token, self.owner.labels())
        return problems

    def close(self) -> list[str]:
        """Empty and remove every namespace of this session (the anchor last).

        Returns:
            Problems met, one line each (nothing raises: the session is ending).
        """
        try:
            names = [n for n in self.namespaces.list() if _token_of(n) == self.token]
        except errors.SupervisorError as exc:
            return [f"cannot list namespaces: {exc}"]
        ordered = sorted(names, key=len, reverse=True)
        return _remove_all(self.address, self.namespaces, ordered, self.admin_dir)

    def remove(self, namespace: str) -> None:
        """Remove one (emptied) namespace of this session."""
        remove_emptied(self.address, self.namespaces, namespace, self.admin_dir)


def _token_of(name: str) -> str | None:
    match = _TOKEN.fullmatch(name)
    return match.group(1) if match else None


def reap(address: str, namespaces: Namespaces, me: Owner, admin_dir: Path) -> list[str]:
    """Empty and remove the namespaces of every session whose owner is gone.

    Returns:
        Problems met, one line each.
    """
    listed = namespaces.list()
    dead = {
        name
        for name, labels in listed.items()
        if _token_of(name) == name
        and (owner := Owner.from_labels(labels)) is not None
        and owner.pid != me.pid
        and owner.is_gone(me)
    }
    doomed = [n for n in listed if _token_of(n) in dead]
    # Longest first: a session's anchor (its bare token) goes last, so a reap
    # that is itself interrupted is picked up again by the next session.
    return _remove_all(address, namespaces, sorted(doomed, key=len, reverse=True), admin_dir)


def _remove_all(
    address: str, namespaces: Namespaces, names: list[str], admin_dir: Path
) -> list[str]:
    problems: list[str] = []
    for name in names:
        try:
            blocking(purge, address, name, admin_dir)
            remove_emptied(address, namespaces, name, admin_dir)
        except errors.SupervisorError as exc:
            problems.append(f"namespace {name}: {exc}")
    return problems
