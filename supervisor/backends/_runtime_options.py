"""A container's runtime and the options of its shim, as containerd stores them.

Loaded by creates alone: only they need the shims' option messages, and a
command that only lists containers should not pay for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import errors
from .._proto.containerd.services.containers import v1 as pb_containers
from .._proto.google.protobuf import Any as PbAny
from . import runhcs

__all__ = ["container_runtime"]


def container_runtime(
    runtime: str,
    runtime_options: Mapping[str, Any] | None,
    spec: Mapping[str, Any],
    *,
    container_id: str,
) -> pb_containers.ContainerRuntime:
    """``runtime`` with its options packed for its shim.

    Raises:
        InvalidArgument: options the shim's message does not take, or (for
            runhcs) a spec without its layer folders.
    """
    rt = pb_containers.ContainerRuntime(name=runtime)
    if runtime == runhcs.RUNTIME:
        # Layer folders checked, and Debug set at debug level, even
        # without options of the caller's.
        runhcs.check_spec(spec, container_id=container_id)
        rt.options = runhcs.options_any(runtime_options, container_id=container_id)
    elif runtime_options is not None:
        try:
            rt.options = _runtime_options_any(runtime, runtime_options)
        except (TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise errors.InvalidArgument(
                f"bad runtime options: {exc}", container_id=container_id
            ) from exc
    return rt


def _runtime_options_any(runtime: str, options: Mapping[str, Any]) -> PbAny:
    # The shim decodes options by the bare proto name, as containerd's typeurl
    # registry writes it; betterproto's own Any.pack would add a googleapis prefix.
    if runtime == "io.containerd.runtime.v1.linux":
        from .._proto.containerd.linux import runc as pb_runc_v1

        return PbAny(
            type_url="containerd.linux.runc.RuncOptions",
            value=bytes(pb_runc_v1.RuncOptions(**options)),
        )
    from .._proto.containerd.runc import v1 as pb_runc

    return PbAny(type_url="containerd.runc.v1.Options", value=bytes(pb_runc.Options(**options)))
