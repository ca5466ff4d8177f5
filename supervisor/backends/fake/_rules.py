"""The checks containerd, runc and the real transport make before they act,
as the fake makes them: what they refuse, in their own words."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ... import errors
from ..._types import ContainerRecord, StdioPaths

__all__ = [
    "check_container",
    "check_runtime_options",
    "process_refusal",
    "resources_refusal",
    "runc_refusal",
]

# containerd's bound on one label, its key and value together.
_MAX_LABEL = 4096


def check_container(
    container_id: str,
    runtime: str,
    labels: Mapping[str, str],
    snapshotter: str,
    snapshot_key: str,
) -> None:
    # What containerd's metadata store checks before it stores a container.
    if not runtime:
        raise errors.InvalidArgument(
            "container.Runtime.Name must be set", container_id=container_id
        )
    for key, value in labels.items():
        if len(key) + len(value) > _MAX_LABEL:
            raise errors.InvalidArgument(
                f"label key and value greater than maximum size ({_MAX_LABEL} bytes), "
                f"key: {key[:64]}",
                container_id=container_id,
            )
    if snapshot_key and not snapshotter:
        raise errors.InvalidArgument(
            "container.Snapshotter must be set if container.SnapshotKey is set",
            container_id=container_id,
        )


def check_runtime_options(
    container_id: str,
    runtime: str,
    options: Mapping[str, Any] | None,
    spec: Mapping[str, Any],
) -> None:
    # The real transport builds the shim's options message before it sends
    # anything, and refuses what that message has no field for.
    from .. import runhcs

    if runtime == runhcs.RUNTIME:
        runhcs.check_spec(spec, container_id=container_id)
        runhcs.options_message(options, debug=False, container_id=container_id)
        return
    if options is None:
        return
    message: Any
    if runtime == "io.containerd.runtime.v1.linux":
        from ..._proto.containerd.linux import runc as pb_runc_v1

        message = pb_runc_v1.RuncOptions
    else:
        from ..._proto.containerd.runc import v1 as pb_runc

        message = pb_runc.Options
    try:
        bytes(message(**options))
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise errors.InvalidArgument(
            f"bad runtime options: {exc}", container_id=container_id
        ) from exc


def runc_refusal(
    container: ContainerRecord, process: Any, stdio: StdioPaths, *, init: bool = False
) -> str | None:
    """What runc and the runc shim say to a process they cannot run, in the
    order they check it; ``None`` if they take it (runhcs is not modelled)."""
    from .. import runhcs

    if container.runtime == runhcs.RUNTIME:
        return None
    process = process if isinstance(process, dict) else {}
    args = process.get("args")
    if not isinstance(args, list) or not args:
        what = "runc create failed" if init else "exec failed"
        prefix = "OCI runtime create failed" if init else "OCI runtime exec failed"
        return f"{prefix}: {what}: args must not be empty"
    cwd = process.get("cwd")
    if not cwd or not str(cwd).startswith("/"):
        what = "runc create failed" if init else "exec failed"
        prefix = "OCI runtime create failed" if init else "OCI runtime exec failed"
        problem = "Cwd property must not be empty" if not cwd else "Cwd must be an absolute path"
        return f"{prefix}: {what}: {problem}"
    if init and stdio.terminal != bool(process.get("terminal")):
        return "OCI runtime create failed: runc create failed: " + (
            "cannot use console socket if runc will not detach or allocate tty"
            if stdio.terminal
            else "cannot allocate tty if runc will detach without setting console socket"
        )
    paths = (stdio.stdin, stdio.stdout, stdio.stderr)
    if not stdio.terminal and any(paths) and not (stdio.stdout and stdio.stderr):
        # (With stdin alone the real shim hangs instead, until the call's
        # deadline.)
        return (
            "failed to start io pipe copy: unable to copy pipes: containerd-shim: "
            'opening file "" failed: open : no such file or directory'
        )
    return None


_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT64 = (0, (1 << 64) - 1)
# The LinuxResources fields the shim decodes with Go's JSON decoder, by
# section: (the Go struct, {field: Go type}). Fields it does not know it
# ignores; these it refuses in any other JSON type.
_RESOURCE_FIELDS: dict[str, tuple[str, dict[str, str]]] = {
    "memory": (
        "LinuxMemory",
        {
            "limit": "int64",
            "reservation": "int64",
            "swap": "int64",
            "kernel": "int64",
            "kernelTCP": "int64",
            "swappiness": "uint64",
            "disableOOMKiller": "bool",
            "useHierarchy": "bool",
        },
    ),
    "cpu": (
        "LinuxCPU",
        {
            "shares": "uint64",
            "quota": "int64",
            "period": "uint64",
            "realtimeRuntime": "int64",
            "realtimePeriod": "uint64",
            "cpus": "string",
            "mems": "string",
            "idle": "int64",
        },
    ),
    "pids": ("LinuxPids", {"limit": "int64"}),
}


# An OCI Process's fields as the shim's decoder types them (``User`` is a
# struct of its own).
_PROCESS_FIELDS = {
    "args": "[]string",
    "env": "[]string",
    "cwd": "string",
    "terminal": "bool",
    "noNewPrivileges": "bool",
    "apparmorProfile": "string",
    "selinuxLabel": "string",
    "oomScoreAdj": "int",
}
_USER_FIELDS = {"uid": "uint32", "gid": "uint32", "umask": "uint32", "additionalGids": "[]uint32"}
_RANGES = {
    "int64": _INT64,
    "int": _INT64,
    "uint64": _UINT64,
    "uint32": (0, (1 << 32) - 1),
}


def _fits(value: Any, go_type: str) -> bool:
    if go_type.startswith("[]"):
        return isinstance(value, list) and all(_fits(v, go_type[2:]) for v in value)
    if go_type == "bool":
        return isinstance(value, bool)
    if go_type == "string":
        return isinstance(value, str)
    low, high = _RANGES[go_type]
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def process_refusal(process: Any) -> str | None:
    """What the shim's JSON decoder says of an OCI Process (an exec's spec,
    or a container spec's ``process``); ``None`` if it takes it."""
    if process is None:
        return None
    if not isinstance(process, dict):
        return f"json: cannot unmarshal {_kind(process)} into Go struct field Spec.process"
    checks = [("Process", "", process, _PROCESS_FIELDS)]
    user = process.get("user")
    if user is not None and not isinstance(user, dict):
        return f"json: cannot unmarshal {_kind(user)} into Go struct field Process.user"
    if user is not None:
        checks.append(("User", "user.", user, _USER_FIELDS))
    for struct, path, fields, types in checks:
        for name, go_type in types.items():
            value = fields.get(name)
            if value is not None and not _fits(value, go_type):
                return (
                    f"json: cannot unmarshal {_kind(value)} into Go struct field "
                    f"{struct}.{path}{name} of type {go_type}"
                )
    return None


def _kind(value: Any) -> str:
    # How Go's decoder names the JSON value it could not take.
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def resources_refusal(resources: Mapping[str, Any]) -> str | None:
    """What the shim's JSON decoder says of ``resources``; ``None`` if it
    takes them."""
    for section, (struct, fields) in _RESOURCE_FIELDS.items():
        value = resources.get(section)
        if value is None:
            continue
        if not isinstance(value, dict):
            return (
                f"json: cannot unmarshal {_kind(value)} into Go struct field "
                f"LinuxResources.{section} of type specs.{struct}"
            )
        for name, go_type in fields.items():
            field = value.get(name)
            if field is not None and not _fits(field, go_type):
                return (
                    f"json: cannot unmarshal {_kind(field)} into Go struct field "
                    f"{struct}.{section}.{name} of type {go_type}"
                )
    return None
