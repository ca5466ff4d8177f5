"""A process's output appended to its log file by a logger that the shim runs.

With ``log_writer="logger"`` the task's stdio is containerd's ``binary://``
URI: the runc shim starts a small logger process (this module's
:data:`LOGGER_SOURCE`, run by this interpreter, standard library only) with
the process's stdout and stderr pipes as fds 3 and 4, and waits until it is
ready (it closes fd 5). The logger lives beside the shim, not in the
application: the output never waits for the application, whether it is up,
down or gone for good.

The shim keeps the pipes' write ends until the task is deleted, so the logger
cannot see the process's end by itself. ``wait()`` asks it: a line with a
fresh token on the logger's control FIFO (``<prefix>-ctl``, made by the
library) makes it read both pipes until they are empty and then write ``ok``
into ``<prefix>-ack-<token>``, a FIFO the library opened for reading first.
Once the process has exited nothing more can arrive, so an empty pipe means
every byte is in the file. On a terminal the process writes to the
terminal, not to the pipe, and the shim copies the terminal's output into the
pipe, after the exit too: there the line is ``<token> eof``, and the logger
answers once stdout reached end-of-file (the shim closes it when that copy
ends). The logger exits when the shim closes the pipes
(the task's delete, which waits for it) and ignores SIGTERM, which the shim
sends after closing them, so it always drains to the end first.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, urlsplit

from .. import errors
from ._log_options import RAW_OPTIONS, LogOptions

if TYPE_CHECKING:
    from anyio.abc import ByteReceiveStream

__all__ = [
    "LOGGER_SOURCE",
    "LoggerStdio",
    "logger_script",
    "logger_stdio_for",
    "make_logger_stdio",
]

_LOGGER_MAIN = r"""
import re, select, signal, sys

_CHUNK = 65536
_TOKEN = re.compile(rb"[0-9a-f]{16}")
_NAMES = {3: "stdout", 4: "stderr"}


def _copy(fd, out, streams):
    # One chunk; False at end-of-file (the stream is then closed).
    try:
        data = os.read(fd, _CHUNK)
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        data = b""
    if not data:
        streams.discard(fd)
        os.close(fd)
        return False
    out.write(_NAMES.get(fd, "stdout"), data)
    return True


def _drain(streams, out):
    for fd in list(streams):
        while fd in streams:
            try:
                data = os.read(fd, _CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                streams.discard(fd)
                os.close(fd)
                break
            out.write(_NAMES.get(fd, "stdout"), data)


def _ack_all(prefix, tokens):
    while tokens:
        _ack(prefix, tokens.pop())


def _ack(prefix, token):
    flags = os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(prefix + b"-ack-" + token, flags)
    except OSError:
        return
    try:
        os.write(fd, b"ok\n")
    except OSError:
        pass
    finally:
        os.close(fd)


def _options(prefix):
    # The library's record beside the control FIFO says how the file is
    # written; without one (or an unreadable one), raw and unrotated.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(prefix + b"-log", flags)
        try:
            data = os.read(fd, 4097) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
        finally:
            os.close(fd)
    except OSError:
        data = b""
    return parse_options(data.split(b"\n")[2] if data.count(b"\n") >= 2 else b"")


def _open_out(log_path, fmt, max_size, max_files):
    # The file relative to its directory's fd, never through a link; the
    # directory stays open for rotating in it.
    directory, name = os.path.split(log_path)
    try:
        dir_fd = os.open(directory or b".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return FormattedLog(-1)
    try:
        out = _open_append(os.fsdecode(name), dir_fd)
        if not stat.S_ISREG(os.fstat(out).st_mode):
            os.close(out)
            out = -1
    except OSError:
        out = -1  # still drain the pipes, or the process would block
    return FormattedLog(
        out, fmt=fmt, max_size=max_size, max_files=max_files, dir_fd=dir_fd,
        name=os.fsdecode(name),
    )


_stopping = []


def _stop(signum, frame):
    _stopping.append(signum)


def main():
    # The shim closes its ends of the pipes, then sends SIGTERM: what is
    # left is read to the end (or to what a leftover child still holds
    # open), then the logger exits, instead of waiting for an end-of-file
    # that such a child would put off until the shim's SIGKILL.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log_path, prefix = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2])
    out = _open_out(log_path, *_options(prefix))
    try:
        ctl = os.open(prefix + b"-ctl", os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        ctl = -1
    try:
        os.close(5)  # ready: the shim goes on
    except OSError:
        pass  # no ready pipe given: copy all the same, or the process would block
    streams = {3, 4}
    for fd in streams:
        os.set_blocking(fd, False)
    pending = b""
    # Drains asked to wait for stdout's end-of-file (a terminal's output,
    # which the shim copies out of the terminal after the exit is known).
    at_eof = []
    while streams:
        if _stopping:
            _drain(streams, out)
            _ack_all(prefix, at_eof)
            return
        if 3 not in streams:
            _ack_all(prefix, at_eof)
        watched = list(streams) + ([ctl] if ctl >= 0 else [])
        try:
            ready, _, _ = select.select(watched, [], [], 0.5)
        except InterruptedError:
            continue
        for fd in ready:
            if fd != ctl:
                if fd in streams:
                    _copy(fd, out, streams)
                continue
            try:
                pending += os.read(ctl, 4096)
            except (BlockingIOError, InterruptedError):
                continue
            *lines, pending = pending.split(b"\n")
            pending = pending[-64:]
            for line in lines:
                token, _, wait = line.partition(b" ")
                if _TOKEN.fullmatch(token) and wait in (b"", b"eof"):
                    _drain(streams, out)
                    if wait and 3 in streams:
                        at_eof.append(token)
                    else:
                        _ack(prefix, token)
    _ack_all(prefix, at_eof)
    if ctl >= 0:
        os.close(ctl)  # what asks from now on learns at once that we are gone


main()
"""

# The script the shim runs: the format writer's own source (one writer for
# both log writers), then the logger's loop.
LOGGER_SOURCE = (
    Path(__file__).with_name("_log_writer.py").read_text(encoding="utf-8") + _LOGGER_MAIN
)


def logger_script(state_dir: Path) -> Path:
    """The logger, written once per interpreter and source under the state
    directory (content-addressed: never changed while a shim may run it)."""
    executable = sys.executable
    if not executable or not os.path.isabs(executable) or any(c.isspace() for c in executable):
        raise errors.FailedPrecondition(
            f"log_writer='logger' needs an interpreter path without spaces, not {executable!r}"
        )
    text = f"#!{executable} -IS\n{LOGGER_SOURCE}".encode()
    digest = hashlib.sha256(text).hexdigest()[:16]
    from .._paths import private_dir, write_new

    directory = state_dir / ".logger"
    script = directory / f"logger-{digest}.py"
    try:
        private_dir(directory)
        try:
            st = os.lstat(script)
        except FileNotFoundError:
            write_new(script, text, mode=0o755)
            return script
    except OSError as exc:
        raise errors.from_os_error(exc, f"cannot write the logger script {script}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise errors.FailedPrecondition(f"{script} is not a regular file")
    return script


def _uri(script: Path, log_path: Path, prefix: Path) -> str:
    # containerd passes each query pair to the logger as two arguments (in
    # no fixed order across pairs, so there is exactly one pair).
    key = quote(os.fsencode(log_path), safe="/")
    value = quote(os.fsencode(prefix), safe="/")
    return f"binary://{quote(str(script), safe='/')}?{key}={value}"


class LoggerStdio:
    """The ``StdioSet`` shape of a process whose output a shim-run logger
    writes: no streams of ours, only the names, and the way to ask the
    logger whether it has written everything.

    Attributes:
        log_path: the file the logger appends to.
    """

    def __init__(
        self,
        uri: str,
        log_path: Path,
        prefix: Path,
        *,
        terminal: bool,
        made_file: bool = False,
        options: LogOptions = RAW_OPTIONS,
    ) -> None:
        self.log_path = log_path
        self.log_options = options
        self.terminal = terminal
        self.stdin_path: str | None = None
        self.stdout_path = uri
        self.stderr_path: str | None = uri
        self._prefix = prefix
        # Whether the library made the log file for this process: a create
        # that fails removes it again.
        self._made_file = made_file

    @property
    def files(self) -> list[Path]:
        """What the library made for the process (removed with it)."""
        return [self._ctl, self._record]

    @property
    def _ctl(self) -> Path:
        return Path(f"{self._prefix}-ctl")

    @property
    def _record(self) -> Path:
        return Path(f"{self._prefix}-log")

    @property
    def stdin(self) -> None:
        return None

    @property
    def stdout(self) -> ByteReceiveStream:
        raise errors.FailedPrecondition(f"the output goes to {self.log_path} through a logger")

    @property
    def stderr(self) -> None:
        return None

    def started(self) -> None:
        """Nothing to do: the logger holds the pipes."""

    def close(self) -> None:
        """Nothing of ours is open."""

    def remove(self) -> None:
        """Remove the control FIFO and the record (idempotent)."""
        for path in self.files:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def discard(self) -> None:
        """:meth:`remove`, for a process that was never created."""
        self.remove()
        if self._made_file:
            with contextlib.suppress(OSError):
                os.unlink(self.log_path)

    @property
    def drained(self) -> bool:
        return False

    async def wait_drained(self, limit: float) -> bool:
        """Ask the logger to empty the pipes into the file and wait for its
        answer, at most ``limit`` seconds; whether it answered (a logger that
        is gone has written everything it ever will)."""
        from ._logger_drain import ask_drained

        return await ask_drained(
            self._prefix, terminal=self.terminal, limit=limit, log_path=self.log_path
        )


def make_logger_stdio(
    state_dir: Path,
    bundle_dir: Path,
    name: str,
    log_path: Path,
    *,
    terminal: bool,
    made_file: bool = False,
    options: LogOptions = RAW_OPTIONS,
) -> LoggerStdio:
    """The logger's script, its control FIFO and the record (which tells
    the logger the format and rotation too), for a process about to be
    created; nothing is left if this fails."""
    from ._log_pump import write_log_record

    script = logger_script(state_dir)
    prefix = bundle_dir / name
    uri = _uri(script, log_path, prefix)
    stdio = LoggerStdio(
        uri, log_path, prefix, terminal=terminal, made_file=made_file, options=options
    )
    try:
        os.mkfifo(stdio._ctl, 0o600)
        write_log_record(stdio._record, log_path, options)
    except BaseException:
        stdio.remove()
        raise
    return stdio


_PREFIX = re.compile(r"(?:init|exec\.(?P<id>.+))\.[0-9a-f]{8}")


def logger_stdio_for(
    bundle_dir: Path, process_id: str, *, init: bool, uri: str, terminal: bool
) -> LoggerStdio | None:
    """The logger stdio containerd's record names, if it is ours for this
    process: the prefix must be exactly what our naming derives in
    ``bundle_dir``, and the log file is read from our own record, never
    from the URI."""
    from ._log_pump import read_log_options

    if not uri.startswith("binary://"):
        return None
    try:
        pairs = parse_qsl(urlsplit(uri).query, keep_blank_values=True)
    except ValueError:
        return None
    if len(pairs) != 1:
        return None
    prefix = Path(pairs[0][1])
    if prefix.parent != bundle_dir:
        return None
    match = _PREFIX.fullmatch(prefix.name)
    if match is None or (match.group("id") is None) != init:
        return None
    if not init and match.group("id") != process_id:
        return None
    found = read_log_options(Path(f"{prefix}-log"))
    if found is None:
        return None
    return LoggerStdio(uri, found[0], prefix, terminal=terminal, options=found[1])
