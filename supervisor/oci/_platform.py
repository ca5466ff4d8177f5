"""Platforms (``os/architecture[/variant]``) and choosing one from an index."""

from __future__ import annotations

import platform as _stdlib_platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import errors

__all__ = ["Platform", "host_platform", "parse_platform", "select_platform"]

_MACHINES: dict[str, tuple[str, str]] = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}


@dataclass(frozen=True, slots=True)
class Platform:
    """What an image's binaries run on, as OCI indexes describe it."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text

    def normalized(self) -> Platform:
        # arm64 images rarely say v8, and arm ones without a variant mean v7.
        variant = self.variant
        if self.architecture == "arm64" and variant in ("", "v8"):
            variant = "v8"
        if self.architecture == "arm" and not variant:
            variant = "v7"
        return Platform(self.os.lower(), self.architecture.lower(), variant)

    @classmethod
    def from_json(cls, value: Any) -> Platform | None:
        if not isinstance(value, dict):
            return None
        os_name, arch = value.get("os"), value.get("architecture")
        if not isinstance(os_name, str) or not isinstance(arch, str):
            return None
        variant = value.get("variant")
        return cls(os_name, arch, variant if isinstance(variant, str) else "")


def host_platform() -> Platform:
    """The platform of this machine (``linux/amd64`` here)."""
    os_name = "windows" if sys.platform == "win32" else "linux"
    machine = _stdlib_platform.machine().lower()
    arch, variant = _MACHINES.get(machine, (machine, ""))
    return Platform(os_name, arch, variant)


def parse_platform(text: str) -> Platform:
    """``linux/arm64/v8`` as a :class:`Platform`.

    Raises:
        InvalidArgument: not ``os/arch`` or ``os/arch/variant``.
    """
    parts = text.split("/") if isinstance(text, str) else []
    if len(parts) not in (2, 3) or not all(parts):
        raise errors.InvalidArgument(f"bad platform {text!r} (os/arch[/variant] expected)")
    return Platform(*parts)


def select_platform(want: Platform, candidates: Sequence[Platform | None]) -> int:
    """The index of the candidate that best runs on ``want``: same os and
    architecture, the same variant preferred, then one without a variant.

    Raises:
        NotFound: none fits.
    """
    target = want.normalized()
    fallback = -1
    for i, candidate in enumerate(candidates):
        if candidate is None:
            continue
        have = candidate.normalized()
        if (have.os, have.architecture) != (target.os, target.architecture):
            continue
        if have.variant == target.variant:
            return i
        if not candidate.variant and fallback < 0:
            fallback = i
    if fallback >= 0:
        return fallback
    offered = ", ".join(str(c) for c in candidates if c is not None) or "none"
    raise errors.NotFound(f"no manifest for platform {want} (the index offers {offered})")
