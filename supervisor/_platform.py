"""What differs between Linux and Windows, decided once, here.

The domain objects (Client, Container, Task, Process) never look at
``sys.platform`` themselves: they ask :data:`PLATFORM` (or the helpers below),
so every per-platform choice can be read, and tested, in one place.

==================  ===================================  ==================================
choice              Linux                                Windows
==================  ===================================  ==================================
containerd address  ``/run/containerd/containerd.sock``  ``\\\\.\\pipe\\containerd-containerd``
default runtime     ``io.containerd.runc.v2``            ``io.containerd.runhcs.v1``
process stdio       FIFOs in the bundle directory        named pipes the library serves
spec defaults       ``linux.cgroupsPath``                none (above all no ``linux``)
bundle ownership    a user namespace's remapped root     none (no uid/gid)
exec defaults       cwd ``/``, uid/gid 0                 cwd ``C:\\``
update_resources    sent to the shim                     logged as not supported (as moby)
summary() details   ``/proc`` of each pid                runhcs ``ProcessDetails``
==================  ===================================  ==================================

Nothing here touches a Linux-only (or Windows-only) attribute at import
time: :func:`detect` reads only ``sys.platform``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

from ._bundle import remapped_root

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_RUNTIME",
    "IS_WINDOWS",
    "LINUX_ADDRESS",
    "PLATFORM",
    "Platform",
    "RUNC_RUNTIME",
    "RUNHCS_RUNTIME",
    "SIGKILL",
    "SIGTERM",
    "WINDOWS_ADDRESS",
    "bundle_owner",
    "default_process_fields",
    "default_spec_section",
    "default_state_dir",
    "detect",
]

LINUX_ADDRESS = "/run/containerd/containerd.sock"
WINDOWS_ADDRESS = "\\\\.\\pipe\\containerd-containerd"
RUNC_RUNTIME = "io.containerd.runc.v2"
RUNHCS_RUNTIME = "io.containerd.runhcs.v1"

# Signal numbers as containerd carries them (a uint32 on the wire). Python's
# `signal` module has no SIGKILL on Windows, but runhcs takes Linux numbers
# and translates them: 9 terminates the process, 15 sends it CTRL_SHUTDOWN.
SIGKILL = 9
SIGTERM = 15


# A NamedTuple, not a dataclass: this module loads with `import supervisor`,
# and the dataclass machinery costs several times more to build one class.
class Platform(NamedTuple):
    """The per-platform choices (see the module docstring's table).

    Attributes:
        name: ``"linux"`` or ``"windows"``.
        default_address: where containerd listens unless told otherwise.
        default_runtime: the shim a container runs under unless told otherwise.
        stdio: ``"fifo"`` (files in the bundle directory) or ``"named-pipe"``
            (pipes served by the library, which the shim connects to).
        spec_section: the OCI spec section the runtime reads (``"linux"`` or
            ``"windows"``); the library only ever adds defaults to that one.
        owner_remap: a spec's user namespace decides who owns the bundle.
        update_resources: the shim applies ``Task.update_resources``.
        procfs: per-process details can be read from ``/proc``.
    """

    name: Literal["linux", "windows"]
    default_address: str
    default_runtime: str
    stdio: Literal["fifo", "named-pipe"]
    spec_section: Literal["linux", "windows"]
    owner_remap: bool
    update_resources: bool
    procfs: bool

    @property
    def is_windows(self) -> bool:
        return self.name == "windows"


_LINUX = Platform(
    name="linux",
    default_address=LINUX_ADDRESS,
    default_runtime=RUNC_RUNTIME,
    stdio="fifo",
    spec_section="linux",
    owner_remap=True,
    update_resources=True,
    procfs=True,
)

_WINDOWS = Platform(
    name="windows",
    default_address=WINDOWS_ADDRESS,
    default_runtime=RUNHCS_RUNTIME,
    stdio="named-pipe",
    spec_section="windows",
    owner_remap=False,
    # hcsshim's shim accepts Update, but moby never sends it on Windows (its
    # resources type there is empty), and a LinuxResources body is not what
    # a Windows container's limits are made of.
    update_resources=False,
    procfs=False,
)


def detect(sys_platform: str | None = None) -> Platform:
    """The :class:`Platform` for ``sys_platform`` (default: this interpreter's).

    Anything that is not Windows is treated as Linux: containerd's other
    platforms (FreeBSD, macOS for development) use unix sockets and FIFOs too.
    """
    value = sys.platform if sys_platform is None else sys_platform
    return _WINDOWS if value == "win32" else _LINUX


PLATFORM = detect()
"""This interpreter's platform, decided once at import."""

IS_WINDOWS = PLATFORM.is_windows
DEFAULT_ADDRESS = PLATFORM.default_address
DEFAULT_RUNTIME = PLATFORM.default_runtime


def default_state_dir(
    platform: Platform | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """Where the library keeps bundles, FIFOs and its exit ledger by default.

    Linux: ``/run/containerd-supervisor`` for root, else
    ``$XDG_RUNTIME_DIR/containerd-supervisor``, else a per-user directory
    under the temporary directory.

    Windows: ``%LOCALAPPDATA%\\containerd-supervisor`` (a per-user directory
    whose ACL keeps other users out; ``%ProgramData%`` lets any user create
    folders, so it is not used), else the per-user temporary directory. It
    must be the same across runs: the exit ledger read by
    :meth:`Client.restore` lives there.
    """
    platform = platform or PLATFORM
    env = os.environ if environ is None else environ
    if platform.is_windows:
        local = env.get("LOCALAPPDATA")
        if local:
            return Path(local) / "containerd-supervisor"
        return Path(tempfile.gettempdir()) / "containerd-supervisor"
    geteuid = getattr(os, "geteuid", None)
    if geteuid is not None and geteuid() == 0:
        return Path("/run/containerd-supervisor")
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "containerd-supervisor"
    uid = geteuid() if geteuid is not None else os.getpid()
    return Path(tempfile.gettempdir()) / f"containerd-supervisor-{uid}"


def bundle_owner(
    spec: Mapping[str, Any], platform: Platform | None = None
) -> tuple[int, int] | None:
    """Who must own a container's bundle directory: the host uid/gid of the
    container's root under a user namespace (Linux), else ``None``.

    On Windows there is no uid/gid to map, whatever the spec says.

    Raises:
        supervisor.errors.InvalidArgument: a Linux spec's id mappings are malformed.
    """
    platform = platform or PLATFORM
    if not platform.owner_remap:
        return None
    return remapped_root(spec)


def default_spec_section(
    spec: dict[str, Any], namespace: str, container_id: str, platform: Platform | None = None
) -> None:
    """Fill in the defaults the library adds to a checked spec, in place.

    Linux: ``linux.cgroupsPath`` = ``/<namespace>/<id>`` unless set. Windows:
    nothing; above all no ``linux`` section, which would make hcsshim run the
    container as a Linux one in a utility VM (LCOW).
    """
    platform = platform or PLATFORM
    if platform.spec_section == "linux":
        linux = spec.setdefault("linux", {})
        linux.setdefault("cgroupsPath", f"/{namespace}/{container_id}")


def default_process_fields(platform: Platform | None = None) -> dict[str, Any]:
    """What an exec inherits when the container's process spec leaves it out.

    Linux: cwd ``/`` and root (uid/gid 0). Windows: cwd ``C:\\`` (containerd's
    own Windows default) and no uid/gid, which hcsshim does not read.
    """
    platform = platform or PLATFORM
    if platform.is_windows:
        return {"cwd": "C:\\"}
    return {"cwd": "/", "user": {"uid": 0, "gid": 0}}
