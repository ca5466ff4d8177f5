"""An OCI runtime spec from an image's config, with the caller's overrides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .. import errors
from ..spec._builder import DEFAULT_ENV, default_spec, json_copy

__all__ = ["spec_from_image"]


def _strings(value: Any) -> list[str]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return []


def _merge_env(base: Sequence[str], image: Sequence[str]) -> list[str]:
    merged: dict[str, str] = {}
    for entry in [*base, *image]:
        key = entry.split("=", 1)[0]
        merged[key] = entry
    return list(merged.values())


def _user(text: str) -> dict[str, int] | None:
    """``uid[:gid]`` as an OCI user; a user *name* cannot be resolved without
    reading the image's /etc/passwd, so it is None here."""
    if not text or text == "root":
        return {"uid": 0, "gid": 0}
    uid, _, gid = text.partition(":")
    if uid.isdigit() and (not gid or gid.isdigit()):
        return {"uid": int(uid), "gid": int(gid or 0)}
    return None


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = _deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def spec_from_image(
    config: Mapping[str, Any],
    *,
    args: Sequence[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    rootfs: str = "rootfs",
) -> dict[str, Any]:
    """A runtime spec for a container of an image.

    The process is the image's ``Entrypoint`` followed by its ``Cmd`` (or by
    ``args``, which replace the ``Cmd`` as ``docker run IMAGE ARGS`` does),
    with the image's ``Env``, ``WorkingDir`` and numeric ``User``. The root
    filesystem is writable (it is the container's own snapshot). Every key
    of ``overrides`` then wins, mappings merged key by key and anything else
    (a list such as ``process.args``) replaced whole.

    Raises:
        InvalidArgument: no command at all, or a user name (not a number)
            that ``overrides`` does not replace.
    """
    entrypoint = _strings(config.get("Entrypoint"))
    cmd = list(args) if args is not None else _strings(config.get("Cmd"))
    if args is not None and not all(isinstance(a, str) for a in args):
        raise errors.InvalidArgument("args must be a sequence of strings")
    argv = entrypoint + cmd
    env = _merge_env(DEFAULT_ENV, _strings(config.get("Env")))
    workdir = config.get("WorkingDir")
    cwd = workdir if isinstance(workdir, str) and workdir.startswith("/") else "/"
    spec = default_spec(argv, rootfs, env=env, cwd=cwd, readonly_rootfs=False)
    user_text = config.get("User")
    user = _user(user_text if isinstance(user_text, str) else "")
    if user is not None:
        spec["process"]["user"] = user
    if overrides is not None:
        if not isinstance(overrides, Mapping):
            raise errors.InvalidArgument("spec must be a mapping")
        spec = _deep_merge(spec, json_copy(overrides, "spec"))
    process = spec.get("process")
    if not isinstance(process, dict):
        raise errors.InvalidArgument("spec.process must be a mapping")
    caller_user = (overrides or {}).get("process", {})
    if user is None and not (isinstance(caller_user, Mapping) and "user" in caller_user):
        raise errors.InvalidArgument(
            f"the image runs as user {user_text!r}: names are not resolved; "
            "pass spec={'process': {'user': {'uid': N, 'gid': N}}}"
        )
    if not process.get("args"):
        raise errors.InvalidArgument("the image has no Entrypoint or Cmd: pass args=")
    return spec
