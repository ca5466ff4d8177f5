"""Errors a CNI plugin reports, as classes of :mod:`supervisor.errors`.

A plugin that fails prints ``{"code": N, "msg": ..., "details": ...}`` on
stdout (CNI spec, "Error").  :func:`plugin_error` turns that into a
:class:`PluginError` that is *also* the :mod:`supervisor.errors` class the
code means, so a caller can catch ``InvalidArgument`` for a bad
configuration without knowing about CNI, or ``PluginError`` to read the
plugin's name and code::

    PluginError (SupervisorError)
    ├── code 1 (incompatible version)          also FailedPrecondition
    ├── codes 2, 4, 6, 7 (bad field/env/json)  also InvalidArgument
    ├── code 3 (container unknown)             also NotFound
    ├── code 11 (try again later)              also Unavailable
    └── anything else (5, 999, unparsable)     also Unknown
"""

from __future__ import annotations

from .. import errors

__all__ = ["PluginError", "plugin_error"]

# The codes the CNI spec (1.0/1.1) reserves, for messages.
CNI_CODES: dict[int, str] = {
    1: "incompatible CNI version",
    2: "unsupported field in network configuration",
    3: "container unknown or does not exist",
    4: "invalid necessary environment variables",
    5: "I/O failure",
    6: "failed to decode content",
    7: "invalid network config",
    11: "try again later",
    50: "the plugin is not available",
    51: "the plugin is not available due to invalid configuration",
}


class PluginError(errors.SupervisorError):
    """A CNI plugin ran and reported a failure (or produced no usable answer).

    Attributes:
        plugin: the plugin's type (its binary's name), e.g. ``"bridge"``.
        command: the CNI command it was running (``ADD``, ``DEL``, ...).
        code: the CNI error code it returned, or ``None`` when it exited
            without a parsable error (then ``details`` holds its stderr).
        msg: the plugin's own message.
        details: the plugin's ``details`` field (or the tail of its stderr).
    """

    def __init__(
        self,
        message: str,
        *,
        plugin: str,
        command: str,
        code: int | None,
        msg: str,
        details: str = "",
        container_id: str | None = None,
    ) -> None:
        super().__init__(message, container_id=container_id)
        self.plugin = plugin
        self.command = command
        self.code = code
        self.msg = msg
        self.details = details


class PluginIncompatible(PluginError, errors.FailedPrecondition):
    """The plugin does not speak the configuration's CNI version."""


class PluginInvalidArgument(PluginError, errors.InvalidArgument):
    """The plugin refused its configuration, arguments or input."""


class PluginNotFound(PluginError, errors.NotFound):
    """The plugin does not know the container (CNI code 3)."""


class PluginUnavailable(PluginError, errors.Unavailable):
    """The plugin asked to be called again later (CNI code 11, 50, 51)."""


class PluginUnknown(PluginError, errors.Unknown):
    """Any other plugin failure."""


_BY_CODE: dict[int, type[PluginError]] = {
    1: PluginIncompatible,
    2: PluginInvalidArgument,
    3: PluginNotFound,
    4: PluginInvalidArgument,
    6: PluginInvalidArgument,
    7: PluginInvalidArgument,
    11: PluginUnavailable,
    50: PluginUnavailable,
    51: PluginUnavailable,
}


def plugin_error(
    *,
    plugin: str,
    command: str,
    code: int | None,
    msg: str,
    details: str = "",
    container_id: str | None = None,
) -> PluginError:
    """The error for a plugin's failure, of the class its CNI code means."""
    cls = _BY_CODE.get(code, PluginUnknown) if code is not None else PluginUnknown
    meaning = CNI_CODES.get(code, "plugin error") if code is not None else "no error result"
    text = f"CNI plugin {plugin!r} failed {command}"
    text += f": code {code} ({meaning})" if code is not None else f" ({meaning})"
    if msg:
        text += f": {msg}"
    if details:
        text += f"; {details}"
    return cls(
        text,
        plugin=plugin,
        command=command,
        code=code,
        msg=msg,
        details=details,
        container_id=container_id,
    )
