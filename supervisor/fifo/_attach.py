"""Reopening the stdio FIFOs of processes that outlived the application.

The shim keeps both ends of each output FIFO open while its process lives,
so what the process wrote while nobody read (up to the pipe buffer) waits in
the FIFO, in order, and a process blocked on a full pipe resumes as soon as a
new reader drains it. A FIFO is reopened only if containerd's record names
exactly the path our own naming scheme derives for that process in its
bundle directory (:mod:`supervisor.fifo._names`), and only if the file is a
FIFO of ours: the path is never taken from containerd on trust.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from pathlib import Path

from .. import errors
from .._ids import validate_id
from .._log import get_logger
from .._types import StdioPaths
from . import FdReceiveStream, FdSendStream
from ._log_pump import LogPump, enlarge_pipe, read_log_record, reopen_log_file
from ._logger import LoggerStdio, logger_stdio_for
from ._names import parse_stdio_path

_log = get_logger("process")

__all__ = [
    "AttachedStdio",
    "attach_stdio",
    "exec_ids_in",
    "remove_stdio_files",
    "stdio_files",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# An exec's stdout FIFO, or the control FIFO of its shim-run logger.
_EXEC_FIFO = re.compile(r"exec\.(?P<id>.+)\.[0-9a-f]{8}-(?:stdout|ctl)")


def _open_fifo(path: Path, flags: int) -> int:
    fd = os.open(path, flags | _NOFOLLOW | _NONBLOCK | _CLOEXEC)
    try:
        st = os.fstat(fd)
        geteuid = getattr(os, "geteuid", None)
        if not stat.S_ISFIFO(st.st_mode) or (geteuid is not None and st.st_uid != geteuid()):
            raise OSError(f"{path} is not a FIFO of ours")
    except BaseException:
        os.close(fd)
        raise
    return fd


class AttachedStdio:
    """Our reopened ends of a live process's FIFOs (the ``StdioSet`` protocol)."""

    def __init__(self, terminal: bool, files: list[Path]) -> None:
        self.terminal = terminal
        self.stdin_path: str | None = None
        self.stdout_path = ""
        self.stderr_path: str | None = None
        self.stdin: FdSendStream | None = None
        self.stdout: FdReceiveStream
        self.stderr: FdReceiveStream | None = None
        self._files = files
        self._removed = False

    def started(self) -> None:
        """Nothing to do: the process started long ago."""

    def close(self) -> None:
        for s in (self.stdin, getattr(self, "stdout", None), self.stderr):
            if s is not None:
                s.close()

    def remove(self) -> None:
        self.close()
        if self._removed:
            return
        self._removed = True
        for path in self._files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _ours(
    bundle_dir: Path, process_id: str, init: bool, stdio: StdioPaths
) -> tuple[str, dict[str, bool], list[Path]] | None:
    # The files' common prefix, which streams the process has, and the files,
    # when containerd's record names exactly what our naming derives.
    names = {
        stream: parse_stdio_path(bundle_dir, process_id, init=init, path=path, stream=stream)
        for stream, path in (
            ("stdout", stdio.stdout),
            ("stderr", stdio.stderr),
            ("stdin", stdio.stdin),
        )
    }
    prefix = names["stdout"]
    if prefix is None:
        return None
    for stream, path in (("stderr", stdio.stderr), ("stdin", stdio.stdin)):
        if path and names[stream] != prefix:
            return None
    present = {s: bool(names[s]) for s in ("stdin", "stdout", "stderr")}
    files = [bundle_dir / f"{prefix}-{s}" for s in ("stdin", "stdout", "stderr") if present[s]]
    record = bundle_dir / f"{prefix}-log"
    if os.path.lexists(record):
        files.append(record)
    return prefix, present, files


def stdio_files(bundle_dir: Path, process_id: str, *, init: bool, stdio: StdioPaths) -> list[Path]:
    """The stdio files of ours that containerd's record names, without
    opening them (what deleting a process not attached to must remove)."""
    logger = logger_stdio_for(
        bundle_dir, process_id, init=init, uri=stdio.stdout, terminal=stdio.terminal
    )
    if logger is not None:
        return logger.files
    found = _ours(bundle_dir, process_id, init, stdio)
    return [] if found is None else found[2]


def remove_stdio_files(bundle_dir: Path, process_id: str, *, init: bool, stdio: StdioPaths) -> None:
    """Remove the stdio files of ours that containerd's record names for a
    process that is gone (those already gone are no matter)."""
    for path in stdio_files(bundle_dir, process_id, init=init, stdio=stdio):
        with contextlib.suppress(OSError):
            os.unlink(path)


def attach_stdio(
    bundle_dir: Path, process_id: str, *, init: bool, stdio: StdioPaths
) -> AttachedStdio | LogPump | LoggerStdio | None:
    """Reopen the FIFOs containerd's record names, if they are ours; ``None``
    when they are not (another client's process, a log file, no stdio).

    A process whose output goes to a log file (a record of ours beside its
    FIFOs names the file) comes back as a :class:`LogPump` that goes on
    copying into that file; one whose output a shim-run logger writes, as a
    :class:`LoggerStdio` (nothing to open)."""
    logger = logger_stdio_for(
        bundle_dir, process_id, init=init, uri=stdio.stdout, terminal=stdio.terminal
    )
    if logger is not None:
        return logger
    found = _ours(bundle_dir, process_id, init, stdio)
    if found is None:
        return None
    prefix, present, files = found
    record = bundle_dir / f"{prefix}-log"
    log_path = read_log_record(record) if record in files else None
    if log_path is not None:
        files.remove(record)
    attached = AttachedStdio(stdio.terminal, files)
    try:
        attached.stdout_path = stdio.stdout
        attached.stdout = FdReceiveStream(_open_fifo(bundle_dir / f"{prefix}-stdout", os.O_RDONLY))
        if present["stderr"]:
            attached.stderr_path = stdio.stderr
            attached.stderr = FdReceiveStream(
                _open_fifo(bundle_dir / f"{prefix}-stderr", os.O_RDONLY)
            )
        if present["stdin"]:
            attached.stdin_path = stdio.stdin
            attached.stdin = FdSendStream(_open_fifo(bundle_dir / f"{prefix}-stdin", os.O_WRONLY))
    except OSError:
        attached.close()
        return None
    if log_path is None:
        return attached
    # An init process's id is its container's; an exec's logs name it alone.
    container_id = process_id if init else ""
    return _pump(attached, record, log_path, container_id=container_id, process_id=process_id)


def _pump(
    attached: AttachedStdio, record: Path, log_path: Path, *, container_id: str, process_id: str
) -> LogPump | None:
    if attached.stdin is not None:
        attached.close()  # a logged process never has stdin: not ours
        return None
    try:
        log_path, log_fd, options, dir_fd = reopen_log_file(record)
    except errors.SupervisorError as exc:
        # Its output stays in the FIFOs (the process blocks once they are
        # full): said loudly, since nothing copies it while this lasts.
        _log.warning(
            "process.log_not_reopened",
            container_id=container_id,
            process_id=process_id,
            path=str(log_path),
            error=str(exc),
        )
        attached.close()
        return None
    for stream in (attached.stdout, attached.stderr):
        if stream is not None:
            enlarge_pipe(stream.fileno)
    return LogPump(
        attached,
        log_path,
        log_fd,
        record=record,
        container_id=container_id,
        process_id=process_id,
        options=options,
        dir_fd=dir_fd,
    )


def exec_ids_in(bundle_dir: Path) -> list[str]:
    """The exec ids whose stdout FIFOs of ours are in ``bundle_dir``."""
    found: set[str] = set()
    try:
        entries = list(os.scandir(bundle_dir))
    except OSError:
        return []
    for entry in entries:
        match = _EXEC_FIFO.fullmatch(entry.name)
        if match is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False) and stat.S_ISFIFO(
                entry.stat(follow_symlinks=False).st_mode
            ):
                found.add(validate_id(match.group("id"), kind="exec id"))
        except (OSError, errors.InvalidArgument):
            continue
    return sorted(found)
