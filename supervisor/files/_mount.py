"""A snapshot's mounts made into a directory fd and nothing else: mounted on
a private directory under the state directory, opened, and detached at once
(``umount2(MNT_DETACH)``). The open fd keeps the detached mount alive and is
its only reference: closing it (or the process ending) releases it, so no
mount is left behind whatever happens to the caller."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import errors

__all__ = ["open_detached"]

_MS_RDONLY = 0x1
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_REMOUNT = 0x20
_MNT_DETACH = 0x2
_FLAGS = {"ro": _MS_RDONLY, "bind": _MS_BIND, "rbind": _MS_BIND | _MS_REC}
_IGNORED = {"rw", "private", "rprivate"}

_libc: Any = None


def _c() -> Any:
    # Loaded on use: the package is imported on Windows too.
    import ctypes
    import ctypes.util

    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        import ctypes

        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _flags_and_data(options: Sequence[str], readonly: bool) -> tuple[int, str]:
    flags = _MS_RDONLY if readonly else 0
    data = []
    for option in options:
        if option in _FLAGS:
            flags |= _FLAGS[option]
        elif option not in _IGNORED:
            data.append(option)
    return flags, ",".join(data)


def open_detached(
    mounts: Sequence[Any], scratch: Path, *, readonly: bool, container_id: str
) -> int:
    """An fd of the root of ``mounts`` (containerd's mounts of a snapshot:
    one ``overlay`` or ``bind`` mount, with ``type``, ``source`` and
    ``options``), mounted under ``scratch`` and detached before returning.

    Raises:
        FailedPrecondition: not one mount, or the mount was refused.
    """
    if len(mounts) != 1:
        raise errors.FailedPrecondition(
            f"the snapshot has {len(mounts)} mounts: one is expected", container_id=container_id
        )
    mount = mounts[0]
    flags, data = _flags_and_data(tuple(mount.options), readonly)
    kind = None if flags & _MS_BIND else os.fsencode(mount.type)
    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = scratch / f"mnt-{secrets.token_hex(8)}"
    target.mkdir(mode=0o700)
    try:
        path = os.fsencode(target)
        rc = _c().mount(os.fsencode(mount.source), path, kind, flags, data.encode() or None)
        _check(rc, f"mount {mount.type} on {target}")
        fd = -1
        try:
            if readonly and flags & _MS_BIND:
                # A bind mount takes MS_RDONLY only on a remount.
                rc = _c().mount(None, path, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY, None)
                _check(rc, f"remount {target} read-only")
            fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        finally:
            if _c().umount2(path, _MNT_DETACH) != 0 and fd >= 0:
                os.close(fd)
                fd = -1
                _check(-1, f"umount {target}")
        return fd
    except OSError as exc:
        raise errors.FailedPrecondition(
            f"cannot mount the container's snapshot: {exc}", container_id=container_id
        ) from exc
    finally:
        with contextlib.suppress(OSError):
            target.rmdir()
