"""The config file containerd is started with, written afresh at every start.

It points containerd's root, state, socket and debug socket into the two
directories given to the Daemon and disables what an embedded containerd
has no use for. The legacy v1 shim is told runc's root here; the runc v2
shims only take it per container, from the client (see
:func:`supervisor._platform.instance_of`), which puts it at the same place.
"""

from __future__ import annotations

from pathlib import Path

from .._paths import write_new

__all__ = ["CONTAINERD_LEVELS", "DISABLED_PLUGINS", "render", "write"]

# Our level names (Python's) in logrus' words; logrus refuses "critical".
_LOGRUS = {"warning": "warn", "critical": "fatal"}

CONTAINERD_LEVELS = frozenset({"trace", "debug", "info", "warn", "error", "fatal", "panic"}) | set(
    _LOGRUS
)
"""The log levels a Daemon accepts: logrus' names and Python's."""

# CRI is kubelet's business, not ours; the snapshotters need kernel modules
# or filesystems this kind of host rarely has, and only add warnings at boot.
DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
)


def _quote(value: str | Path) -> str:
    # TOML basic strings share JSON's escapes for what a path can hold; a
    # control character other than tab must be escaped too.
    out = []
    for c in str(value):
        if c in '"\\':
            out.append("\\" + c)
        elif c != "\t" and (ord(c) < 0x20 or ord(c) == 0x7F):
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def render(
    *,
    root: Path,
    state: Path,
    address: str,
    debug_address: str,
    log_level: str,
    runc_root: Path | None = None,
) -> str:
    """The TOML text of containerd's config (config version 2)."""
    v1_shim = (
        []
        if runc_root is None
        else [
            "",
            '[plugins."io.containerd.runtime.v1.linux"]',
            f"  runtime_root = {_quote(runc_root)}",
        ]
    )
    return "\n".join(
        [
            "# Written by containerd-supervisor; rewritten at every start.",
            "version = 2",
            f"root = {_quote(root)}",
            f"state = {_quote(state)}",
            f"disabled_plugins = [{', '.join(_quote(p) for p in DISABLED_PLUGINS)}]",
            "",
            "[grpc]",
            f"  address = {_quote(address)}",
            "",
            "[debug]",
            f"  address = {_quote(debug_address)}",
            f"  level = {_quote(_LOGRUS.get(log_level, log_level))}",
            *v1_shim,
            "",
        ]
    )


def write(
    path: Path,
    *,
    root: Path,
    state: Path,
    address: str,
    debug_address: str,
    log_level: str,
    runc_root: Path | None = None,
) -> None:
    """Write the config to ``path`` atomically: a new file (``O_EXCL``, never
    through a symlink) renamed over the old one.

    Raises:
        OSError: it could not be written.
    """
    text = render(
        root=root,
        state=state,
        address=address,
        debug_address=debug_address,
        log_level=log_level,
        runc_root=runc_root,
    )
    write_new(path, text.encode())
