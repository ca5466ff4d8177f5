"""Checks on what ``new_container`` is given, before anything is made."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import errors
from .._ids import validate_id

__all__ = ["checked_arguments", "remapped_io"]


def _check_text(value: object, what: str, container_id: str) -> str:
    if not isinstance(value, str) or not value:
        raise errors.InvalidArgument(
            f"{what} must be a non-empty string", container_id=container_id
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise errors.InvalidArgument(
            f"{what} is not valid UTF-8: {value!r}", container_id=container_id
        ) from None
    return value


def _checked_labels(labels: Mapping[str, str] | None, container_id: str) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise errors.InvalidArgument("labels must be a mapping", container_id=container_id)
    checked: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(value, str):
            raise errors.InvalidArgument(
                "labels must map strings to strings", container_id=container_id
            )
        checked[_check_text(key, "a label key", container_id)] = value
        if value:
            _check_text(value, f"label {key!r}", container_id)
    return checked


def checked_arguments(
    id: str,
    runtime: str,
    runtime_options: Mapping[str, Any] | None,
    labels: Mapping[str, str] | None,
) -> dict[str, str]:
    """Every check that needs no spec (so comes before an image's snapshot
    is prepared); the labels, copied."""
    validate_id(id, kind="container id")
    _check_text(runtime, "runtime", id)
    label_map = _checked_labels(labels, id)
    if runtime_options is not None and not isinstance(runtime_options, Mapping):
        raise errors.InvalidArgument("runtime_options must be a mapping", container_id=id)
    return label_map


# Shims whose options message carries io_uid/io_gid (containerd.runc.v1.Options
# and the legacy containerd.linux.runc.RuncOptions).
_RUNC_SHIMS = frozenset(
    {"io.containerd.runc.v2", "io.containerd.runc.v1", "io.containerd.runtime.v1.linux"}
)


def remapped_io(
    runtime: str, options: Mapping[str, Any] | None, owner: tuple[int, int] | None
) -> Mapping[str, Any] | None:
    """With a user namespace, the shim must hand the process's stdio pipes to
    the remapped root (what moby sets), or ``echo hi > /dev/stdout`` inside
    is refused; the caller's own io_uid/io_gid win."""
    if owner is None or runtime not in _RUNC_SHIMS:
        return options
    merged = dict(options or {})
    merged.setdefault("io_uid", owner[0])
    merged.setdefault("io_gid", owner[1])
    return merged
