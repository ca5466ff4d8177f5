"""A busybox root filesystem for test containers, built from Debian's static
busybox (package ``busybox-static``) the way ``scripts/mkrootfs.sh`` builds it:
no image registry needed, about 2 MB, ready in a fraction of a second.

Built once per busybox binary into a cache directory (named by the binary's
digest) and shared read-only by every container: :func:`supervisor.default_spec`
mounts the root read-only and gives ``/tmp`` a tmpfs of its own.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import struct
import subprocess
from pathlib import Path

from .. import errors
from .._paths import private_dir

__all__ = ["DEFAULT_BUSYBOX", "build_busybox_rootfs", "default_cache_dir"]

DEFAULT_BUSYBOX = Path("/bin/busybox")
_COMPLETE = ".complete"
_PT_INTERP = 3


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/containerd-supervisor`` (``~/.cache/...`` by default)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "containerd-supervisor"


def _dynamic(binary: bytes) -> bool:
    """True if the ELF executable asks for a program interpreter (ld.so): it
    would not run in a root filesystem without the host's libraries."""
    if binary[:4] != b"\x7fELF" or len(binary) < 64:
        return False
    is64, little = binary[4] == 2, binary[5] == 1
    end = "<" if little else ">"
    if is64:
        phoff, phentsize, phnum = struct.unpack_from(f"{end}Q14xHH", binary, 0x20)
    else:
        phoff, phentsize, phnum = struct.unpack_from(f"{end}I10xHH", binary, 0x1C)
    for i in range(phnum):
        offset = phoff + i * phentsize
        if offset + 4 > len(binary):
            break
        (p_type,) = struct.unpack_from(f"{end}I", binary, offset)
        if p_type == _PT_INTERP:
            return True
    return False


def build_busybox_rootfs(cache_dir: Path | None = None, busybox: Path = DEFAULT_BUSYBOX) -> Path:
    """A root filesystem of ``busybox`` and its applets; built once, then reused.

    Args:
        cache_dir: where the rootfs goes (default :func:`default_cache_dir`).
        busybox: a statically linked busybox.

    Returns:
        The rootfs directory (``<cache_dir>/busybox-<digest>``).

    Raises:
        FailedPrecondition: no such busybox, or one linked dynamically.
    """
    try:
        data = busybox.read_bytes()
    except OSError as exc:
        raise errors.FailedPrecondition(
            f"no busybox at {busybox} ({exc.strerror}): install the busybox-static package"
        ) from None
    if _dynamic(data):
        raise errors.FailedPrecondition(
            f"{busybox} is linked dynamically: install the busybox-static package"
        )
    cache = private_dir(cache_dir or default_cache_dir(), 0o755)
    target = cache / f"busybox-{hashlib.sha256(data).hexdigest()[:16]}"
    if (target / _COMPLETE).exists():
        return target
    listed = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, timeout=30, check=False
    )
    if listed.returncode != 0:
        raise errors.FailedPrecondition(f"{busybox} --list failed: {listed.stderr.strip()}")
    # Built beside the target and renamed into place: a session that dies
    # halfway leaves only a temporary directory, never a half-made rootfs.
    tmp = cache / f".tmp-{secrets.token_hex(4)}"
    try:
        for sub in ("bin", "dev", "proc", "sys", "tmp", "etc", "root", "run", "var"):
            (tmp / sub).mkdir(parents=True, mode=0o755)
        (tmp / "tmp").chmod(0o1777)
        (tmp / "bin" / "busybox").write_bytes(data)
        (tmp / "bin" / "busybox").chmod(0o755)
        for applet in listed.stdout.split():
            # A link named busybox would replace the binary with a loop.
            if applet != "busybox" and "/" not in applet:
                (tmp / "bin" / applet).symlink_to("busybox")
        (tmp / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (tmp / "etc" / "group").write_text("root:x:0:\n")
        (tmp / _COMPLETE).touch()
        try:
            tmp.rename(target)
        except OSError:
            if not (target / _COMPLETE).exists():  # not another session's, finished meanwhile
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
