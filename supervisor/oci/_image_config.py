"""An image's run settings as a public frozen value: what ``docker image
inspect`` shows under ``Config``, read from the image's config blob.

Every field is read defensively: the config comes from whoever built the
image, so a field of the wrong type reads as absent rather than failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ImageConfig", "ImageHealthcheck", "image_config"]

_NANOSECONDS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class ImageHealthcheck:
    """docker's ``Healthcheck`` of an image config.

    Attributes:
        test: ``("CMD", arg, ...)``, ``("CMD-SHELL", command)`` or
            ``("NONE",)`` (checks disabled), as the image states it.
        interval, timeout, start_period: seconds, or None where the image
            leaves docker's default.
        retries: consecutive failures before unhealthy, or None (default).
    """

    test: tuple[str, ...]
    interval: float | None = None
    timeout: float | None = None
    start_period: float | None = None
    retries: int | None = None


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The run settings of an image, as :meth:`supervisor.Client.image` reads them.

    Attributes:
        ref: the full reference it is stored under
            (``docker.io/library/busybox:latest``).
        digest: the digest of the manifest chosen for this platform.
        entrypoint, cmd: the image's ``Entrypoint`` and ``Cmd`` (the process
            is ``entrypoint + cmd``).
        env: ``KEY=VALUE`` entries, in the image's order.
        working_dir: the process's working directory ("" when unset: ``/``).
        user: ``uid[:gid]`` or a user name, as the image states it ("" = root).
        exposed_ports: ``"80/tcp"``-style keys of ``ExposedPorts``, sorted.
        stop_signal: ``StopSignal`` (``"SIGQUIT"``, ``"15"``...) or None.
        labels: the image's ``Labels``.
        healthcheck: its ``Healthcheck``, or None.
    """

    ref: str
    digest: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    stop_signal: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    healthcheck: ImageHealthcheck | None = None


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return ()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _seconds(value: Any) -> float | None:
    # docker writes durations as integer nanoseconds; 0 means "the default".
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value / _NANOSECONDS


def _healthcheck(value: Any) -> ImageHealthcheck | None:
    if not isinstance(value, Mapping):
        return None
    test = _strings(value.get("Test"))
    if not test:
        return None
    retries = value.get("Retries")
    ok = isinstance(retries, int) and not isinstance(retries, bool) and retries > 0
    return ImageHealthcheck(
        test,
        interval=_seconds(value.get("Interval")),
        timeout=_seconds(value.get("Timeout")),
        start_period=_seconds(value.get("StartPeriod")),
        retries=retries if ok else None,
    )


def image_config(ref: str, digest: str, config: Mapping[str, Any]) -> ImageConfig:
    """The value for an image's ``config`` object (the blob's ``config`` key)."""
    ports = config.get("ExposedPorts")
    labels = config.get("Labels")
    stop = config.get("StopSignal")
    return ImageConfig(
        ref=ref,
        digest=digest,
        entrypoint=_strings(config.get("Entrypoint")),
        cmd=_strings(config.get("Cmd")),
        env=_strings(config.get("Env")),
        working_dir=_text(config.get("WorkingDir")),
        user=_text(config.get("User")),
        exposed_ports=tuple(sorted(k for k in ports if isinstance(k, str)))
        if isinstance(ports, Mapping)
        else (),
        stop_signal=stop if isinstance(stop, str) and stop else None,
        labels={k: v for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)}
        if isinstance(labels, Mapping)
        else {},
        healthcheck=_healthcheck(config.get("Healthcheck")),
    )
