"""The daemon's directories and files: made by us, checked, never followed.

The state directory holds what decides which process root signals (the pid
file) and what containerd is started with (its config): another user able to
write there, or a symlink planted there, would turn the supervisor against
files and processes that are not its own. So the root and state directories,
and every parent of them that we create, must belong to us and be writable
by nobody else; and every file in them is opened without following a
symlink, and must be a regular file of ours.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .. import _platform, errors
from .._paths import check_owned, private_dir

__all__ = ["open_regular", "owned_dir", "remove_empty_scope_dir"]


def owned_dir(path: Path, mode: int = 0o711) -> None:
    """``mkdir -p path`` where every level made gets ``mode`` and must be ours,
    as ``path`` itself must, made or found (:func:`supervisor._paths.private_dir`).

    Raises:
        FailedPrecondition: ``path`` or a level we made is a symlink, not a
            directory, not ours, or writable by group or others; or a file
            stands where a directory should be.
        OSError: a directory could not be made.
    """
    private_dir(path, mode)


def open_regular(path: Path, flags: int, mode: int = 0o600) -> int:
    """Open ``path`` (``os.open`` flags) without following a symlink; the
    result must be a regular file of ours. The descriptor is close-on-exec
    and blocking.

    Raises:
        FailedPrecondition: ``path`` is a symlink, not a regular file, or
            belongs to another user.
        OSError: it could not be opened (FileNotFoundError without O_CREAT).
    """
    # O_NONBLOCK only for the open: a FIFO planted in place of a log file
    # must not hang us waiting for its other end.
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise errors.FailedPrecondition(f"{path} is a symlink; it is not followed") from None
        if exc.errno == errno.ENXIO:  # a FIFO with no reader, opened for writing
            raise errors.FailedPrecondition(f"{path} is not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise errors.FailedPrecondition(f"{path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise errors.FailedPrecondition(
                f"{path} belongs to uid {st.st_uid}, not to this process (uid {os.geteuid()})"
            )
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def remove_empty_scope_dir(address: str) -> None:
    """Remove the ``@<scope>`` directory that clients of the containerd at
    ``address`` make in the default state directory
    (:func:`supervisor._platform.default_state_dir`), if it is empty and
    ours; called by a Daemon that stops while it still holds its lock, so no
    other Daemon can be running that containerd. A directory with anything
    in it (a container's bundle, an exit record, supervision state) is for
    the next run and stays; a client that comes later makes it again.
    """
    directory = _platform.default_state_dir(address=address)
    if directory == _platform.default_state_dir():
        return  # the machine's default containerd's: everybody's
    try:
        check_owned(directory)
        os.rmdir(directory)
    except errors.FailedPrecondition:
        pass  # a link, not a directory, or not ours
    except OSError:
        pass  # not empty (or gone meanwhile): not ours to empty
