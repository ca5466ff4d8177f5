"""An OCI runtime spec from an image's config, with the caller's overrides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .. import errors
from ..spec._builder import DEFAULT_ENV, default_spec, json_copy
from ..spec._settings import ProcessSettings, checked_settings, merge_env

__all__ = ["spec_from_image", "user_to_resolve"]


def _strings(value: Any) -> list[str]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return []


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


def _check_user_given(
    overrides: Mapping[str, Any] | None, image_user: object, resolve_names: bool
) -> None:
    caller = (overrides or {}).get("process", {})
    if not (isinstance(caller, Mapping) and "user" in caller) and not resolve_names:
        raise errors.InvalidArgument(
            f"the image runs as user {image_user!r}: names are not resolved; pass user='uid[:gid]'"
        )


def spec_from_image(
    config: Mapping[str, Any],
    *,
    args: Sequence[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    rootfs: str = "rootfs",
    settings: ProcessSettings | None = None,
    resolve_names: bool = False,
) -> dict[str, Any]:
    """A runtime spec for a container of an image, as ``docker run`` makes it.

    The process is the image's ``Entrypoint`` followed by its ``Cmd``, with
    the image's ``Env``, ``WorkingDir`` and numeric ``User``; ``settings``
    then go on top: ``args`` replace the ``Cmd``; an ``entrypoint``
    replaces the ``Entrypoint`` and drops the image's ``Cmd`` (``args``
    still apply); ``env`` is merged by key; ``workdir`` and ``user``
    replace. The root filesystem is writable (it is the container's own
    snapshot). Every key of ``overrides`` then wins, mappings merged key by
    key and anything else (a list such as ``process.args``) replaced whole.

    With ``resolve_names``, a user given by name is left for the caller to
    look up (:func:`user_to_resolve`): the spec runs as root until then.

    Raises:
        InvalidArgument: no command at all, or (without ``resolve_names``)
            a user name that neither ``user`` nor ``overrides`` replaces.
    """
    given = settings or checked_settings(args=args)
    if given.entrypoint is not None:
        entrypoint, cmd = given.entrypoint, []
    else:
        entrypoint, cmd = _strings(config.get("Entrypoint")), _strings(config.get("Cmd"))
    if given.args is not None:
        cmd = list(given.args)
    env = merge_env(DEFAULT_ENV, _strings(config.get("Env")))
    workdir = config.get("WorkingDir")
    cwd = workdir if isinstance(workdir, str) and workdir.startswith("/") else "/"
    spec = default_spec(["sh"], rootfs, env=env, cwd=cwd, readonly_rootfs=False)
    process = spec["process"]
    process["args"] = entrypoint + cmd
    user_text = config.get("User")
    user = _user(user_text if isinstance(user_text, str) else "")
    if user is not None:
        process["user"] = user
    ProcessSettings(env=given.env, workdir=given.workdir, user=given.user).apply(process)
    if overrides is not None:
        if not isinstance(overrides, Mapping):
            raise errors.InvalidArgument("spec must be a mapping")
        spec = _deep_merge(spec, json_copy(overrides, "spec"))
    process = spec.get("process")
    if not isinstance(process, dict):
        raise errors.InvalidArgument("spec.process must be a mapping")
    if user is None and given.user is None and given.user_name is None:
        _check_user_given(overrides, user_text, resolve_names)
    if not process.get("args"):
        raise errors.InvalidArgument("the image has no Entrypoint or Cmd: pass args=")
    return spec


def user_to_resolve(
    config: Mapping[str, Any], settings: ProcessSettings, overrides: Mapping[str, Any] | None
) -> str | None:
    """The user name :func:`spec_from_image` left to look up in the image
    (``user=`` by name, else the image's ``User`` by name), or None."""
    if settings.user_name is not None:
        return settings.user_name
    caller = (overrides or {}).get("process", {})
    if settings.user is not None or (isinstance(caller, Mapping) and "user" in caller):
        return None
    text = config.get("User")
    if isinstance(text, str) and _user(text) is None:
        return text
    return None
