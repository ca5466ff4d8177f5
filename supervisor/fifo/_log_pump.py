"""A process's output copied into its log file by the library, not the shim.

containerd's runc shim can append a process's stdout and stderr to a file
itself (a ``file://`` URI), but it copies the two streams into one shared
file from two goroutines and the stdout copier closes the file under the
stderr copier when it finishes first: stderr written late is dropped, with
only a warning in containerd's log. So the output comes through FIFOs, as in
pipe mode, and the library appends it to the file.

The copy runs in the event loop's reader callbacks, one chunk per wake-up: a
chunk is written as soon as it is read (raw, or as CRI records stamped with
the time of the read, rotated as asked: :mod:`._log_writer`, which the
shim-run logger runs too), with no await in between, so there
is no moment at which a cancellation or a close could drop bytes already
taken out of a FIFO. Whatever has not been read stays in the FIFO, which the
shim keeps open while the process is known to containerd: a later reader
(this application after its restart) copies it then. While nobody reads, the
process can write about the FIFO's buffer (enlarged to
:data:`PIPE_SIZE` where the system allows) before it blocks.

A write to the file that fails (a full disk) is logged once per pump and the
bytes are dropped: blocking the container on our disk would be worse, and
the caller's operations never fail for it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from .. import errors
from .._log import get_logger
from ._log_options import RAW_OPTIONS, LogOptions
from ._log_writer import FormattedLog

if TYPE_CHECKING:
    from anyio.abc import ByteReceiveStream

    from ._stdio import StdioSet

__all__ = [
    "PIPE_SIZE",
    "LogPump",
    "create_log_file",
    "open_log_file",
    "read_log_options",
    "read_log_record",
    "reopen_log_file",
    "write_log_record",
]

_log = get_logger("process")

PIPE_SIZE = 1 << 20
"""The buffer asked for each output FIFO of a logged process: what the
process may write while the application is down before it blocks (the
kernel caps it at ``/proc/sys/fs/pipe-max-size`` for unprivileged users)."""

_CHUNK = 65536
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, absent from older Pythons' fcntl
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_RECORD_LIMIT = 4096


def enlarge_pipe(fd: int) -> None:
    """Ask for :data:`PIPE_SIZE` of buffer on ``fd``'s pipe; keep the
    default if the system refuses (a limit, or no such call)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Windows
        return
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)


def _open_appending(
    target: Path | str, path: Path, *, dir_fd: int | None = None, exclusive: bool = False
) -> int:
    # The one way a log file is opened: raises OSError as the system does,
    # InvalidArgument for anything but a regular file. Non-blocking: opening
    # a FIFO for writing would wait for a reader, on the event loop; so it
    # fails (ENXIO) or opens and is refused. A regular file ignores the flag.
    # (Flags read at call time: Windows' os has no O_NONBLOCK.)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | _NOFOLLOW | _CLOEXEC
    if exclusive:
        flags |= os.O_EXCL
    fd = os.open(target, flags, 0o644, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise errors.InvalidArgument(f"log_path {path} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_log_file(path: Path) -> int:
    """Open (creating it) the log file for appending, never through a symlink.

    Raises:
        InvalidArgument: it is a symlink, not a regular file, or cannot be
            opened as given (a missing directory); otherwise what
            :func:`~supervisor.errors.from_os_error` makes of the refusal.
    """
    try:
        return _open_appending(path, path)
    except OSError as exc:
        raise errors.from_os_error(exc, f"cannot open log_path {path}", given=True) from exc


def create_log_file(path: Path) -> tuple[int, bool]:
    """:func:`open_log_file`, and whether this call made the file (so that a
    create that fails afterwards removes what it made, and only that)."""
    try:
        return _open_appending(path, path, exclusive=True), True
    except FileExistsError:
        pass
    except OSError as exc:
        raise errors.from_os_error(exc, f"cannot create log_path {path}", given=True) from exc
    return open_log_file(path), False


def write_log_record(
    record: Path, log_path: Path, options: LogOptions = RAW_OPTIONS, *, replace: bool = False
) -> None:
    """Remember, in our own bundle directory, which file a process logs to,
    so a later application can go on copying its output there; with the
    identity of the file's directory, so that a later reopening never writes
    through a directory swapped for a link meanwhile, and how the file is
    written (format, rotation). ``replace``: a record already there is
    replaced (by a rename: never written through a link)."""
    parent = os.stat(log_path.parent)
    data = os.fsencode(log_path) + f"\n{parent.st_dev}:{parent.st_ino}\n".encode()
    data += options.encode()
    target = record.with_name(record.name + ".new") if replace else record
    if replace:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    if replace:
        os.replace(target, record)


def _read_record(record: Path) -> tuple[Path, tuple[int, int] | None, LogOptions] | None:
    # Non-blocking: a FIFO planted in the record's place must not hold the
    # event loop; it is refused as not a regular file.
    try:
        fd = os.open(record, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW | _CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        geteuid = getattr(os, "geteuid", None)
        if not stat.S_ISREG(st.st_mode) or (geteuid is not None and st.st_uid != geteuid()):
            return None
        data = os.read(fd, _RECORD_LIMIT + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if not data or len(data) > _RECORD_LIMIT or b"\0" in data:
        return None
    name, _, rest = data.partition(b"\n")
    identity, _, options = rest.partition(b"\n")
    path = Path(os.fsdecode(name))
    if not path.is_absolute():
        return None
    dev, _, ino = identity.decode("ascii", "replace").partition(":")
    parent = (int(dev), int(ino)) if dev.isdigit() and ino.isdigit() else None
    return path, parent, LogOptions.decode(options)


def read_log_options(record: Path) -> tuple[Path, LogOptions] | None:
    """The log file a record of ours names and how it is written."""
    found = _read_record(record)
    return None if found is None else (found[0], found[2])


def read_log_record(record: Path) -> Path | None:
    """The log file a record of ours names; ``None`` if there is no record
    (pipe mode) or it is not one we could have written."""
    found = _read_record(record)
    return None if found is None else found[0]


def reopen_log_file(record: Path) -> tuple[Path, int, LogOptions, int]:
    """The log file a record names, open for appending again (after the
    application's restart): in the very directory it was made in, never
    through a link, the file made again if it was removed. Returns the
    path, the file's fd, how it is written, and (for a rotated log) an fd
    of its directory, else -1.

    Raises:
        InvalidArgument: no record of ours, or the file or its directory
            is not what it was (a directory swapped for a link, a file
            replaced by a link or a FIFO).
    """
    found = _read_record(record)
    if found is None or found[1] is None:
        raise errors.InvalidArgument(f"no log record of ours at {record}")
    path, parent, options = found
    try:
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    except OSError as exc:
        raise errors.from_os_error(exc, f"cannot open {path.parent}", given=True) from exc
    try:
        st = os.fstat(directory)
        if (st.st_dev, st.st_ino) != parent:
            raise errors.InvalidArgument(
                f"the directory of log_path {path} is not the one the task was created with"
            )
        try:
            fd = _open_appending(path.name, path, dir_fd=directory)
        except OSError as exc:
            raise errors.from_os_error(exc, f"cannot open log_path {path}", given=True) from exc
    except BaseException:
        os.close(directory)
        raise
    if not options.max_size:
        os.close(directory)
        directory = -1
    return path, fd, options, directory


def open_log_directory(path: Path) -> int:
    """An fd of ``path``'s directory, for rotating the file in it.

    Raises:
        InvalidArgument: it cannot be opened as a directory.
    """
    try:
        return os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    except OSError as exc:
        raise errors.from_os_error(exc, f"cannot open {path.parent}", given=True) from exc


class LogPump:
    """Our ends of a process's output FIFOs, copied into its log file.

    Offers the ``StdioSet`` shape so the session can track, share and
    release it like any stdio set; its streams belong to the pump (the
    process object gives the caller none).

    Attributes:
        log_path: the file the output is appended to.
    """

    def __init__(
        self,
        stdio: StdioSet,
        log_path: Path,
        log_fd: int,
        *,
        record: Path,
        container_id: str,
        process_id: str,
        made_file: bool = False,
        options: LogOptions = RAW_OPTIONS,
        dir_fd: int = -1,
    ) -> None:
        import asyncio

        self.log_path = log_path
        self._record = record
        self._made_file = made_file
        self.terminal = stdio.terminal
        self.stdin_path: str | None = None
        self.stdout_path = stdio.stdout_path
        self.stderr_path = stdio.stderr_path
        self._stdio = stdio
        self.log_options = options
        self._dir_fd = dir_fd
        self._out = FormattedLog(
            log_fd,
            fmt=options.format,
            max_size=options.max_size,
            max_files=options.max_files,
            dir_fd=dir_fd,
            name=log_path.name,
        )
        self._streams: dict[int, str] = {}
        self._ids = {"container_id": container_id, "process_id": process_id}
        self._loop = asyncio.get_running_loop()
        self._reading: set[int] = set()
        self._drained = asyncio.Event()
        self._closed = False
        for name, stream in (("stdout", stdio.stdout), ("stderr", stdio.stderr)):
            if stream is not None:
                fd = getattr(stream, "fileno", -1)
                if isinstance(fd, int) and fd >= 0:
                    self._loop.add_reader(fd, self._readable, fd)
                    self._reading.add(fd)
                    self._streams[fd] = name
        if not self._reading:
            self._drained.set()

    # -- the StdioSet shape ---------------------------------------------------

    @property
    def stdin(self) -> None:
        return None

    @property
    def stdout(self) -> ByteReceiveStream:
        return self._stdio.stdout

    @property
    def stderr(self) -> ByteReceiveStream | None:
        return self._stdio.stderr

    def started(self) -> None:
        """The process started: from now on end-of-file means its side is done."""
        self._stdio.started()

    def close(self) -> None:
        """Stop copying and close our ends (what is unread stays in the FIFOs
        for a later reader) and the log file (idempotent)."""
        self._stop_all()
        self._stdio.close()
        self._close_log()

    def remove(self) -> None:
        """Stop copying, close everything and remove the FIFOs and the
        record of the log file (idempotent)."""
        self._stop_all()
        self._stdio.remove()
        self._close_log()
        with contextlib.suppress(OSError):
            os.unlink(self._record)

    def discard(self) -> None:
        """:meth:`remove`, for a process that was never created: the log
        file goes too if this pump made it."""
        self.remove()
        if self._made_file:
            with contextlib.suppress(OSError):
                os.unlink(self.log_path)

    # -- draining -------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Bytes read but not written (the file could not take them)."""
        return self._out.dropped

    @property
    def drained(self) -> bool:
        """True once both streams reached end-of-file (or the pump closed)."""
        return self._drained.is_set()

    async def wait_drained(self, limit: float) -> bool:
        """Wait until everything the process wrote is in the file (both
        FIFOs at end-of-file), at most ``limit`` seconds; whether it is."""
        import anyio

        if self._drained.is_set():
            return True
        with anyio.move_on_after(limit):
            await self._drained.wait()
        if not self._drained.is_set():
            _log.warning("process.log_not_drained", limit=limit, **self._ids)
        return self._drained.is_set()

    def _readable(self, fd: int) -> None:
        try:
            data = os.read(fd, _CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            _log.warning("process.log_read_failed", error=str(exc), **self._ids)
            self._stop(fd)
            return
        if not data:
            self._stop(fd)
            return
        failed = self._out.failed
        self._out.write(self._streams.get(fd, "stdout"), data)
        if failed is None and self._out.failed is not None:
            _log.error(
                "process.log_write_failed",
                path=str(self.log_path),
                error=str(self._out.failed),
                **self._ids,
            )

    def _stop(self, fd: int) -> None:
        if fd in self._reading:
            self._reading.discard(fd)
            with contextlib.suppress(Exception):
                self._loop.remove_reader(fd)
        if not self._reading:
            self._drained.set()

    def _stop_all(self) -> None:
        for fd in list(self._reading):
            self._stop(fd)
        self._drained.set()

    def _close_log(self) -> None:
        self._out.close()
        fd, self._dir_fd = self._dir_fd, -1
        if fd >= 0:
            os.close(fd)
