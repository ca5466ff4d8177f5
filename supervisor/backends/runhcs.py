r"""hcsshim's runhcs shim (``io.containerd.runhcs.v1``): what containerd on
Windows needs from the library that runc does not.

* **Options.** A container's runtime options are runhcs ``Options`` (not
  runc's), built by :func:`options_any` from a mapping of its fields::

      {"sandbox_isolation": "HYPERVISOR", "debug_type": "ETW",
       "registry_root": r"HKLM\SOFTWARE\...", "sandbox_image": "...",
       "sandbox_platform": "windows/amd64", "boot_files_root_path": "...",
       "vm_processor_count": 2, "vm_memory_size_in_mb": 1024, "debug": True}

  ``debug`` is turned on when the ``supervisor.runhcs`` logger is enabled
  for debug records, as moby turns it on at its own debug level, unless the
  caller set it either way.
* **Layer folders.** hcsshim reads a container's storage from the spec's
  ``windows.layerFolders`` (parent layers, then the container's own scratch
  layer) when containerd passes no rootfs mounts, and the library passes
  none. moby learned that the layer folder must be set for every container,
  Hyper-V isolated ones included, because servicing containers reuse the
  create options (seed 002): :func:`check_spec` refuses a spec without it,
  whatever the isolation, before anything is created.
* **Resource updates** are logged as not supported instead of being sent
  (:func:`update_unsupported`), as moby does on Windows.

This module stays light: the generated and hand-written message classes load
only when :func:`options_any` is first called (by the containerd backend).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import _platform, errors
from .._log import get_logger

if TYPE_CHECKING:
    from .._proto.google.protobuf import Any as PbAny
    from ._hcs_messages import Options

__all__ = [
    "OPTION_FIELDS",
    "RUNTIME",
    "check_spec",
    "options_any",
    "options_message",
    "update_unsupported",
    "windows_spec",
]

RUNTIME = _platform.RUNHCS_RUNTIME

_log = get_logger("runhcs")

_ENUMS: dict[str, tuple[str, ...]] = {
    "debug_type": ("NPIPE", "FILE", "ETW"),
    "sandbox_isolation": ("PROCESS", "HYPERVISOR"),
}
_BOOLS = frozenset({"debug"})
_STRINGS = frozenset({"registry_root", "sandbox_image", "sandbox_platform", "boot_files_root_path"})
_INT32S = frozenset({"vm_processor_count", "vm_memory_size_in_mb"})

OPTION_FIELDS = frozenset(_ENUMS) | _BOOLS | _STRINGS | _INT32S
"""The ``runtime_options`` keys runhcs takes through this library."""

_INT32_MAX = (1 << 31) - 1


def _bad(message: str, container_id: str | None) -> errors.InvalidArgument:
    return errors.InvalidArgument(f"runhcs options: {message}", container_id=container_id)


def _checked_options(options: Mapping[str, Any] | None, container_id: str | None) -> dict[str, Any]:
    """The options as ``Options`` constructor arguments (enums as ints)."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise _bad("must be a mapping", container_id)
    fields: dict[str, Any] = {}
    for key, value in options.items():
        if key not in OPTION_FIELDS:
            raise _bad(
                f"unknown field {key!r} (known: {', '.join(sorted(OPTION_FIELDS))})", container_id
            )
        if key in _BOOLS:
            if not isinstance(value, bool):
                raise _bad(f"{key} must be a bool", container_id)
        elif key in _STRINGS:
            if not isinstance(value, str):
                raise _bad(f"{key} must be a string", container_id)
        elif key in _INT32S:
            if isinstance(value, bool) or not isinstance(value, int):
                raise _bad(f"{key} must be an int", container_id)
            if not 0 <= value <= _INT32_MAX:
                raise _bad(f"{key} must be in 0..{_INT32_MAX}", container_id)
        else:
            names = _ENUMS[key]
            if isinstance(value, str) and value.upper() in names:
                value = names.index(value.upper())
            elif (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not (0 <= value < len(names))
            ):
                raise _bad(f"{key} must be one of {', '.join(names)}", container_id)
        fields[key] = value
    return fields


def options_message(
    options: Mapping[str, Any] | None = None,
    *,
    debug: bool | None = None,
    container_id: str | None = None,
) -> Options:
    """runhcs ``Options`` from a mapping of its fields (see the module docstring).

    Args:
        options: the caller's runtime options, or None.
        debug: turn the shim's debug trace on or off when the caller's
            options do not say; ``None`` asks the ``supervisor.runhcs`` logger.

    Raises:
        InvalidArgument: an unknown field, or a value of the wrong type or range.
    """
    from ._hcs_messages import Options, OptionsDebugType, OptionsSandboxIsolation

    fields = _checked_options(options, container_id)
    if "debug" not in fields:
        fields["debug"] = _log.is_enabled(logging.DEBUG) if debug is None else debug
    if "debug_type" in fields:
        fields["debug_type"] = OptionsDebugType(fields["debug_type"])
    if "sandbox_isolation" in fields:
        fields["sandbox_isolation"] = OptionsSandboxIsolation(fields["sandbox_isolation"])
    return Options(**fields)


def options_any(
    options: Mapping[str, Any] | None = None,
    *,
    debug: bool | None = None,
    container_id: str | None = None,
) -> PbAny | None:
    """The container's runtime options for runhcs, packed as containerd sends
    them; ``None`` when there is nothing to say (every field at its default),
    so a plain container carries no options at all, as under moby.

    Raises:
        InvalidArgument: see :func:`options_message`.
    """
    from .._proto.google.protobuf import Any as PbAny
    from ._hcs_messages import OPTIONS_TYPE_URL

    message = options_message(options, debug=debug, container_id=container_id)
    value = bytes(message)
    if not value:
        return None
    return PbAny(type_url=OPTIONS_TYPE_URL, value=value)


def check_spec(spec: Mapping[str, Any], *, container_id: str | None = None) -> list[str]:
    """Refuse a spec runhcs could not create, or could not service later.

    Returns:
        The layer folders, parents first and the container's scratch layer last.

    Raises:
        InvalidArgument: ``windows.layerFolders`` is missing or has fewer than
            two entries (at least one image layer and the scratch layer), for
            any isolation: a Hyper-V isolated container needs it too.
    """
    windows = spec.get("windows")
    if not isinstance(windows, Mapping):
        raise errors.InvalidArgument(
            "a runhcs container needs a 'windows' section with layerFolders",
            container_id=container_id,
        )
    folders = windows.get("layerFolders")
    if (
        isinstance(folders, str)
        or not isinstance(folders, Sequence)
        or not all(isinstance(f, str) and f for f in folders)
    ):
        raise errors.InvalidArgument(
            "spec.windows.layerFolders must be a list of non-empty paths",
            container_id=container_id,
        )
    if len(folders) < 2:
        raise errors.InvalidArgument(
            "spec.windows.layerFolders needs the image's layers and the container's "
            "scratch layer (last), for process and Hyper-V isolation alike",
            container_id=container_id,
        )
    return list(folders)


def windows_spec(
    args: Sequence[str],
    layer_folders: Sequence[str],
    *,
    hyperv: bool = False,
    env: Sequence[str] = (),
    cwd: str = "C:\\",
    terminal: bool = False,
) -> dict[str, Any]:
    """A minimal OCI spec for a Windows container run by runhcs (the Windows
    counterpart of :func:`supervisor.default_spec`).

    Args:
        args: the command line.
        layer_folders: the image's layer folders, then the container's
            scratch layer folder, last.
        hyperv: isolate the container in a utility VM instead of a process
            on the host.

    Raises:
        InvalidArgument: no args, or layer folders :func:`check_spec` refuses.
    """
    if isinstance(args, str) or not args or not all(isinstance(a, str) for a in args):
        raise errors.InvalidArgument("args must be a non-empty sequence of strings")
    windows: dict[str, Any] = {"layerFolders": list(layer_folders)}
    if hyperv:
        windows["hyperv"] = {}
    spec: dict[str, Any] = {
        "ociVersion": "1.1.0",
        "process": {
            "terminal": bool(terminal),
            "args": list(args),
            "env": list(env),
            "cwd": cwd,
        },
        "root": {"path": ""},
        "windows": windows,
    }
    check_spec(spec)
    return spec


def update_unsupported(container_id: str) -> None:
    """What ``Task.update_resources`` does on Windows instead of sending the
    call: say so (at warning level: the caller's limits were not applied)."""
    _log.warning("task.update_unsupported", container_id=container_id, runtime=RUNTIME)
