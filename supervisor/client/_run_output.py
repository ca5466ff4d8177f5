"""``Client.run``'s exchange with its process: the input fed, both outputs
read as they come, and on a timeout the process stopped with a grace period
and the output gathered so far handed back in the error, as
``subprocess.TimeoutExpired`` carries it."""

from __future__ import annotations

import contextlib
import math

import anyio
from anyio.abc import ByteReceiveStream

from .. import errors
from .._cleanup import task_group
from .._types import ExitStatus
from ..domain._graceful import checked_stop_timeout
from ..domain._task import Task

__all__ = ["checked_run_timeouts", "run_to_end"]


def checked_run_timeouts(timeout: object, stop_timeout: object, container_id: str) -> None:
    """Refuse a bad ``timeout``/``stop_timeout`` before anything is made."""
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise errors.InvalidArgument(
                f"timeout must be a number of seconds or None, not {type(timeout).__name__}",
                container_id=container_id,
            )
        if math.isnan(timeout) or timeout < 0:
            raise errors.InvalidArgument(
                f"timeout must be zero or more seconds, not {timeout!r}", container_id=container_id
            )
    checked_stop_timeout(stop_timeout, container_id, "stop_timeout")


async def _drain(stream: ByteReceiveStream | None, into: list[bytes]) -> None:
    if stream is None:
        return
    with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError):
        while True:
            into.append(await stream.receive())


async def run_to_end(
    task: Task, input: bytes | None, limit: float | None, stop_timeout: float
) -> tuple[ExitStatus, bytes, bytes]:
    """The started ``task``'s exit status and whole output; past ``limit``
    seconds it is stopped (``stop_timeout`` of grace) and
    :class:`~supervisor.errors.DeadlineExceeded` raised with the output."""
    out: list[bytes] = []
    err: list[bytes] = []
    drained = anyio.Event()
    drain_limit = task._session.timeouts.output_drain

    async def read() -> None:
        async with task_group() as readers:
            readers.start_soon(_drain, task.stdout, out)
            readers.start_soon(_drain, task.stderr, err)
        drained.set()

    async def feed() -> None:
        stdin = task.stdin
        if stdin is None:
            return
        if input:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stdin.send(input)
        await task.close_stdin()

    async with task_group() as tg:
        tg.start_soon(read)
        tg.start_soon(feed)
        with anyio.move_on_after(math.inf if limit is None else limit) as scope:
            status = await task.wait()
        timed_out = scope.cancelled_caught
        if timed_out:
            status = await task.stop(stop_timeout)
        # The exit is known: the pipes end once the shim has copied the
        # rest. Bounded, as the exit is: a pipe that some process outside
        # the task holds open would otherwise keep the call.
        with anyio.move_on_after(drain_limit):
            await drained.wait()
        tg.cancel_scope.cancel()
    if timed_out:
        error = errors.DeadlineExceeded(
            f"the process did not end within {limit}s (stopped: exit code {status.exit_code})",
            container_id=task.container.id,
        )
        error.stdout, error.stderr = b"".join(out), b"".join(err)
        raise error
    return status, b"".join(out), b"".join(err)
