"""Stopping a task with a grace period, as ``docker stop`` does: the stop
signal (the image's ``StopSignal``, else SIGTERM) to the init process, up to
``timeout`` seconds for it to exit, then SIGKILL to every process of the
task. The forced, immediate stop of a delete is in ``_stop``."""

from __future__ import annotations

import contextlib
import math
import signal as _signal
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from .. import errors
from .._log import get_logger
from .._types import ExitStatus, ProcessState
from ._stop import check_signal

if TYPE_CHECKING:
    from ._process import Process

__all__ = [
    "STOP_SIGNAL_KEY",
    "checked_stop_arguments",
    "checked_stop_signal",
    "checked_stop_timeout",
    "graceful_stop",
    "stop_method",
    "with_stop_signal",
]

_log = get_logger("task")

# containerd's own key (its Go client's WithImageStopSignal writes it as a
# container label, and ctr/nerdctl read it there): the library writes it as
# a spec annotation of a container made from an image, and honours either.
STOP_SIGNAL_KEY = "io.containerd.image.config.stop-signal"

_FROZEN = (ProcessState.PAUSED, ProcessState.PAUSING)


def checked_stop_signal(value: object, container_id: str, process_id: str) -> int:
    """A signal as a number: an int (1..64), or a name such as ``"SIGTERM"``,
    ``"TERM"`` or ``"15"`` (the forms an image's ``StopSignal`` takes)."""
    if isinstance(value, str):
        text = value.strip().upper()
        if text.isdigit():
            return check_signal(int(text), container_id, process_id)
        name = text if text.startswith("SIG") else f"SIG{text}"
        try:
            return int(_signal.Signals[name])
        except KeyError:
            raise errors.InvalidArgument(
                f"unknown signal {value!r}", container_id=container_id, process_id=process_id
            ) from None
    return check_signal(value, container_id, process_id)


def checked_stop_arguments(grace: object, signal: object, container_id: str) -> None:
    """Refuse a bad grace period or signal before anything is sent."""
    checked_stop_timeout(grace, container_id)
    if signal is not None:
        checked_stop_signal(signal, container_id, container_id)


def checked_stop_timeout(value: object, container_id: str, what: str = "timeout") -> float:
    """A grace period in seconds: a finite number, zero or more."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise errors.InvalidArgument(
            f"{what} must be a number of seconds, not {type(value).__name__}",
            container_id=container_id,
        )
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise errors.InvalidArgument(
            f"{what} must be a finite number of seconds, zero or more, not {value!r}",
            container_id=container_id,
        )
    return seconds


def with_stop_signal(spec: dict[str, Any], image_config: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` with the image config's ``StopSignal`` recorded (as an
    annotation) for :meth:`Task.stop`; a caller's own annotation wins."""
    value = image_config.get("StopSignal")
    if isinstance(value, str) and value:
        annotations = spec.setdefault("annotations", {})
        if isinstance(annotations, dict):
            annotations.setdefault(STOP_SIGNAL_KEY, value)
    return spec


def _default_signal(task: Process) -> int:
    """The container's recorded stop signal (a label another client wrote,
    else the annotation the image gave), else SIGTERM. A recorded value
    that is no signal is logged and SIGTERM used: it was not the caller's."""
    container = task.container
    annotations = container.spec.get("annotations")
    recorded = container.labels.get(STOP_SIGNAL_KEY)
    if recorded is None and isinstance(annotations, dict):
        recorded = annotations.get(STOP_SIGNAL_KEY)
    if isinstance(recorded, str) and recorded:
        try:
            return checked_stop_signal(recorded, container.id, task.id)
        except errors.InvalidArgument:
            _log.warning("task.stop_signal_invalid", container_id=container.id, value=recorded)
    return int(_signal.SIGTERM)


async def _known_exit(task: Process, limit: float) -> ExitStatus | None:
    """The exit status, if the task exits within ``limit`` seconds."""
    with anyio.move_on_after(limit):
        return await task.wait()
    return None


async def graceful_stop(task: Process, grace: float, signal: int | str | None) -> ExitStatus:
    """See :meth:`Task.stop`. Every signal goes through :meth:`Task.kill`, so
    whatever records a caller's stop there sees this one too."""
    cid = task.container.id
    seconds = checked_stop_timeout(grace, cid)
    number = _default_signal(task) if signal is None else checked_stop_signal(signal, cid, task.id)
    limit = task._session.timeouts.cleanup
    if task._slot.status is not None:
        # Its exit is known already: no signal, nothing to wait for.
        return await task.wait()
    try:
        state = await task.status()
    except errors.NotFound:
        state = ProcessState.STOPPED
    if state is ProcessState.STOPPED:
        # Stopped, or deleted by someone else: its status is known or about
        # to be (a loaded stopped task was reported when it was adopted).
        status = await _known_exit(task, limit)
        if status is None:
            raise errors.DeadlineExceeded(
                f"the task's exit status was not known within {limit}s", container_id=cid
            )
        return status
    if state is not ProcessState.CREATED:
        # A process that never ran has nothing to end gracefully.
        with contextlib.suppress(errors.NotFound, errors.FailedPrecondition):
            await task.kill(number)
        if state in _FROZEN:
            await _thaw(task)
        status = await _known_exit(task, seconds)
        if status is not None:
            _log.debug("task.stop", container_id=cid, signal=number, exit_code=status.exit_code)
            return status
    with contextlib.suppress(errors.NotFound, errors.FailedPrecondition):
        await task.kill(int(_signal.SIGKILL), all=True)
    await _thaw(task)
    status = await _known_exit(task, limit)
    if status is None:
        raise errors.DeadlineExceeded(
            f"the task did not exit within {limit}s of SIGKILL", container_id=cid
        )
    _log.debug(
        "task.stop", container_id=cid, signal=int(_signal.SIGKILL), exit_code=status.exit_code
    )
    return status


async def _thaw(task: Process) -> None:
    """A frozen cgroup holds every signal: thaw it (a task that is not
    frozen, or is gone, refuses, which is fine)."""
    with contextlib.suppress(errors.NotFound, errors.FailedPrecondition, errors.Unknown):
        if await task.status() in _FROZEN:
            await task._session.transport.resume(task.container.id)


class _Stoppable(Protocol):
    async def stop(self, timeout: float, signal: int | str | None) -> ExitStatus: ...  # noqa: ASYNC109


class _WithTask(Protocol):
    id: str

    async def task(self, *, attach: bool = True) -> _Stoppable: ...


async def stop_method(
    self: _WithTask,
    timeout: float = 10.0,  # noqa: ASYNC109 - docker stop's grace period, not a deadline
    signal: int | str | None = None,
) -> ExitStatus | None:
    """:meth:`Task.stop` for the container's task, whoever made it (its
    stdio is not reopened); ``None`` if the container has no task.

    Raises:
        InvalidArgument: as :meth:`Task.stop`, checked before anything is
            asked of containerd.
    """
    checked_stop_arguments(timeout, signal, self.id)
    try:
        task = await self.task(attach=False)
    except errors.NotFound:
        return None
    return await task.stop(timeout, signal)
