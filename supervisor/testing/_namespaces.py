"""The test session's namespaces in containerd: named, labelled, emptied,
removed, and reaped after a run that was killed.

Every namespace a session uses starts with ``svt-<pid>-<nonce>`` (the
session token). One of them, the *anchor*, is exactly that name and carries
labels saying which process owns the session (pid, its start time, the boot
and pid namespace it runs in). A later session that finds an anchor whose
owner is gone empties and removes every namespace of that token: this is what
cleans up after a ``kill -9`` of pytest, when no teardown ran.

The library has no namespace calls (an application works in one namespace it
is given); listing, labelling and removing namespaces goes through ``ctr``,
which ships with containerd. Without it, namespaces are left (empty) and no
reaping happens; containers are still removed through the library.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio

from .. import errors

__all__ = ["PREFIX", "Ctr", "Owner", "Session", "alive", "blocking", "new_token", "purge", "reap"]

PREFIX = "svt"
_LABEL = "supervisor.pytest"
_TOKEN = re.compile(rf"({PREFIX}-(\d+)-([0-9a-z]{{4}}))(?:-.*)?")
_CTR_TIMEOUT = 30.0
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


class Ctr:
    """containerd's namespaces through ``ctr`` (see the module docstring)."""

    def __init__(self, address: str, binary: str | None = None) -> None:
        self.address = address
        self.binary = binary if binary is not None else shutil.which("ctr")

    @property
    def available(self) -> bool:
        return self.binary is not None

    def _run(self, *args: str) -> str:
        assert self.binary is not None
        done = subprocess.run(
            [self.binary, "--address", self.address, "namespaces", *args],
            capture_output=True,
            text=True,
            timeout=_CTR_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise errors.Unknown(f"ctr namespaces {args[0]}: {done.stderr.strip()}")
        return done.stdout

    def list(self) -> dict[str, dict[str, str]]:
        """Every namespace with its labels."""
        found: dict[str, dict[str, str]] = {}
        for line in self._run("ls").splitlines()[1:]:
            name, _, rest = line.strip().partition(" ")
            if not name:
                continue
            labels = {}
            for pair in rest.strip().split(","):
                key, sep, value = pair.partition("=")
                if sep:
                    labels[key] = value
            found[name] = labels
        return found

    def create(self, name: str, labels: Mapping[str, str]) -> None:
        self._run("create", name, *(f"{k}={v}" for k, v in labels.items()))

    def remove(self, *names: str) -> None:
        if names:
            self._run("rm", *names)


async def purge(address: str, namespace: str, state_dir: Path | None = None) -> list[str]:
    """Kill and delete every task and container of ``namespace``.

    ``state_dir`` should not be the one the test's client uses: a client on
    another state directory never reopens (and so never holds) its FIFOs.

    Returns:
        What was still live (created, running or paused), one line each.
    """
    # Imported here: the plugin's import must stay cheap.
    import supervisor

    live: list[str] = []
    async with supervisor.connect(
        address, namespace=namespace, events=False, state_dir=state_dir
    ) as client:
        for container in await client.containers():
            try:
                task = await container.task()
            except errors.NotFound:
                task = None
            if task is not None:
                with contextlib.suppress(errors.NotFound):
                    state = (await task.status()).value
                    if state in _LIVE:
                        live.append(f"task of container {container.id!r} ({state}, pid {task.pid})")
                with contextlib.suppress(errors.NotFound):
                    await task.delete(force=True)
            with contextlib.suppress(errors.NotFound):
                await container.delete()
    return live


def new_token(owner: Owner) -> str:
    """A session token: ``svt-<pid>-<nonce>``."""
    return f"{PREFIX}-{owner.pid}-{secrets.token_hex(2)}"


class Session:
    """This pytest run's token, anchor namespace and namespace names."""

    def __init__(
        self, token: str, owner: Owner, address: str, admin_dir: Path, ctr: Ctr | None = None
    ) -> None:
        self.token = token
        self.owner = owner
        self.address = address
        self.admin_dir = admin_dir
        self.ctr = ctr or Ctr(address)
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
        if not self.ctr.available:
            return []
        problems = reap(self.address, self.ctr, self.owner, self.admin_dir)
        self.ctr.create(self.token, self.owner.labels())
        return problems

    def close(self) -> list[str]:
        """Empty and remove every namespace of this session (the anchor last).

        Returns:
            Problems met, one line each (nothing raises: the session is ending).
        """
        if not self.ctr.available:
            return []
        try:
            names = [n for n in self.ctr.list() if _token_of(n) == self.token]
        except (errors.SupervisorError, OSError, subprocess.SubprocessError) as exc:
            return [f"cannot list namespaces: {exc}"]
        ordered = sorted(names, key=len, reverse=True)
        return _remove_all(self.address, self.ctr, ordered, self.admin_dir)

    def remove(self, namespace: str) -> None:
        """Remove one (emptied) namespace of this session, if ``ctr`` is here."""
        if self.ctr.available:
            self.ctr.remove(namespace)


def _token_of(name: str) -> str | None:
    match = _TOKEN.fullmatch(name)
    return match.group(1) if match else None


def reap(address: str, ctr: Ctr, me: Owner, admin_dir: Path) -> list[str]:
    """Empty and remove the namespaces of every session whose owner is gone.

    Returns:
        Problems met, one line each.
    """
    namespaces = ctr.list()
    dead = {
        name
        for name, labels in namespaces.items()
        if _token_of(name) == name
        and (owner := Owner.from_labels(labels)) is not None
        and owner.pid != me.pid
        and owner.is_gone(me)
    }
    doomed = [n for n in namespaces if _token_of(n) in dead]
    # Longest first: a session's anchor (its bare token) goes last, so a reap
    # that is itself interrupted is picked up again by the next session.
    return _remove_all(address, ctr, sorted(doomed, key=len, reverse=True), admin_dir)


def _remove_all(address: str, ctr: Ctr, names: list[str], admin_dir: Path) -> list[str]:
    problems: list[str] = []
    for name in names:
        try:
            blocking(purge, address, name, admin_dir)
            ctr.remove(name)
        except (errors.SupervisorError, OSError, subprocess.SubprocessError) as exc:
            problems.append(f"namespace {name}: {exc}")
    return problems
