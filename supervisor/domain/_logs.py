"""A container's log file, read back: where it is (a record of ours in the
container's bundle directory, written when a task is created with a
``log_path``), and its lines for :meth:`Container.logs`; the options a task
or exec takes for its log file, checked."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Protocol, TypedDict

import anyio

from .. import _platform, errors
from ..fifo._log_options import RAW_OPTIONS, LogFormat, LogOptions, checked_log_options
from ..fifo._log_pump import read_log_options, write_log_record
from ..fifo._log_read import LogLine, LogQuery, TimeArg, check_log_query, read_log_file
from ._output import LogWriter, checked_log_writer


class _Waitable(Protocol):
    async def wait(self) -> object: ...


class _Logged(Protocol):
    # What of a Container is used here (a protocol: the container module
    # imports this one).
    id: str
    bundle_dir: Path

    async def task(self) -> _Waitable: ...


__all__ = [
    "LogArgs",
    "checked_log_args",
    "container_logs",
    "container_log",
    "forget_container_log",
    "logs_method",
    "read_logs",
    "record_container_log",
    "task_log",
]

# In the bundle directory, beside the FIFOs (whose names never take this form).
_RECORD = "container-log"
_POLL = 0.1


def checked_log_args(
    log_writer: object,
    log_path: Path | None,
    container_id: str,
    process_id: str,
    log_args: LogArgs,
) -> tuple[LogWriter, LogOptions]:
    """Who writes a new task's or exec's log file and how, checked (before
    anything is made)."""
    writer = checked_log_writer(
        log_writer, log_path, container_id=container_id, process_id=process_id
    )
    options = checked_log_options(
        log_args.get("log_format", "raw"),
        log_args.get("log_max_size"),
        log_args.get("log_max_files"),
        has_path=log_path is not None,
        container_id=container_id,
        process_id=process_id,
    )
    if options != RAW_OPTIONS and _platform.PLATFORM.stdio != "fifo":
        raise errors.InvalidArgument(
            "log_format='cri' and rotation are not available on this platform",
            container_id=container_id,
            process_id=process_id,
        )
    return writer, options


def record_container_log(bundle_dir: Path, log_path: Path, options: LogOptions) -> None:
    """Remember the container's log file (its latest task's), for reading it
    back after the task is gone or from another application: in our own
    bundle directory, which lives as long as the container does."""
    with contextlib.suppress(OSError):
        write_log_record(bundle_dir / _RECORD, log_path, options, replace=True)


def forget_container_log(bundle_dir: Path) -> None:
    """The container's task logs nowhere now: no record of a file."""
    with contextlib.suppress(OSError):
        os.unlink(bundle_dir / _RECORD)


def container_log(bundle_dir: Path, container_id: str) -> Path:
    """The container's CRI log file, as recorded.

    Raises:
        FailedPrecondition: no task of it was created with a ``log_path``,
            or not with ``log_format="cri"`` (a raw file has no lines to tell).
    """
    found = read_log_options(bundle_dir / _RECORD)
    if found is None:
        raise errors.FailedPrecondition(
            "the container has no log file (create its task with log_path= and log_format='cri')",
            container_id=container_id,
        )
    path, options = found
    if options.format != "cri":
        raise errors.FailedPrecondition(
            f"the log file {path} is raw bytes, without streams or times "
            "(create the task with log_format='cri' to read it back by line)",
            container_id=container_id,
        )
    return path


async def container_logs(
    container: _Logged, path: Path, query: LogQuery
) -> AsyncGenerator[LogLine, None]:
    """The lines of ``container``'s log at ``path`` that ``query`` asks for;
    following, until its task has exited and everything it wrote is in the
    file."""
    task: _Waitable | None = None
    if query.follow:
        try:
            task = await container.task()
        except errors.NotFound:
            task = None
    # Closed with this generator, not when collected: it holds the file open.
    async with contextlib.aclosing(task_log(path, query, task)) as lines:
        async for line in lines:
            yield line


def task_log(path: Path, query: LogQuery, task: _Waitable | None) -> AsyncGenerator[LogLine, None]:
    """The lines of the log at ``path``; following, until ``task`` (if
    any) has exited and everything it wrote is in the file."""

    async def done() -> bool:
        if task is None:
            return True
        # Waiting is also the pause between two looks at the file (from a
        # client with events, a wait costs no call to containerd; without,
        # each one asks containerd again).
        with anyio.move_on_after(_POLL):
            await task.wait()
            return True
        return False

    return read_log_file(path, query, done if query.follow else None)


class LogArgs(TypedDict, total=False):
    """The log file options of :meth:`Container.new_task` and :meth:`Task.exec`."""

    log_format: LogFormat
    log_max_size: int | None
    log_max_files: int | None


def logs_method(
    self: _Logged,
    *,
    follow: bool = False,
    since: TimeArg = None,
    until: TimeArg = None,
    tail: int | None = None,
    timestamps: bool = False,
    stdout: bool = True,
    stderr: bool = True,
) -> AsyncGenerator[LogLine, None]:
    """The container's output read back from its log file, line by line,
    with each line's stream and time (:class:`~supervisor.LogLine`).

    The file is the one its latest task created with a ``log_path=`` was
    given (in ``log_format="cri"``), recorded with the container: it reads
    while the task runs, after it exited or was deleted, and from another
    application (after a restart). Rotated files are read too, oldest
    first. See ``docs/logs.md``.

    Args:
        follow: keep reading as the file grows, until the task has exited
            and everything it wrote is read (at once if there is no task).
        since, until: only lines read at or after ``since`` and before
            ``until``: an aware ``datetime``, a ``timedelta`` (that long
            ago) or nanoseconds since the epoch.
        tail: only the last ``tail`` lines already in the file (then,
            following, the new ones).
        timestamps: ``str(line)`` starts with the line's RFC 3339 time.
        stdout, stderr: the streams to read.

    Raises:
        InvalidArgument: a bad argument (raised by this call, before
            anything is opened).
        FailedPrecondition: no task of the container logged to a CRI file.
        NotFound, InvalidArgument: (while iterating) the file is missing,
            or is a link, a FIFO or a directory.

    Example::

        async for line in container.logs(tail=50, stderr=False):
            print(line.time, line.text)
    """
    query = check_log_query(
        follow=follow,
        since=since,
        until=until,
        tail=tail,
        timestamps=timestamps,
        stdout=stdout,
        stderr=stderr,
    )
    return container_logs(self, container_log(self.bundle_dir, self.id), query)


def read_logs(
    path: str | os.PathLike[str],
    *,
    follow: bool = False,
    since: TimeArg = None,
    until: TimeArg = None,
    tail: int | None = None,
    timestamps: bool = False,
    stdout: bool = True,
    stderr: bool = True,
) -> AsyncGenerator[LogLine, None]:
    """The lines of a CRI-format log file (``log_format="cri"``) and of its
    rotated files, with no container needed: after the container was
    deleted, or a file from elsewhere (kubelet writes the same format).

    The arguments are those of :meth:`Container.logs`, except that
    ``follow=True`` has no task to wait for: it follows the file until the
    iteration is left (or cancelled). Lines not in the format are skipped.

    Raises:
        InvalidArgument: a bad argument or a relative path (raised by this
            call, before anything is opened); while iterating, a file
            that is a link, a FIFO or a directory.
        NotFound: (while iterating) there is no such file.

    Example::

        async for line in supervisor.read_logs("/var/log/app.log", tail=10):
            print(line.time.isoformat(), line.stream, line.text)
    """
    query = check_log_query(
        follow=follow,
        since=since,
        until=until,
        tail=tail,
        timestamps=timestamps,
        stdout=stdout,
        stderr=stderr,
    )
    try:
        checked = Path(path)
    except TypeError:
        raise errors.InvalidArgument(f"path must be a path, not {path!r}") from None
    if not checked.is_absolute() or "\0" in str(checked):
        raise errors.InvalidArgument(f"path must be an absolute path, not {str(checked)!r}")
    return read_log_file(checked, query)
