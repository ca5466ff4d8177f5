"""How a process on a terminal reads the end of its input.

A terminal has no end-of-file that closing a file could give: the runc
shim copies stdin's FIFO into the terminal's master, and when that copy
ends (containerd's CloseIO closes the shim's end of the FIFO) the shim
closes the master. That hangs the terminal up: the process gets SIGHUP
(usually its death, exit code 129), and whatever it had not yet written,
or the shim not yet copied out, is lost.

So for a terminal we do what a user at its keyboard does: type the
terminal's EOF key, ^D (VEOF; runc leaves the kernel's default). In
canonical mode a ^D after a newline makes the reader's ``read`` return 0,
its end-of-file; after a partial line the first ^D only hands that line
over, so we type two: a second end-of-file for a reader that already got
one does no harm. The shim keeps its own write end of the FIFO, so
closing ours afterwards changes nothing for the terminal. A program that
puts its terminal in raw mode reads the ^D bytes as data, as it would
from a keyboard.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeGuard

import anyio

from .. import _platform
from .._cleanup import task_group
from ..fifo import StdioSet

__all__ = ["end_input", "end_terminal_input", "ends_by_key"]

# Two: see the module docstring (a partial line, then end-of-file).
_EOF_KEYS = b"\x04\x04"


def ends_by_key(fifos: StdioSet | None) -> TypeGuard[StdioSet]:
    """Whether the end of this process's input is typed (a POSIX terminal
    fed through FIFOs) rather than containerd's CloseIO."""
    return (
        fifos is not None
        and fifos.terminal
        and fifos.stdin is not None
        and _platform.PLATFORM.stdio == "fifo"
    )


async def end_terminal_input(
    fifos: StdioSet, exited: Callable[[], Awaitable[object]] | None
) -> None:
    """Type the EOF key after everything sent so far, then close our end
    (idempotent: a closed end types nothing more).

    Like any write to the terminal it waits while the FIFO is full, until
    the process reads or ``exited`` returns: once the process is gone the
    shim's copy into the terminal blocks for good, and so would we. With
    ``exited`` None it waits for nothing: what does not fit at once is not
    typed (a shielded start must not wait for the process to read).
    """
    stdin = fifos.stdin
    if stdin is None:
        return
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        if exited is None:
            # Our FIFO stream writes what fits before its first checkpoint.
            with anyio.CancelScope() as scope:
                scope.cancel()
                await stdin.send(_EOF_KEYS)
        else:
            async with task_group() as tg:

                async def gone() -> None:
                    await exited()
                    tg.cancel_scope.cancel()

                tg.start_soon(gone)
                await stdin.send(_EOF_KEYS)
                tg.cancel_scope.cancel()
    await stdin.aclose()


async def end_input(
    fifos: StdioSet | None,
    close_io: Callable[[], Awaitable[None]],
    exited: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """End a started process's input: the EOF key on a terminal of ours
    (see :func:`end_terminal_input` for ``exited``), else ``close_io``
    (containerd's CloseIO)."""
    if ends_by_key(fifos):
        await end_terminal_input(fifos, exited)
    else:
        await close_io()
