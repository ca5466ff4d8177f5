"""Asking a shim-run logger (:mod:`supervisor.fifo._logger`) whether it has
written everything: the library's side of the drain handshake."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

import anyio

from .._log import get_logger

__all__ = ["ask_drained"]

_log = get_logger("process")

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


async def ask_drained(prefix: Path, *, terminal: bool, limit: float, log_path: Path) -> bool:
    """Ask the logger of ``<prefix>-ctl`` to empty the pipes into the file
    and wait for its answer, at most ``limit`` seconds; whether it answered
    or is gone (a logger that is gone has written everything it ever will).
    """
    token = secrets.token_hex(8)
    ack = Path(f"{prefix}-ack-{token}")
    try:
        os.mkfifo(ack, 0o600)
    except OSError as exc:
        _log.warning("process.log_drain_failed", path=str(ack), error=str(exc))
        return False
    try:
        # Read-write: the FIFO never reads as end-of-file while the
        # logger has not opened it, and its open never blocks.
        reply = os.open(ack, os.O_RDWR | os.O_NONBLOCK | _NOFOLLOW | _CLOEXEC)
        try:
            return await _ask(Path(f"{prefix}-ctl"), token, reply, terminal, limit, log_path)
        finally:
            os.close(reply)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(ack)


async def _ask(
    ctl_path: Path, token: str, reply: int, terminal: bool, limit: float, log_path: Path
) -> bool:
    try:
        ctl = os.open(ctl_path, os.O_WRONLY | os.O_NONBLOCK | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return True  # no logger reads it any more: it finished
        # Removed or replaced behind our back: nothing can tell whether the
        # logger has written everything.
        _log.warning("process.log_drain_unknown", path=str(ctl_path), error=str(exc))
        return False
    try:
        # A terminal's output reaches the pipe through the shim's copy out
        # of the terminal, which may still run after the exit: the logger
        # answers once that copy ended (stdout's end-of-file).
        request = f"{token} eof\n" if terminal else f"{token}\n"
        try:
            os.write(ctl, request.encode())
        except OSError:
            return True  # EPIPE: the logger is gone
        if await _answered(reply, ctl, limit):
            return True
    finally:
        os.close(ctl)
    _log.warning("process.log_not_drained", limit=limit, path=str(log_path))
    return False


async def _answered(reply: int, ctl: int, limit: float) -> bool:
    """Whether, within ``limit`` seconds, the logger answered on ``reply``
    or went away without reading our request.

    The logger may be on its way out when we write (on a terminal it ends
    by itself once both pipes reached end-of-file), and then never reads
    the request. It is the control FIFO's only reader, so its exit makes
    our write end report an error (EPOLLERR), which the event loop hands
    to a waiter for readability: a write-only end is never readable
    otherwise.
    """
    answered = False

    async def on_reply(scope: anyio.CancelScope) -> None:
        nonlocal answered
        while True:
            await anyio.wait_readable(reply)
            with contextlib.suppress(BlockingIOError):
                if os.read(reply, 16):
                    break
        answered = True
        scope.cancel()

    async def on_gone(scope: anyio.CancelScope) -> None:
        nonlocal answered
        await anyio.wait_readable(ctl)
        answered = True
        scope.cancel()

    with anyio.move_on_after(limit):
        async with anyio.create_task_group() as tg:
            tg.start_soon(on_reply, tg.cancel_scope)
            tg.start_soon(on_gone, tg.cancel_scope)
    return answered
