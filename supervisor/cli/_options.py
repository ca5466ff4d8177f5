"""What run's and exec's flags mean for the OCI spec: environment, mounts,
user, working directory, resources. Pure functions; a bad value is a
:class:`CliError` before anything is created."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._errors import CliError

__all__ = [
    "LOG_PATH_LABEL",
    "apply_process_options",
    "bind_mounts",
    "container_path",
    "environment",
    "resources",
    "user_ids",
]

LOG_PATH_LABEL = "supervisor.log-path"
"""The container label that records ``run --log-path`` for ``logs``."""

_CPU_PERIOD = 100_000  # microseconds, the kernel's default CFS period


# -- environment ------------------------------------------------------------------


def _env_entry(text: str, where: str) -> str | None:
    """``KEY=VALUE`` as given; ``KEY`` alone takes our own value (and is
    dropped when we have none), as docker does."""
    if "\0" in text:
        raise CliError(f"{where}: NUL byte in {text!r}")
    key, sep, _ = text.partition("=")
    if not key or any(c.isspace() for c in key):
        raise CliError(f"{where}: bad environment variable {text!r} (want KEY=VALUE)")
    if sep:
        return text
    value = os.environ.get(key)
    return None if value is None else f"{key}={value}"


def _env_file_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"--env-file {path}: {exc}") from None
    entries = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        entry = _env_entry(text, f"--env-file {path}:{number}")
        if entry is not None:
            entries.append(entry)
    return entries


def environment(base: Sequence[str], env_files: Iterable[str], env: Iterable[str]) -> list[str]:
    """``base`` with the files' and then the flags' variables on top: a
    later value of a key replaces an earlier one in place."""
    merged: dict[str, str] = {}
    for entry in base:
        merged[entry.partition("=")[0]] = entry
    for path in env_files:
        for entry in _env_file_lines(path):
            merged[entry.partition("=")[0]] = entry
    for text in env:
        given = _env_entry(text, "-e")
        if given is not None:
            merged[given.partition("=")[0]] = given
    return list(merged.values())


# -- user -------------------------------------------------------------------------


def _lookup(rootfs: str | None, file: str, name: str) -> tuple[int, int] | None:
    """``(id, gid)`` of ``name`` in the rootfs's /etc/passwd or /etc/group.

    The file belongs to the image, which may be anyone's: it is only read,
    never followed out of the rootfs at its last component, and any fault
    in it means "no such name"."""
    if rootfs is None:
        return None
    path = os.path.join(rootfs, "etc", file)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(1 << 20)
    except OSError:
        return None
    finally:
        os.close(fd)
    for line in data.decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            gid = fields[3] if file == "passwd" and len(fields) > 3 else fields[2]
            return int(fields[2]), int(gid) if gid.isdigit() else 0
    return None


def _unknown(what: str, name: str, rootfs: str | None) -> str:
    if rootfs is None:
        return f"-u: give a numeric {what} id here, not {name!r}"
    table = "/etc/passwd" if what == "user" else "/etc/group"
    return f"-u: no {what} {name!r} in {rootfs}{table} (give a numeric id)"


def _numeric(text: str, what: str) -> int:
    value = int(text)
    if not 0 <= value < 1 << 32:
        raise CliError(f"-u: {what} {text} is out of range")
    return value


def user_ids(spec_user: str, rootfs: str | None) -> tuple[int, int]:
    """``uid[:gid]`` as numbers or names (names looked up in the rootfs's
    /etc/passwd and /etc/group; ``root`` is always 0)."""
    user, _, group = spec_user.partition(":")
    if not user:
        raise CliError(f"-u: bad user {spec_user!r} (want UID[:GID])")
    if user.isdigit():
        uid = _numeric(user, "uid")
        gid = 0
    elif user == "root":
        uid = gid = 0
    else:
        found = _lookup(rootfs, "passwd", user)
        if found is None:
            raise CliError(_unknown("user", user, rootfs))
        uid, gid = found
    if group:
        if group.isdigit():
            gid = _numeric(group, "gid")
        elif group == "root":
            gid = 0
        else:
            found = _lookup(rootfs, "group", group)
            if found is None:
                raise CliError(_unknown("group", group, rootfs))
            gid = found[0]
    return uid, gid


def _absolute(path: str, flag: str) -> str:
    if not path.startswith("/") or "\0" in path:
        raise CliError(f"{flag}: {path!r} must be an absolute path in the container")
    return os.path.normpath(path)


def container_path(path: str, flag: str) -> str:
    """``path`` (given with ``flag``) as an absolute path in the container."""
    return _absolute(path, flag)


def apply_process_options(
    process: dict[str, Any],
    *,
    env: Iterable[str],
    env_files: Iterable[str],
    workdir: str | None,
    user: str | None,
    rootfs: str | None,
) -> None:
    """Apply -e/--env-file/-w/-u to an OCI ``process`` mapping in place."""
    process["env"] = environment(process.get("env") or [], env_files, env)
    if workdir is not None:
        process["cwd"] = _absolute(workdir, "-w")
    if user is not None:
        uid, gid = user_ids(user, rootfs)
        process["user"] = {"uid": uid, "gid": gid}


# -- mounts -----------------------------------------------------------------------


def _bind(source: str, destination: str, readonly: bool, flag: str) -> dict[str, Any]:
    source = os.path.abspath(source)
    if not os.path.exists(source):
        raise CliError(f"{flag}: {source} does not exist on this host")
    target = _absolute(destination, flag)
    if target == "/":
        raise CliError(f"{flag}: cannot mount over the container's root")
    return {
        "destination": target,
        "type": "bind",
        "source": source,
        "options": ["rbind", "rprivate", "ro" if readonly else "rw"],
    }


def _volume(text: str) -> dict[str, Any]:
    parts = text.split(":")
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        return _bind(parts[0], parts[1], parts[2] == "ro", "-v")
    if len(parts) == 2 and parts[0] and parts[1]:
        return _bind(parts[0], parts[1], False, "-v")
    raise CliError(f"-v: bad volume {text!r} (want SRC:DST or SRC:DST:ro)")


_TRUE = ("", "1", "true")


def _mount(text: str) -> dict[str, Any]:
    fields: dict[str, str] = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        fields[key.strip().lower()] = value
    kind = fields.pop("type", "bind")
    source = fields.pop("source", None) or fields.pop("src", None)
    target = next((fields.pop(k) for k in ("destination", "dst", "target") if k in fields), None)
    readonly = False
    for key in ("ro", "readonly"):
        if key in fields:
            readonly = fields.pop(key).lower() in _TRUE
    if fields:
        raise CliError(f"--mount: unknown field(s) {', '.join(sorted(fields))} in {text!r}")
    if not target:
        raise CliError(f"--mount: {text!r} needs dst=PATH")
    if kind == "bind":
        if not source:
            raise CliError(f"--mount: a bind mount needs src=PATH: {text!r}")
        return _bind(source, target, readonly, "--mount")
    if kind == "tmpfs":
        options = ["nosuid", "nodev", "mode=1777"] + (["ro"] if readonly else [])
        return {
            "destination": _absolute(target, "--mount"),
            "type": "tmpfs",
            "source": "tmpfs",
            "options": options,
        }
    raise CliError(f"--mount: type {kind!r} is not supported (bind or tmpfs)")


def bind_mounts(volumes: Iterable[str], mounts: Iterable[str]) -> list[dict[str, Any]]:
    """The OCI mounts for -v and --mount, in the order given."""
    return [_volume(v) for v in volumes] + [_mount(m) for m in mounts]


# -- resources --------------------------------------------------------------------


def resources(*, memory: int | None, cpus: float | None, pids_limit: int | None) -> dict[str, Any]:
    """An OCI ``LinuxResources`` mapping for the limits given (empty: none)."""
    body: dict[str, Any] = {}
    if memory is not None:
        body["memory"] = {"limit": memory}
    if cpus is not None:
        body["cpu"] = {"quota": max(1000, round(cpus * _CPU_PERIOD)), "period": _CPU_PERIOD}
    if pids_limit is not None:
        body["pids"] = {"limit": pids_limit}
    return body


def merge_resources(spec: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Put ``extra`` into the spec's ``linux.resources``."""
    if extra:
        spec.setdefault("linux", {}).setdefault("resources", {}).update(extra)
