"""Our terminal and stdio joined to a container process's: raw mode, resize,
signal forwarding, and the pumps that copy bytes both ways.

As docker does: with ``-it`` our terminal goes to raw mode (the container's
terminal does the echoing and line editing, so nothing is echoed twice and
answers to the shell's queries reach the shell) and comes back exactly as it
was on every way out; SIGWINCH resizes the container's terminal; the command
returns as soon as the process exits, whatever stdin is doing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import anyio
from anyio.abc import ByteReceiveStream

from .. import errors
from .._types import ExitStatus
from ..domain._process import Process

__all__ = ["attach", "raw_mode", "terminal_size", "write_all"]

# Forwarded to the process, as docker's --sig-proxy does. SIGINT and SIGQUIT
# only arrive here as signals without raw mode (with it they are bytes the
# container's terminal turns into signals itself).
_FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
_CHUNK = 65536
# Output still arriving after the exit (a child holding the pipe open) is
# copied for at most this long.
_DRAIN = 5.0


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Our terminal on ``fd`` in raw mode, restored on the way out however
    it is left. Run inside the signal receiver of :func:`attach`, so SIGTERM
    and SIGHUP arrive as messages instead of ending us in raw mode."""
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        # TCSADRAIN: what we wrote in raw mode is shown before the switch.
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_size(fd: int | None) -> tuple[int, int] | None:
    """``(columns, lines)`` of our terminal, or None (not a terminal, or
    one that reports 0x0, as some do before they are drawn)."""
    if fd is None:
        return None
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    if size.columns <= 0 or size.lines <= 0:
        return None
    return size.columns, size.lines


async def _resize(process: Process, fd: int | None) -> None:
    size = terminal_size(fd)
    if size is None:
        return
    with contextlib.suppress(errors.NotFound, errors.FailedPrecondition):
        await process.resize(*size)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to our ``fd`` (blocking; it is ours to block on)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            # The terminal's file description is shared with whoever else
            # uses it; if something set it non-blocking, wait our turn.
            select.select([], [fd], [], 1.0)


async def copy_out(stream: ByteReceiveStream | None, fd: int) -> None:
    """Copy a process's output to our ``fd`` until it ends. If our side
    closed (``| head``), keep reading and drop it, so the process never
    blocks on a full pipe."""
    if stream is None:
        return
    broken = False
    while True:
        try:
            data = await stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return
        if broken:
            continue
        try:
            write_all(fd, data)
        except BrokenPipeError:
            broken = True


def _pollable(fd: int) -> bool:
    # epoll refuses regular files and some devices (/dev/null); reading
    # those never blocks for long.
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)


async def _read_stdin(pollable: bool) -> bytes:
    if not pollable:
        return await anyio.to_thread.run_sync(os.read, 0, _CHUNK, abandon_on_cancel=True)
    while True:
        # Waiting for readiness, then reading what is there, is cancelled
        # the moment the process exits; a thread parked in read(2) would
        # hold the command until a key is pressed. The fd's flags are left
        # alone: the file description is shared with the shell and with our
        # own stdout.
        await anyio.wait_readable(0)
        try:
            return os.read(0, _CHUNK)
        except BlockingIOError:
            continue


async def copy_in(process: Process) -> None:
    """Copy our stdin to the process; at our end-of-file, close its stdin."""
    stream = process.stdin
    if stream is None:
        return
    pollable = _pollable(0)
    while True:
        try:
            data = await _read_stdin(pollable)
        except OSError as exc:
            if exc.errno not in (errno.EIO, errno.EBADF):
                raise
            data = b""  # a terminal that hung up, or no stdin at all: end of input
        if not data:
            break
        try:
            await stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return  # the process stopped reading its stdin
    with contextlib.suppress(errors.NotFound, errors.FailedPrecondition):
        await process.close_stdin()


async def _forward_signals(
    process: Process, signals: AsyncIterator[signal.Signals], size_fd: int | None
) -> None:
    strikes = 0
    async for sig in signals:
        if sig == signal.SIGWINCH:
            await _resize(process, size_fd)
            continue
        if sig == signal.SIGINT:
            strikes += 1
        # A second ^C (as a signal, without raw mode) means it.
        number = int(signal.SIGKILL) if strikes > 1 else int(sig)
        with contextlib.suppress(errors.NotFound, errors.FailedPrecondition):
            await process.kill(number)


async def attach(
    process: Process,
    *,
    start: Callable[[], Awaitable[None]] | None,
    stdin: bool,
    raw_fd: int | None,
    size_fd: int | None,
    outputs: bool = True,
) -> ExitStatus:
    """Start ``process`` (``start``, if not started yet), join our stdio to
    it and wait for it to exit; its exit status.

    Args:
        start: how to start it, called with the terminal already raw and
            signals already caught.
        stdin: copy our stdin to it.
        raw_fd: put our terminal on this fd in raw mode meanwhile.
        size_fd: our terminal to take the size from (initially and on
            SIGWINCH), if the process has a terminal.
        outputs: copy its stdout and stderr to ours (False: it has none).
    """
    with anyio.open_signal_receiver(*_FORWARDED, signal.SIGWINCH) as signals:
        with raw_mode(raw_fd) if raw_fd is not None else contextlib.nullcontext():
            if start is not None:
                await start()
            await _resize(process, size_fd)
            async with anyio.create_task_group() as outer:
                outer.start_soon(_forward_signals, process, signals, size_fd)
                if stdin:
                    outer.start_soon(copy_in, process)
                async with anyio.create_task_group() as pumps:
                    if outputs:
                        pumps.start_soon(copy_out, process.stdout, 1)
                        pumps.start_soon(copy_out, process.stderr, 2)
                    status = await process.wait()
                    pumps.cancel_scope.deadline = anyio.current_time() + _DRAIN
                outer.cancel_scope.cancel()
    return status
