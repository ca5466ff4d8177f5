"""OCI runtime specs: a sensible default to start from, and the checks the
library applies to any spec before it creates anything.

The spec is a plain mapping (the JSON form of the OCI runtime spec); the
library does not model it, it only reads the few fields it needs (``process``,
``linux.uidMappings``/``gidMappings``, ``root``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .. import _platform
from ..errors import InvalidArgument
from ._settings import check_env, check_path, merge_env, oci_mounts, oci_resources, parse_user

__all__ = ["default_spec", "process_spec"]

DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)

# The capability set containerd's own default spec grants.
_DEFAULT_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]

_MASKED = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
]
_READONLY = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]


def process_spec(
    args: Sequence[str],
    *,
    terminal: bool = False,
    env: Sequence[str] = DEFAULT_ENV,
    cwd: str = "/",
    uid: int = 0,
    gid: int = 0,
) -> dict[str, Any]:
    """The ``process`` part of a spec, also what :meth:`Task.exec` takes.

    ``env`` entries (``KEY=VALUE``) go on top of a default ``PATH``, which
    stays unless ``env`` sets ``PATH`` itself.

    Example::

        proc = await task.exec("probe", supervisor.process_spec(["cat", "/etc/hostname"]))
    """
    if isinstance(args, str) or not args:
        raise InvalidArgument("args must be a non-empty sequence of strings")
    return {
        "terminal": terminal,
        "user": {"uid": uid, "gid": gid},
        "args": list(args),
        "env": merge_env(DEFAULT_ENV, check_env(env)),
        "cwd": check_path(cwd, "cwd"),
        "capabilities": {
            key: list(_DEFAULT_CAPS) for key in ("bounding", "effective", "permitted")
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    }


def default_spec(
    args: Sequence[str],
    rootfs: str,
    *,
    terminal: bool = False,
    env: Sequence[str] = DEFAULT_ENV,
    cwd: str = "/",
    hostname: str | None = None,
    readonly_rootfs: bool | None = None,
    read_only: bool | None = None,
    memory: int | None = None,
    memory_limit: int | None = None,
    cpus: float | None = None,
    pids_limit: int | None = None,
    user: str | int | None = None,
    mounts: Sequence[str | Mapping[str, Any]] = (),
    tmpfs: Sequence[str] = ("/tmp",),
) -> dict[str, Any]:
    """A Linux OCI runtime spec for ``args`` in ``rootfs``, like containerd's
    default: the process of :func:`process_spec`; /proc, /dev, a read-only
    /sys and a private tmpfs at each of ``tmpfs``; pid, ipc, uts, mount and
    network namespaces of its own (loopback only); every device denied; the
    paths containerd masks. ``docs/api.md`` lists the settings:

    ``env`` goes on top of a default ``PATH`` (kept unless ``env`` sets one);
    ``read_only`` (default true, so that containers can share ``rootfs``;
    ``readonly_rootfs`` is its older name); ``memory`` in bytes
    (``memory_limit`` is its older name); ``cpus`` (``1.5``: a CFS quota);
    ``pids_limit``; ``user`` (``"uid[:gid]"``); ``cwd``; ``hostname`` (set
    only when given); ``mounts``: ``"SRC:DST[:ro]"`` bind mounts of host
    paths, or mappings with ``source``, ``target``, ``type`` (``bind`` or
    ``tmpfs``), ``read_only`` and ``options``.

    Raises:
        InvalidArgument: a value out of range or malformed, or an alias and
            its other name both given but differing.

    Example::

        spec = supervisor.default_spec(["echo", "hi"], "/var/lib/rootfs/busybox")
        container = await client.new_container("hello", spec)
    """
    limits = oci_resources(
        cpus=cpus, memory=_alias(memory, memory_limit, "memory"), pids_limit=pids_limit
    )
    readonly = _alias(read_only, readonly_rootfs, "read_only")
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": process_spec(args, terminal=terminal, env=env, cwd=cwd),
        "root": {"path": rootfs, "readonly": True if readonly is None else bool(readonly)},
        "mounts": _default_mounts(tmpfs) + oci_mounts(mounts),
        "linux": _default_linux(limits),
    }
    if user is not None:
        spec["process"]["user"] = parse_user(user)
    if hostname is not None:
        spec["hostname"] = hostname
    return spec


def _alias(value: Any, old: Any, name: str) -> Any:
    if value is not None and old is not None and value != old:
        raise InvalidArgument(f"{name} and its older name differ: give one of them")
    return value if value is not None else old


def _default_mounts(tmpfs: Sequence[str]) -> list[dict[str, Any]]:
    """/proc, /dev (with pts, shm and mqueue) and a read-only /sys, as
    containerd's default spec mounts them, then a private tmpfs at each of
    ``tmpfs``."""
    mounts: list[dict[str, Any]] = [
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
    ]
    for path in tmpfs:
        mounts.append(
            {
                "destination": path,
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777"],
            }
        )
    return mounts


def _default_linux(limits: Mapping[str, Any]) -> dict[str, Any]:
    """Every device denied, the five namespaces of their own, and the /proc
    and /sys paths containerd masks or makes read-only."""
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}], **limits}
    return {
        "resources": resources,
        "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
        "maskedPaths": list(_MASKED),
        "readonlyPaths": list(_READONLY),
    }


_LEAVES = (int, bool, type(None))
# Deeper than any real spec; deep enough input is refused here rather than
# by a RecursionError (a self-referencing mapping would never end).
_MAX_DEPTH = 48
_INT_RANGE = (-(1 << 63), (1 << 64) - 1)


def _text(value: str, where: str) -> str:
    # Lone surrogates cannot be sent as UTF-8: JSON would turn them into
    # U+FFFD on containerd's side, silently changing the argument.
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidArgument(f"{where} holds text that is not valid UTF-8: {value!r}") from exc
    return value


def _copy(value: Any, where: str, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise InvalidArgument(f"{where} is nested deeper than {_MAX_DEPTH} levels")
    # Exact type checks first: a spec is plain dicts, lists and scalars, and
    # the Mapping ABC check costs more than the copy itself.
    kind = type(value)
    if kind is str:
        return _text(value, where)
    if kind is dict:
        return {_key(k, where): _copy(v, where, depth + 1) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_copy(v, where, depth + 1) for v in value]
    if kind is int:
        if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
            raise InvalidArgument(f"{where} holds {value}, beyond a 64-bit integer")
        return value
    if kind in _LEAVES:
        return value  # immutable: shared, not duplicated, as deepcopy would
    if kind is float:
        if math.isfinite(value):
            return value
        raise InvalidArgument(f"{where} is not JSON: {value!r} is not a finite number")
    if isinstance(value, Mapping):
        return {_key(k, where): _copy(v, where, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v, where, depth + 1) for v in value]
    # Subclasses of the scalars (an IntEnum, a str subclass) go as JSON
    # would send them: as the plain value.
    if isinstance(value, str):
        return _text(str(value), where)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return _copy(int(value), where, depth)
    if isinstance(value, float):
        return _copy(float(value), where, depth)
    raise InvalidArgument(f"{where} is not JSON: a {kind.__name__} cannot be sent")


def _key(key: object, where: str) -> str:
    if isinstance(key, str):
        return _text(key, where)
    raise InvalidArgument(f"{where} is not JSON: a {type(key).__name__} key cannot be sent")


def json_copy(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A private deep copy of ``value``, refusing what JSON cannot carry
    faithfully (non-JSON types, lone surrogates, integers beyond 64 bits,
    nesting deeper than any spec needs).

    Like :func:`copy.deepcopy` it shares the immutable leaves instead of
    duplicating them, so a live container's spec costs its size once.
    """
    try:
        copied: dict[str, Any] = _copy(value, what)
    except RecursionError as exc:  # a pathological Mapping subclass
        raise InvalidArgument(f"{what} is nested too deeply") from exc
    return copied


def _check_linux(spec: Mapping[str, Any]) -> None:
    linux = spec.get("linux")
    if linux is None:
        return
    if not isinstance(linux, Mapping):
        raise InvalidArgument("spec.linux must be a mapping")
    namespaces = linux.get("namespaces")
    if namespaces is not None:
        if not isinstance(namespaces, list):
            raise InvalidArgument("spec.linux.namespaces must be a list")
        for i, ns in enumerate(namespaces):
            if not isinstance(ns, Mapping) or not isinstance(ns.get("type"), str):
                raise InvalidArgument(f"spec.linux.namespaces[{i}] needs a string 'type'")
    for key in ("uidMappings", "gidMappings"):
        mappings = linux.get(key)
        if mappings is None:
            continue
        if not isinstance(mappings, list):
            raise InvalidArgument(f"spec.linux.{key} must be a list")
        for i, m in enumerate(mappings):
            if not isinstance(m, Mapping):
                raise InvalidArgument(f"spec.linux.{key}[{i}] must be a mapping")
            for field in ("containerID", "hostID", "size"):
                v = m.get(field)
                if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << 32:
                    raise InvalidArgument(
                        f"spec.linux.{key}[{i}].{field} must be an integer in 0..2^32-1"
                    )


def checked_spec(spec: object) -> dict[str, Any]:
    """A private deep copy of ``spec`` after the checks every create applies.

    Raises:
        InvalidArgument: not a mapping, without a ``process`` mapping, or
            with a field of the wrong type (the field is named).
    """
    if not isinstance(spec, Mapping):
        raise InvalidArgument(f"spec must be a mapping, not {type(spec).__name__}")
    body = json_copy(spec, "spec")
    _check_process(body.get("process"), "spec.process")
    _check_linux(body)
    return body


def _check_process(process: object, where: str) -> None:
    if not isinstance(process, Mapping):
        raise InvalidArgument(f"{where} must be a mapping")
    args = process.get("args")
    if args is not None and (
        not isinstance(args, list) or not all(isinstance(a, str) for a in args)
    ):
        raise InvalidArgument(f"{where}.args must be a list of strings")
    env = process.get("env")
    if env is not None and (not isinstance(env, list) or not all(isinstance(e, str) for e in env)):
        raise InvalidArgument(f"{where}.env must be a list of strings")
    cwd = process.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise InvalidArgument(f"{where}.cwd must be a string")


def checked_process(process: object) -> dict[str, Any]:
    """Like :func:`checked_spec` for an exec's process spec."""
    if not isinstance(process, Mapping):
        raise InvalidArgument(f"process spec must be a mapping, not {type(process).__name__}")
    body = json_copy(process, "process spec")
    _check_process(body, "process spec")
    if not body.get("args"):
        raise InvalidArgument("process spec needs a non-empty 'args' list")
    return body


def inherited_process(spec: Mapping[str, Any], args: object) -> dict[str, Any]:
    """The container's own process settings with ``args`` in place of its
    command: what ``docker exec`` runs (env, cwd, user, capabilities,
    rlimits, apparmor and the like all inherited)."""
    if isinstance(args, str | bytes) or not isinstance(args, list | tuple) or not args:
        raise InvalidArgument("exec args must be a non-empty sequence of strings")
    if not all(isinstance(a, str) for a in args):
        raise InvalidArgument("exec args must be strings")
    base = spec.get("process")
    body = json_copy(base if isinstance(base, Mapping) else {}, "process spec")
    body["args"] = [_text(a, "exec args") for a in args]
    body.pop("consoleSize", None)
    for key, value in _platform.default_process_fields().items():
        body.setdefault(key, value)
    return body
