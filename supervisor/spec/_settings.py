"""The settings ``docker run`` users reach for, checked and turned into OCI
spec fields: environment merged by key, ``uid[:gid]`` users, bind and tmpfs
mounts, cpu/memory/pids limits. Pure functions shared by
:func:`~supervisor.default_spec`, containers made from images and the
command; a bad value is :class:`~supervisor.errors.InvalidArgument`."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgument

__all__ = [
    "ProcessSettings",
    "check_env",
    "checked_settings",
    "with_settings",
    "check_path",
    "merge_env",
    "oci_mounts",
    "oci_resources",
    "parse_user",
]

_CPU_PERIOD = 100_000  # microseconds, the kernel's default CFS period
_ID_LIMIT = 1 << 32


def check_env(env: object, what: str = "env") -> list[str]:
    """``env`` as a list of ``KEY=VALUE`` strings (a lone ``KEY`` has no
    value to take here, unlike the command's ``-e KEY``)."""
    if isinstance(env, str | bytes) or not isinstance(env, Sequence):
        raise InvalidArgument(f"{what} must be a sequence of 'KEY=VALUE' strings")
    checked = []
    for entry in env:
        if not isinstance(entry, str):
            raise InvalidArgument(f"{what} must hold strings, not {type(entry).__name__}")
        key, sep, _ = entry.partition("=")
        if not sep or not key or "\0" in entry:
            raise InvalidArgument(f"{what}: bad entry {entry!r} (want KEY=VALUE)")
        checked.append(entry)
    return checked


def merge_env(base: Sequence[str], over: Sequence[str]) -> list[str]:
    """``base`` with ``over`` on top, by key: a later value replaces an
    earlier one in its place, new keys come last (as ``docker run -e``)."""
    merged: dict[str, str] = {}
    for entry in [*base, *over]:
        merged[entry.partition("=")[0]] = entry
    return list(merged.values())


def check_path(path: object, what: str) -> str:
    """An absolute path inside the container, normalised."""
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise InvalidArgument(f"{what} must be an absolute path, not {path!r}")
    return os.path.normpath(path)


def _id(text: str, what: str, user: object) -> int:
    if text == "root":
        return 0
    if not text.isdigit() or not text.isascii():
        raise InvalidArgument(
            f"user {user!r}: the {what} must be a number (names are not looked up)"
        )
    value = int(text)
    if value >= _ID_LIMIT:
        raise InvalidArgument(f"user {user!r}: {what} {value} is out of range")
    return value


def parse_user(user: object) -> dict[str, int]:
    """``"uid[:gid]"`` (or an int uid) as an OCI ``process.user``; the gid
    is 0 when not given; ``root`` is 0."""
    if isinstance(user, int) and not isinstance(user, bool):
        text = str(user)
    elif isinstance(user, str):
        text = user
    else:
        raise InvalidArgument(f"user must be 'uid[:gid]', not {type(user).__name__}")
    uid, sep, gid = text.partition(":")
    if not uid or (sep and not gid):
        raise InvalidArgument(f"bad user {user!r} (want 'uid[:gid]')")
    return {"uid": _id(uid, "uid", user), "gid": _id(gid, "gid", user) if gid else 0}


def _bind(source: object, target: object, readonly: bool, entry: object) -> dict[str, Any]:
    if not isinstance(source, str) or not os.path.isabs(source) or "\0" in source:
        raise InvalidArgument(f"mount {entry!r}: the source must be an absolute host path")
    if not os.path.exists(source):
        raise InvalidArgument(f"mount {entry!r}: {source} does not exist on this host")
    destination = check_path(target, f"mount {entry!r}: the destination")
    if destination == "/":
        raise InvalidArgument(f"mount {entry!r}: cannot mount over the container's root")
    return {
        "destination": destination,
        "type": "bind",
        "source": os.path.normpath(source),
        "options": ["rbind", "rprivate", "ro" if readonly else "rw"],
    }


def _from_text(entry: str) -> dict[str, Any]:
    parts = entry.split(":")
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        return _bind(parts[0], parts[1], parts[2] == "ro", entry)
    if len(parts) == 2 and parts[0] and parts[1]:
        return _bind(parts[0], parts[1], False, entry)
    raise InvalidArgument(f"bad mount {entry!r} (want 'SRC:DST' or 'SRC:DST:ro')")


def _first(entry: Mapping[str, Any], *keys: str) -> Any:
    return next((entry[k] for k in keys if k in entry), None)


def _from_mapping(entry: Mapping[str, Any]) -> dict[str, Any]:
    kind = entry.get("type", "bind")
    source = _first(entry, "source", "src")
    target = _first(entry, "destination", "target", "dst")
    readonly = _first(entry, "read_only", "readonly", "ro")
    if readonly is not None and not isinstance(readonly, bool):
        raise InvalidArgument(f"mount {dict(entry)!r}: read_only must be a bool")
    options = entry.get("options")
    if options is not None and (
        isinstance(options, str)
        or not isinstance(options, Sequence)
        or not all(isinstance(o, str) for o in options)
    ):
        raise InvalidArgument(f"mount {dict(entry)!r}: options must be a list of strings")
    if kind == "bind":
        mount = _bind(source, target, bool(readonly), dict(entry))
    elif kind == "tmpfs":
        mount = {
            "destination": check_path(target, f"mount {dict(entry)!r}: the destination"),
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777"] + (["ro"] if readonly else []),
        }
    else:
        raise InvalidArgument(f"mount {dict(entry)!r}: type must be 'bind' or 'tmpfs'")
    if options is not None:
        mount["options"] = list(options)
    return mount


def oci_mounts(mounts: object) -> list[dict[str, Any]]:
    """OCI mounts for ``"SRC:DST[:ro]"`` strings and mappings
    (``source``/``src``, ``destination``/``target``/``dst``, ``type``
    ``bind`` or ``tmpfs``, ``read_only``, ``options``), in order."""
    if isinstance(mounts, str | bytes) or not isinstance(mounts, Sequence):
        raise InvalidArgument("mounts must be a sequence of 'SRC:DST[:ro]' strings or mappings")
    result = []
    for entry in mounts:
        if isinstance(entry, str):
            result.append(_from_text(entry))
        elif isinstance(entry, Mapping):
            result.append(_from_mapping(entry))
        else:
            raise InvalidArgument(f"bad mount {entry!r} (want a string or a mapping)")
    return result


def _count(value: object, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < 1 << 63:
        raise InvalidArgument(f"{what} must be an integer of at least {low}, not {value!r}")
    return value


def oci_resources(
    *, cpus: object = None, memory: object = None, pids_limit: object = None
) -> dict[str, Any]:
    """An OCI ``LinuxResources`` part for the limits given (empty: none):
    ``cpus`` as a CFS quota over a 100 ms period, ``memory`` in bytes,
    ``pids_limit`` as a count."""
    body: dict[str, Any] = {}
    if memory is not None:
        # The kernel refuses less than a few pages; docker's floor is 6 MiB.
        body["memory"] = {"limit": _count(memory, "memory", 1 << 20)}
    if cpus is not None:
        ok = isinstance(cpus, int | float) and not isinstance(cpus, bool)
        if not ok or not math.isfinite(float(cpus)) or float(cpus) <= 0:  # type: ignore[arg-type]
            raise InvalidArgument(f"cpus must be a positive number, not {cpus!r}")
        quota = max(1000, round(float(cpus) * _CPU_PERIOD))  # type: ignore[arg-type]
        body["cpu"] = {"quota": quota, "period": _CPU_PERIOD}
    if pids_limit is not None:
        body["pids"] = {"limit": _count(pids_limit, "pids_limit", 1)}
    return body


@dataclass(frozen=True, slots=True)
class ProcessSettings:
    """What a caller sets on a container's process, docker-run style, checked
    before anything is made: each None leaves the base (spec or image) as is."""

    args: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] | None = None
    workdir: str | None = None
    user: dict[str, int] | None = None
    # A user given by name ("app", "app:staff"): looked up in an image's
    # /etc/passwd and /etc/group once its snapshot exists.
    user_name: str | None = None

    def apply(self, process: dict[str, Any]) -> None:
        """Put the settings onto an OCI ``process`` in place (``entrypoint``
        is the image's business: see ``spec_from_image``)."""
        if self.args is not None:
            process["args"] = list(self.args)
        if self.env is not None:
            base = process.get("env")
            process["env"] = merge_env(base if isinstance(base, list) else [], self.env)
        if self.workdir is not None:
            process["cwd"] = self.workdir
        if self.user is not None:
            process["user"] = dict(self.user)


def _argv(value: object, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidArgument(f"{what} must be a sequence of strings")
    if not all(isinstance(a, str) for a in value):
        raise InvalidArgument(f"{what} must hold strings only")
    return list(value)


def checked_settings(
    *,
    args: object = None,
    entrypoint: object = None,
    env: object = None,
    workdir: object = None,
    user: object = None,
) -> ProcessSettings:
    """The settings, each checked (InvalidArgument names the bad one)."""
    return ProcessSettings(
        args=_argv(args, "args"),
        entrypoint=_argv(entrypoint, "entrypoint"),
        env=None if env is None else check_env(env),
        workdir=None if workdir is None else check_path(workdir, "workdir"),
        user=None if user is None or _named(user) else parse_user(user),
        user_name=user if _named(user) else None,  # type: ignore[arg-type]
    )


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\$?")


def _named(user: object) -> bool:
    """``user`` is ``name[:group]`` or ``uid:group`` with a name in it
    (anything else, numbers and ``root`` included, is parse_user's)."""
    if not isinstance(user, str):
        return False
    parts = user.split(":", 1)
    if not all(p.isdigit() or _NAME.fullmatch(p) for p in parts):
        return False
    return any(not p.isdigit() and p != "root" for p in parts)


def with_settings(spec: Mapping[str, Any], settings: ProcessSettings) -> Mapping[str, Any]:
    """``spec`` with ``settings`` on its process (a copy; ``spec`` itself
    is returned when there is nothing to set)."""
    if settings == ProcessSettings():
        return spec
    if settings.entrypoint is not None:
        raise InvalidArgument("entrypoint is for a container made from an image")
    if settings.user_name is not None:
        raise InvalidArgument(
            f"user {settings.user_name!r}: names are looked up in an image only; give 'uid[:gid]'"
        )
    process = spec.get("process") if isinstance(spec, Mapping) else None
    if not isinstance(process, Mapping):
        raise InvalidArgument("spec.process must be a mapping")
    body = dict(process)
    settings.apply(body)
    return {**spec, "process": body}
