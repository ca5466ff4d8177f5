"""Running one plugin binary: stdin in, stdout and stderr out, exit status,
bounded and killable.

The plugin runs in a process group of its own so that a kill takes its
children too (a plugin's iptables, or a hung helper holding the pipes),
and inherits its container's lock (:mod:`._container_lock`), so that it
holds it even when the application that ran it is killed.
Its pipes are non-blocking fds waited on with :func:`anyio.wait_readable`,
and its exit is a pidfd becoming readable: no helper thread per process
and no child watcher, which matters when each container's attach and
detach run half a dozen plugins.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio

from .._timeouts import backoff
from ._container_lock import INHERITED

__all__ = ["PluginRun", "run_plugin"]

MAX_OUTPUT = 1 << 20
# Bound on reaping a plugin after SIGKILL (only a process stuck in the kernel
# could take longer, and then we stop waiting rather than hang).
_REAP_BOUND = 10.0


@dataclass(frozen=True, slots=True)
class PluginRun:
    """How a plugin run ended (``timed_out``: it was killed at the timeout)."""

    returncode: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool


def _spawn(path: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    # fork/exec happens on the event loop's thread, as anyio.open_process
    # does too: it takes about a millisecond.
    held = INHERITED.get()
    proc = subprocess.Popen(
        [str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        close_fds=True,
        pass_fds=() if held is None else (held,),
        start_new_session=True,
    )
    for f in (proc.stdin, proc.stdout, proc.stderr):
        assert f is not None
        os.set_blocking(f.fileno(), False)
    return proc


def _pidfd(pid: int) -> int:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return -1  # an old kernel: the exit is polled


async def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                await anyio.wait_writable(fd)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the plugin stopped reading: its exit status tells the rest


async def _read(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            await anyio.wait_readable(fd)
            continue
        if not chunk:
            return
        # Keep reading past the bound (the plugin must not block on a full
        # pipe) but keep only the first megabyte.
        if len(into) < MAX_OUTPUT:
            into += chunk[: MAX_OUTPUT - len(into)]


async def _exited(proc: subprocess.Popen[bytes], pidfd: int) -> None:
    if pidfd >= 0:
        await anyio.wait_readable(pidfd)
        proc.wait()  # exited: reaping does not block
        return
    for delay in backoff(0.001, 0.05):
        if proc.poll() is not None:
            return
        await anyio.sleep(delay)


def _killpg(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_plugin(path: Path, env: Mapping[str, str], stdin: bytes, bound: float) -> PluginRun:
    """Run ``path`` with ``env``, feed it ``stdin``, collect its output until it
    exits and closes both pipes.  Past ``bound`` seconds, or on
    cancellation, its process group is killed and reaped (the latter bounded)
    before this returns or raises."""
    proc = _spawn(path, env)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    pidfd = _pidfd(proc.pid)
    stdout = bytearray()
    stderr = bytearray()
    timed_out = False
    try:
        with anyio.move_on_after(bound) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_read, proc.stdout.fileno(), stdout)
                tg.start_soon(_read, proc.stderr.fileno(), stderr)
                await _write(proc.stdin.fileno(), stdin)
                proc.stdin.close()
                await _exited(proc, pidfd)
        timed_out = scope.cancelled_caught
    finally:
        with anyio.CancelScope(shield=True, deadline=anyio.current_time() + _REAP_BOUND):
            if proc.returncode is None or timed_out:
                # Also after a normal exit past the timeout: a child of the
                # plugin may still hold its pipes.
                _killpg(proc.pid)
            if proc.returncode is None:
                await _exited(proc, pidfd)
        # No wait on these fds is pending any more: the task group is done.
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()
        if pidfd >= 0:
            os.close(pidfd)
    return PluginRun(proc.returncode, bytes(stdout), bytes(stderr), timed_out)
