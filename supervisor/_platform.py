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
runc's state        beside a private containerd's socket none (runhcs)
bundle ownership    a user namespace's remapped root     none (no uid/gid)
exec defaults       cwd ``/``, uid/gid 0                 cwd ``C:\\``
update_resources    sent to the shim                     logged as not supported (as moby)
summary() details   ``/proc`` of each pid                runhcs ``ProcessDetails``
==================  ===================================  ==================================

Nothing here touches a Linux-only (or Windows-only) attribute at import
time: :func:`detect` reads only ``sys.platform``.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_RUNTIME",
    "IS_WINDOWS",
    "Instance",
    "LINUX_ADDRESS",
    "PLATFORM",
    "Platform",
    "RUNC_RUNTIME",
    "RUNHCS_RUNTIME",
    "SIGKILL",
    "SIGTERM",
    "SYSTEM_INSTANCE",
    "WINDOWS_ADDRESS",
    "default_process_fields",
    "default_runtime_options",
    "default_spec_section",
    "default_state_dir",
    "detect",
    "instance_of",
    "instance_scope",
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


# ---- which containerd: what two containerds on one machine must not share ----
#
# containerd keeps its own metadata, shim state and bundles under its root and
# state directories, but three things are named by the client, and containerd
# only guarantees that a (namespace, id) is unique within *one* containerd:
# the bundle directory (under the client's state directory), the container's
# cgroup (``linux.cgroupsPath``) and runc's state directory (runc's
# ``--root``, which the runc shims default to the machine-wide
# ``/run/containerd/runc/<namespace>``). Two containerds with the same
# namespace and id would share all three: a create in the second fails ("container
# with given ID already exists") and its clean-up (``runc delete --force``),
# or any delete, kills the first one's processes. So each of the three is
# scoped by the containerd instance, named by its socket. The machine's
# default containerd keeps the names everybody else uses (``/<ns>/<id>``, runc's
# own root, the plain state directory), as ctr, nerdctl and dockerd do.

# Shim name -> the field of its options message that sets runc's --root.
_RUNC_ROOT_OPTION: Mapping[str, str] = {
    RUNC_RUNTIME: "root",
    "io.containerd.runc.v1": "root",
    "io.containerd.runtime.v1.linux": "runtime_root",
}


def _normal_address(address: str, platform: Platform) -> str:
    if platform.is_windows:
        # Pipe names are case-insensitive; they have no links to resolve.
        return address.lower()
    # Two spellings of one socket (a symlinked /var/run, a relative path) are
    # one containerd.
    return os.path.realpath(address)


def instance_scope(address: str, platform: Platform | None = None) -> str | None:
    """A short, stable tag for the containerd at ``address``; ``None`` for
    the platform's default containerd (see :data:`Platform.default_address`).

    The tag is the first 12 hex digits of the SHA-256 of the socket's real
    path: a valid path component and cgroup name, the same from every client
    and across restarts.
    """
    platform = platform or PLATFORM
    normal = _normal_address(address, platform)
    if normal == _normal_address(platform.default_address, platform):
        return None
    return hashlib.sha256(normal.encode("utf-8", "surrogateescape")).hexdigest()[:12]


class Instance(NamedTuple):
    """What a client's defaults take from the containerd it talks to.

    Attributes:
        scope: :func:`instance_scope` of its address (``None``: the default
            containerd, whose defaults are everybody's).
        runc_root: runc's ``--root`` for containers whose runtime options
            name none, or ``None`` for runc's own default.
    """

    scope: str | None
    runc_root: str | None


SYSTEM_INSTANCE = Instance(scope=None, runc_root=None)
"""The machine's default containerd: runc's root, ``/<ns>/<id>`` cgroups."""


def _private_dir_of(path: str) -> str | None:
    # runc, run by a root containerd, trusts its state: never in a directory
    # that somebody other than root or us could write to (a socket in /tmp).
    directory = os.path.dirname(path)
    try:
        st = os.lstat(directory)
    except OSError:
        return None
    geteuid = getattr(os, "geteuid", None)
    owners = {0} if geteuid is None else {0, geteuid()}
    if (
        not stat.S_ISDIR(st.st_mode)
        or st.st_uid not in owners
        or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    ):
        return None
    return directory


def instance_of(address: str, platform: Platform | None = None) -> Instance:
    """The :class:`Instance` for the containerd at ``address``.

    Linux, a containerd other than the default one: runc's root is ``runc``
    beside its socket, as ``/run/containerd/runc`` is beside
    ``/run/containerd/containerd.sock``. For a :class:`~supervisor.Daemon`
    that is ``state_dir/runc``: everything its runc keeps lives in its own
    directories. A socket whose directory others can write to gets runc's
    default root instead (runc's state must not be where others can plant
    files); give such a containerd a private directory, or pass ``root``
    in ``runtime_options``.
    """
    platform = platform or PLATFORM
    scope = instance_scope(address, platform)
    if scope is None or platform.is_windows:
        return Instance(scope=scope, runc_root=None)
    directory = _private_dir_of(_normal_address(address, platform))
    runc_root = None if directory is None else os.path.join(directory, "runc")
    return Instance(scope=scope, runc_root=runc_root)


def default_state_dir(
    platform: Platform | None = None,
    environ: Mapping[str, str] | None = None,
    address: str | None = None,
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

    With ``address`` naming a containerd other than the default one, its
    own ``@<scope>`` directory inside that (see :func:`instance_scope`):
    bundles are ``<state>/<namespace>/<id>``, and clients of two containerds
    using the same namespace and id must not remove each other's. ``@``
    cannot begin a namespace, so the name never meets a namespace's directory.
    """
    platform = platform or PLATFORM
    base = _base_state_dir(platform, os.environ if environ is None else environ)
    scope = None if address is None else instance_scope(address, platform)
    return base if scope is None else base / f"@{scope}"


def _base_state_dir(platform: Platform, env: Mapping[str, str]) -> Path:
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


def default_runtime_options(
    runtime: str, options: Mapping[str, Any] | None, instance: Instance | None
) -> Mapping[str, Any] | None:
    """``options`` with runc's root set for ``instance`` when a runc shim's
    options name none (the caller's own ``root``/``runtime_root`` wins)."""
    if instance is None or instance.runc_root is None:
        return options
    key = _RUNC_ROOT_OPTION.get(runtime)
    if key is None or (options is not None and key in options):
        return options
    return {**(options or {}), key: instance.runc_root}


def default_spec_section(
    spec: dict[str, Any],
    namespace: str,
    container_id: str,
    platform: Platform | None = None,
    instance: Instance | None = None,
) -> None:
    """Fill in the defaults the library adds to a checked spec, in place.

    Linux: ``linux.cgroupsPath`` unless set: ``/<namespace>/<id>`` for the
    default containerd (``instance`` ``None`` or without a scope), else
    ``/containerd-<scope>/<namespace>/<id>``: runc's delete kills whatever
    is in the container's cgroup, so two containerds' containers of the same
    namespace and id must never share one. Windows: nothing; above all no
    ``linux`` section, which would make hcsshim run the container as a Linux
    one in a utility VM (LCOW).
    """
    platform = platform or PLATFORM
    if platform.spec_section == "linux":
        scope = instance.scope if instance is not None else None
        parent = "" if scope is None else f"/containerd-{scope}"
        linux = spec.setdefault("linux", {})
        linux.setdefault("cgroupsPath", f"{parent}/{namespace}/{container_id}")


def default_process_fields(platform: Platform | None = None) -> dict[str, Any]:
    """What an exec inherits when the container's process spec leaves it out.

    Linux: cwd ``/`` and root (uid/gid 0). Windows: cwd ``C:\\`` (containerd's
    own Windows default) and no uid/gid, which hcsshim does not read.
    """
    platform = platform or PLATFORM
    if platform.is_windows:
        return {"cwd": "C:\\"}
    return {"cwd": "/", "user": {"uid": 0, "gid": 0}}
