"""Network namespaces the library makes and owns, as ``ip netns`` does.

A namespace lives as long as something refers to it.  Here that is a bind
mount of the namespace's nsfs file over an empty file under the state
directory: a thread of our own unshares its network namespace, brings its
loopback up, bind-mounts ``/proc/thread-self/ns/net`` on the file and then
ends, so the mount is the namespace's only reference.  Removing it (unmount,
unlink) ends the namespace and with it every interface in it (a veth's host
end goes too).

The thread is a fresh one, never a pooled worker: a worker left in another
namespace would give whoever runs on it next the wrong network.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from .. import errors

if TYPE_CHECKING:
    import ctypes

__all__ = ["create_netns", "is_netns_mount", "list_mounts_under", "remove_netns"]

_CLONE_NEWNET = 0x40000000
_MS_BIND = 0x1000
_MNT_DETACH = 0x2
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    # Imported here: the package is imported on Windows too, where these are not.
    import ctypes
    import ctypes.util

    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _errno() -> int:
    import ctypes

    return ctypes.get_errno()


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = _errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _loopback_up() -> None:
    import fcntl  # Linux only: the package is imported on Windows too

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, _SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _make(target: str) -> None:
    """In a fresh thread: new namespace, loopback up, mounted on ``target``."""
    failure: list[BaseException] = []

    def body() -> None:
        try:
            _check(_c().unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            _loopback_up()
            _check(
                _c().mount(b"/proc/thread-self/ns/net", os.fsencode(target), None, _MS_BIND, None),
                f"bind mount on {target}",
            )
        except BaseException as exc:  # noqa: BLE001 - carried to the caller's thread
            failure.append(exc)
        # The thread ends here, dropping its hold on the namespace: only the
        # mount keeps it.

    thread = threading.Thread(target=body, name="supervisor-netns", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _create(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444)
    os.close(fd)
    try:
        _make(str(path))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def is_netns_mount(path: Path) -> bool:
    """Whether ``path`` is a mounted network namespace (nsfs file)."""
    try:
        st = os.stat(path)
        parent = os.stat(path.parent)
    except OSError:
        return False
    return st.st_dev != parent.st_dev


def _remove(path: Path) -> None:
    rc = _c().umount2(os.fsencode(str(path)), _MNT_DETACH)
    if rc != 0:
        e = _errno()
        # EINVAL: not a mount point (made, never mounted; or unmounted already).
        if e not in (errno.EINVAL, errno.ENOENT):
            raise OSError(e, f"umount {path}: {os.strerror(e)}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


async def create_netns(path: Path) -> None:
    """Make a network namespace (loopback up) pinned at ``path``, which must
    not exist.  On failure nothing is left at ``path``.

    Raises:
        AlreadyExists: ``path`` exists.
        FailedPrecondition: the kernel refused (not root, no CAP_SYS_ADMIN).
    """
    try:
        # Not cancellable midway (a thread): the call is short, and the
        # caller's cleanup finds the file and removes it either way.
        await anyio.to_thread.run_sync(_create, path)
    except OSError as exc:
        raise errors.from_os_error(exc, f"cannot make network namespace {path}") from exc


async def remove_netns(path: Path) -> None:
    """Unmount and unlink ``path``: the namespace ends when nothing else (a
    process, another mount) holds it.  Idempotent."""
    try:
        await anyio.to_thread.run_sync(_remove, path)
    except OSError as exc:
        raise errors.from_os_error(exc, f"cannot remove network namespace {path}") from exc


def list_mounts_under(directory: Path) -> list[Path]:
    """Mount points under ``directory`` (from /proc/self/mountinfo)."""
    prefix = str(directory).rstrip("/") + "/"
    out = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split(" ")
                if len(fields) > 4:
                    mount_point = _unescape(fields[4])
                    if mount_point.startswith(prefix):
                        out.append(Path(mount_point))
    except OSError:
        return []
    return out


def _unescape(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 3 < len(text) + 0 and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
