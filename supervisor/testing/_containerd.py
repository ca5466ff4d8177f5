"""The containerd a test session uses: one at a given address, or a private
one started through :class:`supervisor.Daemon` for the session.

The private containerd runs in a thread with an event loop of its own, so it
serves every test whatever event loop (and loop scope) the tests use, and its
watchdog keeps running between tests. Its directories live under
``<tmp>/svpt-<uid>/<session token>/`` (short: a unix socket path must fit in
107 bytes), with an ``owner`` file naming the pytest process; a later session
finds the directories of a killed one, empties that containerd and removes it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .. import errors
from .._paths import private_dir, read_small, write_new
from ._namespaces import Namespaces, Owner, Session, blocking, purge

__all__ = [
    "Containerd",
    "PrivateDaemon",
    "base_dir",
    "missing_requirement",
    "probe",
    "reap_directories",
    "write_owner",
]

_REQUIRED_BINARIES = ("containerd", "containerd-shim-runc-v2", "runc")
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 60.0
# The deepest socket path below the base: "/svt-4194304-abcd/state/containerd.sock".
_BASE_MAX = 107 - 48


@dataclass
class Containerd:
    """The session's containerd, as the ``containerd_daemon`` fixture gives it.

    Attributes:
        address: its socket, for :func:`supervisor.connect`.
        private: True when this session started it (and stops it at the end).
        directory: the session's own directory (the private containerd's
            root and state, the plugin's scratch space).
    """

    address: str
    private: bool
    directory: Path
    session: Session = field(repr=False)
    _daemon: PrivateDaemon | None = field(default=None, repr=False)

    def close(self) -> list[str]:
        """Remove everything the session made; problems come back as lines."""
        problems = self.session.close()
        if self._daemon is not None:
            problems += self._daemon.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
        return problems


def base_dir() -> Path:
    """``<tmp>/svpt-<uid>``, made private to this user if new."""
    uid = os.geteuid() if hasattr(os, "geteuid") else 0
    base = Path(tempfile.gettempdir()) / f"svpt-{uid}"
    if len(os.fsencode(str(base))) > _BASE_MAX:
        base = Path("/tmp") / f"svpt-{uid}"
    return private_dir(base, 0o700)


def missing_requirement() -> str | None:
    """Why a private containerd cannot run here, or None."""
    if sys.platform != "linux":
        return f"a private containerd needs Linux, not {sys.platform}"
    for name in _REQUIRED_BINARIES:
        if shutil.which(name) is None:
            return (
                f"{name} is not on PATH ({os.environ.get('PATH', '')}): "
                "install containerd and runc (Debian: apt-get install containerd runc)"
            )
    if os.geteuid() != 0:
        return f"a private containerd needs root, and this runs as uid {os.geteuid()}"
    return None


async def _version(address: str, state_dir: Path) -> str:
    import supervisor

    timeouts = supervisor.Timeouts(connect=10.0, rpc=10.0)
    async with supervisor.connect(
        address, namespace="default", events=False, timeouts=timeouts, state_dir=state_dir
    ) as client:
        return await client.version()


def probe(address: str, state_dir: Path) -> str | None:
    """Why the containerd at ``address`` cannot be used, or None."""
    try:
        blocking(_version, address, state_dir)
    except errors.SupervisorError as exc:
        return f"containerd at {address} does not answer: {exc}"
    return None


class PrivateDaemon:
    """A :class:`supervisor.Daemon` in a thread of its own."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.address = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=self._main, name=f"supervisor-pytest-containerd:{directory.name}", daemon=True
        )

    def start(self) -> str:
        """Start containerd; return its address.

        Raises:
            SupervisorError: it did not come up (the daemon's own words).
        """
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise errors.Unavailable(f"containerd did not come up within {_START_TIMEOUT}s")
        if self._error is not None:
            raise self._error
        return self.address

    def stop(self) -> list[str]:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop ended already
                pass
        self._thread.join(_STOP_TIMEOUT)
        if self._thread.is_alive():
            return [f"the private containerd did not stop within {_STOP_TIMEOUT}s"]
        return []

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # noqa: BLE001 - handed to start()
            self._error = exc
        finally:
            self._ready.set()

    async def _run(self) -> None:
        from ..daemon import Daemon

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        binary = shutil.which("containerd") or "containerd"
        async with Daemon(
            self.directory / "root", self.directory / "state", binary=binary
        ) as daemon:
            self.address = daemon.address
            self._ready.set()
            await self._stop.wait()


def write_owner(directory: Path, owner: Owner) -> None:
    text = f"{owner.pid} {owner.start} {owner.boot} {owner.pidns}\n"
    write_new(directory / "owner", text.encode())


def _read_owner(directory: Path) -> Owner | None:
    try:
        pid, start, boot, pidns = read_small(directory / "owner").decode().split()
        return Owner(int(pid), start, boot, pidns)
    except (OSError, ValueError, UnicodeDecodeError):
        return None


async def _empty_private(directory: Path) -> None:
    from ..daemon import Daemon

    # Adopts the containerd the dead session left running (or starts one on
    # its directories, which finds the shims still running its containers).
    binary = shutil.which("containerd") or "containerd"
    async with Daemon(directory / "root", directory / "state", binary=binary) as daemon:
        namespaces = Namespaces(daemon.address)
        for name in await asyncio.to_thread(namespaces.list):
            await purge(daemon.address, name, directory / "admin")
            await asyncio.to_thread(namespaces.remove, name)


def reap_directories(base: Path, me: Owner) -> list[str]:
    """Empty, stop and remove the private containerds of dead sessions.

    Returns:
        Problems met, one line each.
    """
    problems: list[str] = []
    for directory in base.iterdir():
        if not directory.name.startswith("svt-") or directory.is_symlink():
            continue
        owner = _read_owner(directory)
        if owner is None or not owner.is_gone(me):
            continue
        if (directory / "state" / "containerd.toml").exists():
            try:
                blocking(_empty_private, directory)
            except (errors.SupervisorError, OSError) as exc:
                problems.append(f"{directory}: {exc}")
                continue
        shutil.rmtree(directory, ignore_errors=True)
    return problems
