"""Registry credentials: the caller's, or those ``docker login`` saved, and
the ``WWW-Authenticate`` challenges that say how to use them."""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .. import errors

__all__ = ["Challenge", "Credentials", "docker_config_credentials", "parse_challenge"]

_PARAM = re.compile(r'\s*([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and password (or identity token) for one registry."""

    username: str
    password: str

    def __repr__(self) -> str:
        # Never show the secret in logs or tracebacks.
        return f"Credentials(username={self.username!r}, password=...)"

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # "basic" or "bearer", lower case
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` header, or None."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {}
    for match in _PARAM.finditer(rest):
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", value or "")
    return Challenge(scheme.lower(), params)


def _config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def docker_config_credentials(domain: str, path: Path | None = None) -> Credentials | None:
    """The credentials ``docker login DOMAIN`` stored in ``~/.docker/config.json``
    (or ``$DOCKER_CONFIG``), if any. Credential helpers are not run."""
    file = path or _config_path()
    try:
        with open(file, "rb") as f:
            data = json.loads(f.read(1 << 20))
    except (OSError, ValueError):
        return None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    keys = [domain, f"https://{domain}", f"http://{domain}"]
    if domain == "docker.io":
        keys += ["https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io"]
    for key in keys:
        entry = auths.get(key) or auths.get(key + "/")
        if isinstance(entry, dict):
            return _entry_credentials(entry, domain)
    return None


def _entry_credentials(entry: dict[str, object], domain: str) -> Credentials | None:
    user, password = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(password, str) and user:
        return Credentials(user, password)
    token = entry.get("identitytoken")
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            user_text, _, secret = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise errors.InvalidArgument(
                f"the docker config's auth entry for {domain} is not base64 user:password"
            ) from None
        return Credentials(user_text, secret)
    if isinstance(token, str) and token:
        return Credentials("<token>", token)
    return None
