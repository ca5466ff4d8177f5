"""One process's stdio FIFOs: made and opened before containerd's shim sees
them, removed with the process, and never leaked on an error path.

Files are ``<directory>/<name>-stdin|stdout|stderr``: stdin only when asked
for, stderr only without a terminal (a terminal's output is all on stdout).

Why each end is opened the way it is:

* stdout/stderr: our read end is opened ``O_RDONLY|O_NONBLOCK`` first, so the
  shim's blocking open for writing succeeds at once.  A FIFO with no writer
  reads as end-of-file, and the shim's writer may come later (an exec's at its
  Start), so until :meth:`FifoSet.started` we also hold a write end of our own
  ("keep-alive"); after that, EOF means the process's side is done.
* stdin: opening for writing alone fails (ENXIO) while nobody reads, so we
  open ``O_RDWR``, which Linux allows on a FIFO and which never blocks: the
  caller can write before the shim attaches.  Being a reader ourselves would
  also mean a write could never learn that the process is gone (no EPIPE, just
  a pipe that fills forever), so :meth:`started` swaps the fd, in place, for a
  write-only one.

FIFOs are POSIX: on Windows :meth:`FifoSet.create` refuses (the named-pipe
set is used there), and nothing here reads a POSIX-only attribute of ``os``
at import time, so the package still imports.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from types import TracebackType

from .. import errors
from ._stream import FdReceiveStream, FdSendStream

__all__ = ["FifoSet"]


def _nb() -> int:
    # Read at call time: Windows' os has neither flag, and this module must
    # still import there.
    return os.O_NONBLOCK | os.O_CLOEXEC


def _make_dirs(directory: Path, made: list[Path]) -> None:
    """mkdir -p with mode 0700 on every level made, recording each level in
    ``made`` as it is made, so a failure midway still says what to remove."""
    missing: list[Path] = []
    d = directory
    while not d.exists():
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            continue
        made.append(d)


def _mkfifo(path: Path) -> None:
    try:
        os.mkfifo(path, 0o600)
    except FileExistsError:
        # A leftover of a process nobody cleaned up (a crash): a new one
        # replaces it.  Anything that is not a FIFO is not ours to remove.
        if not stat.S_ISFIFO(os.lstat(path).st_mode):
            raise
        os.unlink(path)
        os.mkfifo(path, 0o600)


class FifoSet:
    """The stdio FIFOs of one process, with our ends open as anyio streams.

    Made by :meth:`create`; :meth:`remove` (or leaving ``with``) closes our
    ends and removes the files.

    Attributes:
        stdout: receive stream of the process's stdout (or its terminal).
        stderr: receive stream of its stderr; ``None`` with a terminal.
        stdin: send stream to its stdin; ``None`` unless asked for.
    """

    def __init__(self, directory: Path, name: str, terminal: bool, made_dirs: list[Path]) -> None:
        self.directory = directory
        self.name = name
        self.terminal = terminal
        self.stdin_path: str | None = None
        self.stdout_path = str(directory / f"{name}-stdout")
        self.stderr_path: str | None = None
        self.stdin: FdSendStream | None = None
        self.stdout: FdReceiveStream
        self.stderr: FdReceiveStream | None = None
        self._keepalive: list[int] = []
        self._files: list[Path] = []
        self._made_dirs = made_dirs
        self._removed = False

    @classmethod
    def create(cls, directory: Path, name: str, *, stdin: bool, terminal: bool) -> FifoSet:
        """Make the FIFOs under ``directory`` and open our ends.

        Raises:
            supervisor.errors.SupervisorError: the files could not be made or
                opened (the class by :func:`~supervisor.errors.from_os_error`);
                nothing is left behind.
            supervisor.errors.FailedPrecondition: the system has no FIFOs.
        """
        if not hasattr(os, "mkfifo"):
            raise errors.FailedPrecondition(
                "FIFO stdio needs a POSIX system (Windows uses named pipes)"
            )
        made_dirs: list[Path] = []
        fifos = None
        try:
            _make_dirs(directory, made_dirs)
            fifos = cls(directory, name, terminal, made_dirs)
            fifos._open(stdin=stdin)
        except BaseException as exc:
            if fifos is not None:
                fifos.remove()
            else:
                for d in reversed(made_dirs):
                    with contextlib.suppress(OSError):
                        d.rmdir()
            if isinstance(exc, OSError):
                raise errors.from_os_error(exc, f"cannot make stdio FIFOs in {directory}") from exc
            raise
        return fifos

    def _fifo(self, stream: str) -> Path:
        path = self.directory / f"{self.name}-{stream}"
        _mkfifo(path)
        self._files.append(path)
        return path

    def _reader(self, path: Path) -> FdReceiveStream:
        fd = os.open(path, os.O_RDONLY | _nb())
        try:
            self._keepalive.append(os.open(path, os.O_WRONLY | _nb()))
        except BaseException:
            # Not yet owned by a stream that close() would find.
            os.close(fd)
            raise
        return FdReceiveStream(fd)

    def _open(self, *, stdin: bool) -> None:
        if stdin:
            path = self._fifo("stdin")
            self.stdin_path = str(path)
            self.stdin = FdSendStream(os.open(path, os.O_RDWR | _nb()))
        self.stdout = self._reader(self._fifo("stdout"))
        if not self.terminal:
            path = self._fifo("stderr")
            self.stderr_path = str(path)
            self.stderr = self._reader(path)

    def started(self) -> None:
        """The process has started, so the shim holds its ends: from now on
        EOF on stdout/stderr means the process closed them."""
        keep, self._keepalive = self._keepalive, []
        for fd in keep:
            os.close(fd)
        if self.stdin is not None and self.stdin.fileno >= 0 and self.stdin_path:
            # Become a pure writer (see the module docstring); dup2 keeps the
            # fd number, so a concurrent send is not disturbed.
            with contextlib.suppress(OSError):
                wr = os.open(self.stdin_path, os.O_WRONLY | _nb())
                try:
                    os.dup2(wr, self.stdin.fileno, inheritable=False)
                finally:
                    os.close(wr)

    def close(self) -> None:
        """Close every fd of ours (idempotent)."""
        keep, self._keepalive = self._keepalive, []
        for fd in keep:
            os.close(fd)
        for s in (self.stdin, getattr(self, "stdout", None), self.stderr):
            if s is not None:
                s.close()

    def remove(self) -> None:
        """Close our fds, remove the files and any directory :meth:`create`
        made that is now empty (idempotent)."""
        self.close()
        if self._removed:
            return
        self._removed = True
        for path in self._files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        # Only directories made here: a container's bundle directory outlives
        # its processes (and may carry a user namespace's ownership).
        for d in reversed(self._made_dirs):
            with contextlib.suppress(OSError):
                d.rmdir()

    def __enter__(self) -> FifoSet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()
