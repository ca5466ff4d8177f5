"""Creating a process (a task's init or an exec): its stdio first (FIFOs, a
log file with its pump or a shim-run logger, or a file URI), then the create
call, and on failure only what the attempt made is removed."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Unpack

from .. import _platform, errors
from .._cleanup import shielded
from .._types import StdioPaths
from ..fifo import StdioSet, open_stdio
from ..fifo._log_options import RAW_OPTIONS, LogOptions
from ..fifo._log_pump import (
    LogPump,
    create_log_file,
    enlarge_pipe,
    open_log_directory,
    write_log_record,
)
from ..fifo._logger import LoggerStdio, make_logger_stdio
from ..fifo._names import new_stdio_name
from ._logs import LogArgs, checked_log_args, record_container_log
from ._output import LogWriter, Output

if TYPE_CHECKING:
    from ..events._tracker import Slot
    from ._session import Session

__all__ = ["create_process", "stdio_paths"]


def stdio_paths(fifos: StdioSet) -> StdioPaths:
    return StdioPaths(
        stdin=fifos.stdin_path or "",
        stdout=fifos.stdout_path,
        stderr=fifos.stderr_path or "",
        terminal=fifos.terminal,
    )


def _file_stdio(path: Path | None, *, terminal: bool) -> StdioPaths:
    # The shim itself appends stdout and stderr to a file:// URI's file: only
    # for discarded output (/dev/null), and for log files where the platform
    # has no FIFOs to pump (see supervisor.fifo._log_pump for why not).
    uri = (path or Path(os.devnull)).as_uri()
    return StdioPaths(stdout=uri, stderr=uri, terminal=terminal)


def _open_log(path: Path, container_id: str, process_id: str) -> tuple[int, bool]:
    """The log file open for appending, and whether this call made it; a
    refusal names the process."""
    try:
        return create_log_file(path)
    except errors.SupervisorError as exc:
        raise type(exc)(exc.message, container_id=container_id, process_id=process_id) from (
            exc.__cause__
        )


async def _logged_stdio(
    session: Session,
    bundle_dir: Path,
    container_id: str,
    process_id: str,
    *,
    terminal: bool,
    log_path: Path,
    log_writer: LogWriter,
    options: LogOptions = RAW_OPTIONS,
) -> LogPump | LoggerStdio:
    """FIFOs whose output the library appends to ``log_path``, and the
    record that lets a later application carry on copying; on failure
    nothing of it is left (a log file this call made is removed too)."""
    init = process_id == container_id
    name = new_stdio_name(process_id, init=init)
    if log_writer == "logger":
        return _logger_stdio(
            session, bundle_dir, name, log_path, container_id, process_id, terminal, options
        )
    return await _pumped_stdio(
        bundle_dir, name, container_id, process_id, terminal, log_path, options
    )


async def _pumped_stdio(
    bundle_dir: Path,
    name: str,
    container_id: str,
    process_id: str,
    terminal: bool,
    log_path: Path,
    options: LogOptions,
) -> LogPump:
    """:func:`_logged_stdio` when this client copies the output itself."""
    log_fd, made = _open_log(log_path, container_id, process_id)
    fifos: StdioSet | None = None
    dir_fd = -1
    record = bundle_dir / f"{name}-log"
    try:
        if options.max_size:
            dir_fd = open_log_directory(log_path)
        fifos = await open_stdio(bundle_dir, name, stdin=False, terminal=terminal)
        for stream in (fifos.stdout, fifos.stderr):
            fileno = getattr(stream, "fileno", -1)
            if isinstance(fileno, int) and fileno >= 0:
                enlarge_pipe(fileno)
        try:
            write_log_record(record, log_path, options)
        except OSError as exc:
            raise errors.Unknown(
                f"cannot record the log file in {bundle_dir}: {exc}",
                container_id=container_id,
                process_id=process_id,
            ) from exc
        return LogPump(
            fifos,
            log_path,
            log_fd,
            record=record,
            container_id=container_id,
            process_id=process_id,
            made_file=made,
            options=options,
            dir_fd=dir_fd,
        )
    except BaseException:
        os.close(log_fd)
        if dir_fd >= 0:
            os.close(dir_fd)
        with contextlib.suppress(OSError):
            os.unlink(record)
        if fifos is not None:
            fifos.remove()
        if made:
            with contextlib.suppress(OSError):
                os.unlink(log_path)
        raise


def _logger_stdio(
    session: Session,
    bundle_dir: Path,
    name: str,
    log_path: Path,
    container_id: str,
    process_id: str,
    terminal: bool,
    options: LogOptions,
) -> LoggerStdio:
    # The file is made here, as ours (never through a link): the logger,
    # which runs as containerd's user, only ever appends to it.
    fd, made = _open_log(log_path, container_id, process_id)
    os.close(fd)
    try:
        bundle_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        stdio = make_logger_stdio(
            session.state_dir,
            bundle_dir,
            name,
            log_path,
            terminal=terminal,
            made_file=made,
            options=options,
        )
    except BaseException as exc:
        if made:
            with contextlib.suppress(OSError):
                os.unlink(log_path)
        if isinstance(exc, OSError):
            raise errors.from_os_error(
                exc,
                f"cannot prepare the logger in {bundle_dir}",
                container_id=container_id,
                process_id=process_id,
            ) from exc
        raise
    return stdio


async def _new_stdio(
    session: Session,
    bundle_dir: Path,
    container_id: str,
    process_id: str,
    *,
    stdin: bool,
    terminal: bool,
    log_path: Path | None,
    output: Output,
    log_writer: LogWriter,
    log_options: LogOptions,
) -> tuple[StdioSet | None, StdioPaths]:
    """The new process's stdio: our set of it (if any) and what containerd
    is told."""
    if log_path is None and output == "pipe":
        name = new_stdio_name(process_id, init=process_id == container_id)
        fifos = await open_stdio(bundle_dir, name, stdin=stdin, terminal=terminal)
        return fifos, stdio_paths(fifos)
    if log_path is not None and _platform.PLATFORM.stdio == "fifo":
        logged = await _logged_stdio(
            session,
            bundle_dir,
            container_id,
            process_id,
            terminal=terminal,
            log_path=log_path,
            log_writer=log_writer,
            options=log_options,
        )
        return logged, stdio_paths(logged)
    return None, _file_stdio(log_path, terminal=terminal)


async def create_process(
    session: Session,
    bundle_dir: Path,
    container_id: str,
    process_id: str,
    *,
    stdin: bool,
    terminal: bool,
    create: Callable[[StdioPaths], Awaitable[int]],
    log_path: Path | None = None,
    output: Output = "pipe",
    log_writer: LogWriter = "client",
    **log_args: Unpack[LogArgs],
) -> tuple[int, StdioSet | None, Slot]:
    """The shared skeleton of creating a task or an exec: stdio first, a
    tracker slot before containerd can report an exit, the create RPC
    shielded (we must learn whether containerd made it), and on failure only
    what this attempt made is removed. A task's log file is recorded with
    its container (for :meth:`Container.logs`)."""
    tracker = session.tracker
    writer, log_options = checked_log_args(log_writer, log_path, container_id, process_id, log_args)
    fifos, paths = await _new_stdio(
        session,
        bundle_dir,
        container_id,
        process_id,
        stdin=stdin,
        terminal=terminal,
        log_path=log_path,
        output=output,
        log_writer=writer,
        log_options=log_options,
    )
    existed = tracker.has(container_id, process_id)
    slot = tracker.watch(container_id, process_id, owned=True)
    if fifos is not None:
        # Before containerd can list the process: a restore() of this client
        # that sees it while the create call is in flight shares this set
        # instead of opening the FIFOs a second time (two readers would
        # split the output).
        session.track_stdio(container_id, process_id, fifos)
    try:
        with shielded(session.timeouts.shield, "creating the process"):
            pid = await create(paths)
    except BaseException:
        if isinstance(fifos, (LogPump, LoggerStdio)):
            session.untrack_stdio(container_id, process_id, fifos)
            fifos.discard()
        elif fifos is not None:
            session.untrack_stdio(container_id, process_id, fifos)
            fifos.remove()
        if not existed:
            tracker.forget(container_id, process_id)
        raise
    if log_path is not None and process_id == container_id:
        record_container_log(bundle_dir, log_path, log_options)
    return pid, fifos, slot
