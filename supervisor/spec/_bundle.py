"""The per-container directory the library owns (its stdio FIFOs live there).

``<state>/<namespace>/<container id>``, always derived from the state
directory, the namespace and the validated id (never read back from anything
containerd stores, which any other client could have written).  When the spec
asks for a user namespace, the container's root is some other host uid/gid;
the namespace level then becomes ``<namespace>@<uid>.<gid>`` (``@`` cannot
occur in a namespace name, so it never meets another namespace's level) and,
like the bundle itself, is owned by that uid/gid, so the remapped root can
reach it while other users cannot.

Removing a bundle changes a directory that every container of the
namespace shares: on a busy host that can wait on the filesystem for
milliseconds, so :func:`remove_bundle_async` does it in a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from .. import _paths, _platform
from ..errors import InvalidArgument

__all__ = [
    "bundle_owner",
    "bundle_path",
    "prepare_bundle",
    "remove_bundle",
    "remove_bundle_async",
    "remove_namespace_level",
    "remapped_root",
]


def _host_id(mappings: object, kind: str) -> int:
    """The host id that container id 0 maps to through ``mappings``.

    An unmapped root is refused rather than taken as host root (moby falls
    back to 0): a user namespace whose root is nobody cannot be what the
    caller meant, and running its bundle as host root would be the opposite
    of what a user namespace is for.
    """
    if not isinstance(mappings, Sequence) or isinstance(mappings, str):
        raise InvalidArgument(f"linux.{kind} must be a list")
    ranges: list[tuple[int, int, int]] = []
    for i, m in enumerate(mappings):
        if not isinstance(m, Mapping):
            raise InvalidArgument(f"linux.{kind}[{i}] must be a mapping")
        try:
            container_id, host_id, size = m["containerID"], m["hostID"], m["size"]
        except KeyError as exc:
            raise InvalidArgument(f"linux.{kind}[{i}] lacks {exc}") from None
        for v in (container_id, host_id, size):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << 32:
                raise InvalidArgument(f"linux.{kind}[{i}] needs integers in 0..2^32-1")
        if size == 0 or container_id + size > 1 << 32 or host_id + size > 1 << 32:
            raise InvalidArgument(f"linux.{kind}[{i}] is an empty or out-of-range mapping")
        ranges.append((int(container_id), int(host_id), int(size)))
    for a in range(len(ranges)):
        for b in range(a + 1, len(ranges)):
            (ca, ha, sa), (cb, hb, sb) = ranges[a], ranges[b]
            if ca < cb + sb and cb < ca + sa:
                raise InvalidArgument(f"linux.{kind}[{a}] and [{b}] overlap in their container ids")
            if ha < hb + sb and hb < ha + sa:
                raise InvalidArgument(f"linux.{kind}[{a}] and [{b}] overlap in their host ids")
    for container_id, host_id, size in ranges:
        if container_id <= 0 < container_id + size:
            return host_id - container_id
    raise InvalidArgument(f"linux.{kind} does not map container id 0 (the container's root)")


def remapped_root(spec: Mapping[str, Any]) -> tuple[int, int] | None:
    """Host uid/gid of the container's root when the spec has a user namespace."""
    linux = spec.get("linux")
    if not isinstance(linux, Mapping):
        return None
    namespaces = linux.get("namespaces") or []
    if not isinstance(namespaces, Sequence):
        raise InvalidArgument("linux.namespaces must be a list")
    if not any(isinstance(n, Mapping) and n.get("type") == "user" for n in namespaces):
        return None
    return (
        _host_id(linux.get("uidMappings") or [], "uidMappings"),
        _host_id(linux.get("gidMappings") or [], "gidMappings"),
    )


def bundle_path(
    state_dir: Path, namespace: str, container_id: str, owner: tuple[int, int] | None
) -> Path:
    level = namespace if owner is None else f"{namespace}@{owner[0]}.{owner[1]}"
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
        _paths.private_dir(root, 0o711)
        _mkdir_owned(path.parent, owner)
        made = _mkdir_owned(path, owner)
    if not made:
        # A leftover of a container deleted behind our back: start it clean.
        shutil.rmtree(path, ignore_errors=True)
        _mkdir_owned(path, owner)


def remove_bundle(state_dir: Path, path: Path) -> None:
    """Remove a container's bundle directory (empty once its processes are
    deleted; anything else left in it goes too). Never anything outside
    ``state_dir``."""
    if path.parent.parent != state_dir or path.is_symlink():
        return
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


async def remove_bundle_async(state_dir: Path, path: Path) -> None:
    """:func:`remove_bundle` in a worker thread, waited for even when the
    caller is cancelled: a removal still running when the call returned
    could take the bundle of a container created next with the same id."""
    await anyio.to_thread.run_sync(remove_bundle, state_dir, path)


def remove_namespace_level(state_dir: Path, namespace: str) -> None:
    """Remove the namespace levels of ``state_dir`` that no container uses
    any more; a client does this once, when it closes, not per container."""
    with contextlib.suppress(OSError):
        for level in state_dir.iterdir():
            name = level.name
            if name == namespace or name.startswith(f"{namespace}@"):
                with contextlib.suppress(OSError):
                    level.rmdir()  # only succeeds when empty


def bundle_owner(
    spec: Mapping[str, Any], platform: _platform.Platform | None = None
) -> tuple[int, int] | None:
    """Who must own a container's bundle directory: the host uid/gid of the
    container's root under a user namespace (Linux), else ``None``.

    On Windows there is no uid/gid to map, whatever the spec says.

    Raises:
        supervisor.errors.InvalidArgument: a Linux spec's id mappings are malformed.
    """
    platform = platform or _platform.PLATFORM
    if not platform.owner_remap:
        return None
    return remapped_root(spec)
