"""Image references: ``[domain/]path[:tag][@digest]``, normalised as docker does."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .. import errors

__all__ = ["DOCKER_HUB", "Reference", "parse_reference"]

DOCKER_HUB = "docker.io"
# The hub's API lives on another host than the name users write.
_HUB_API = "registry-1.docker.io"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}\Z")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\Z")


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed image reference.

    Attributes:
        domain: the registry as users name it (``docker.io``, ``127.0.0.1:5000``).
        path: the repository inside it (``library/busybox``).
        tag: the tag, or ``None`` when only a digest was given.
        digest: the manifest digest the caller pinned, if any.
    """

    domain: str
    path: str
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        text = f"{self.domain}/{self.path}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def api_host(self) -> str:
        """The host:port whose ``/v2/`` API serves this repository."""
        return _HUB_API if self.domain == DOCKER_HUB else self.domain

    @property
    def hostname(self) -> str:
        """The domain without its port (and without IPv6 brackets)."""
        host = self.domain
        if host.startswith("["):
            return host[1 : host.index("]")]
        return host.rsplit(":", 1)[0] if ":" in host else host

    @property
    def is_loopback(self) -> bool:
        """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
        host = self.hostname
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def object(self) -> str:
        """What the registry is asked for: the digest if pinned, else the tag."""
        return self.digest if self.digest is not None else (self.tag or "latest")


def parse_reference(text: str) -> Reference:
    """Parse and normalise a reference: ``busybox`` is
    ``docker.io/library/busybox:latest``.

    Raises:
        InvalidArgument: not a reference this library can pull.
    """
    if not isinstance(text, str) or not text or len(text) > 4096 or text != text.strip():
        raise errors.InvalidArgument(f"not an image reference: {text!r}")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise errors.InvalidArgument(f"unsupported digest in {text!r} (sha256 only)")
    tag = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
        if not _TAG.match(tag):
            raise errors.InvalidArgument(f"bad tag in {text!r}")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost" or "[" in first):
        domain, path = first, remainder
        if not _DOMAIN.match(domain):
            raise errors.InvalidArgument(f"bad registry domain in {text!r}")
    else:
        domain, path = DOCKER_HUB, rest
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not path or not all(_COMPONENT.match(c) for c in path.split("/")):
        raise errors.InvalidArgument(f"bad repository name in {text!r}")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(domain, path, tag, digest)
