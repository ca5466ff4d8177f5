"""Log files written by the shim (``run --log-path``): checked before use,
recorded in our own state directory, opened without following links,
printed and followed.

Which file is a container's log is remembered under the state directory,
``<state>/.cli-logs/<namespace>/<container id>`` (``.cli-logs`` cannot be a
namespace), never read back from a containerd label: any client of
containerd can write labels, and the path decides what root reads out
(``logs``) or has the shim append to (``start``).
"""

from __future__ import annotations

import argparse
import errno
import os
import stat
from pathlib import Path

import anyio

from .. import errors
from .._ids import validate_id
from .._paths import private_dir, read_small, write_new
from ._errors import CliError
from ._terminal import write_all

__all__ = [
    "check_log_path",
    "follow",
    "forget_log_path",
    "open_log",
    "print_available",
    "record_log_path",
    "recorded_log_path",
]

_POLL = 0.2
_CHUNK = 65536


def check_log_path(path: str) -> str:
    """A path the shim may append to: absolute, and if something is there
    already, a regular file (not a link: the shim would follow it)."""
    if not os.path.isabs(path) or "\0" in path:
        raise CliError(f"--log-path {path!r} must be an absolute path")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise CliError(f"--log-path {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CliError(f"--log-path {path} exists and is not a regular file")
    return path


def _record(args: argparse.Namespace, container_id: str) -> Path:
    from .._platform import default_state_dir

    namespace = validate_id(args.namespace, kind="namespace")
    validate_id(container_id, kind="container id")
    # The same directory the command's client uses: scoped by the containerd,
    # so two containerds' containers of one name keep their own records.
    base = Path(args.state_dir) if args.state_dir else default_state_dir(address=args.address)
    return base / ".cli-logs" / namespace / container_id


def record_log_path(args: argparse.Namespace, container_id: str, path: str) -> None:
    """Remember ``path`` as the container's log file (``run --log-path``)."""
    record = _record(args, container_id)
    try:
        private_dir(record.parent)
        write_new(record, path.encode())
    except (OSError, errors.SupervisorError) as exc:
        raise CliError(f"cannot record the log path of {container_id}: {exc}") from None


def recorded_log_path(args: argparse.Namespace, container_id: str) -> str | None:
    """The container's log file as ``run --log-path`` recorded it, if it did."""
    try:
        data = read_small(_record(args, container_id), 4096)
    except OSError:
        return None
    # Checked by whoever uses it: open_log() to read, check_log_path() before
    # the shim is given it again.
    return data.decode("utf-8", errors="replace")


def forget_log_path(args: argparse.Namespace, container_id: str) -> None:
    """The container is gone: so is the record of its log file."""
    try:
        _record(args, container_id).unlink(missing_ok=True)
    except (OSError, errors.SupervisorError):
        pass


def open_log(path: str) -> int:
    """Our fd on the log file at ``path``: never through a symlink, never
    anything but a regular file (a FIFO would block, a device would be read)."""
    if not os.path.isabs(path):
        raise CliError(f"the recorded log path {path!r} is not absolute; refusing it")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CliError(f"the log path {path} is a symbolic link; refusing it") from None
        raise CliError(f"cannot open the log file {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CliError(f"the log path {path} is not a regular file; refusing it")
    except BaseException:
        os.close(fd)
        raise
    return fd


def print_available(fd: int, out: int) -> None:
    """Copy what the file holds past our position to ``out``; start again
    from the top if it was truncated under us."""
    if os.fstat(fd).st_size < os.lseek(fd, 0, os.SEEK_CUR):
        os.lseek(fd, 0, os.SEEK_SET)
    while True:
        data = os.read(fd, _CHUNK)
        if not data:
            return
        write_all(out, data)


async def follow(fd: int, out: int, done: anyio.Event) -> None:
    """Keep copying what is appended until ``done`` is set, then copy the rest."""
    while not done.is_set():
        print_available(fd, out)
        with anyio.move_on_after(_POLL):
            await done.wait()
    print_available(fd, out)
