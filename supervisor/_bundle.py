"""The per-container directory the library owns (its stdio FIFOs live there).

``<state>/<namespace>/<container id>``, recorded in the container's
``BUNDLE_LABEL``.  When the spec asks for a user namespace, the container's
root is some other host uid/gid; the namespace level then becomes
``<namespace>.<uid>.<gid>`` and, like the bundle itself, is owned by that
uid/gid, so the remapped root can reach it while other users cannot.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import InvalidArgument

__all__ = [
    "BUNDLE_LABEL",
    "bundle_path",
    "prepare_bundle",
    "remove_bundle",
    "remove_namespace_level",
    "remapped_root",
]

BUNDLE_LABEL = "io.containerd-supervisor.bundle"


def _host_id(mappings: object, kind: str) -> int:
    """The host id that container id 0 maps to through ``mappings``."""
    if not isinstance(mappings, Sequence):
        raise InvalidArgument(f"linux.{kind} must be a list")
    for m in mappings:
        if not isinstance(m, Mapping):
            raise InvalidArgument(f"linux.{kind} entries must be mappings")
        try:
            container_id, host_id, size = int(m["containerID"]), int(m["hostID"]), int(m["size"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"bad linux.{kind} entry {dict(m)!r}") from exc
        if container_id <= 0 < container_id + size:
            return host_id - container_id
    raise InvalidArgument(f"linux.{kind} does not map container id 0")


def remapped_root(spec: Mapping[str, Any]) -> tuple[int, int] | None:
    """Host uid/gid of the container's root when the spec has a user namespace."""
    linux = spec.get("linux")
    if not isinstance(linux, Mapping):
        return None
    namespaces = linux.get("namespaces") or []
    if not any(isinstance(n, Mapping) and n.get("type") == "user" for n in namespaces):
        return None
    return (
        _host_id(linux.get("uidMappings") or [], "uidMappings"),
        _host_id(linux.get("gidMappings") or [], "gidMappings"),
    )


def bundle_path(
    state_dir: Path, namespace: str, container_id: str, owner: tuple[int, int] | None
) -> Path:
    level = namespace if owner is None else f"{namespace}.{owner[0]}.{owner[1]}"
    return state_dir / level / container_id


def _mkdir_owned(path: Path, owner: tuple[int, int] | None) -> bool:
    """Make ``path`` 0700 (owned by ``owner``); False if it existed already."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return False
    if owner is not None:
        os.chown(path, *owner)
    return True


def prepare_bundle(path: Path, owner: tuple[int, int] | None) -> None:
    """Create the bundle directory, and its namespace level if missing; the
    state root itself only needs to be traversable (0711).

    The common case is one ``mkdir``: on a busy host every directory
    operation contends for the parent's lock with containerd's own writes.
    """
    try:
        made = _mkdir_owned(path, owner)
    except FileNotFoundError:
        root = path.parent.parent
        root.mkdir(mode=0o711, parents=True, exist_ok=True)
        _mkdir_owned(path.parent, owner)
        made = _mkdir_owned(path, owner)
    if not made:
        # A leftover of a container deleted behind our back: start it clean.
        shutil.rmtree(path, ignore_errors=True)
        _mkdir_owned(path, owner)


def remove_bundle(path: Path) -> None:
    """Remove a container's bundle directory (empty once its processes are
    deleted; anything else left in it goes too)."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def remove_namespace_level(state_dir: Path, namespace: str) -> None:
    """Remove the namespace levels of ``state_dir`` that no container uses
    any more; a client does this once, when it closes, not per container."""
    with contextlib.suppress(OSError):
        for level in state_dir.iterdir():
            name = level.name
            if name == namespace or name.startswith(f"{namespace}."):
                with contextlib.suppress(OSError):
                    level.rmdir()  # only succeeds when empty
