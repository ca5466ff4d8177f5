"""Registry credentials: the caller's, or those ``podman login`` /
``skopeo login`` saved (``auth.json``) or ``docker login`` saved (in
``config.json`` or through a credential helper), and the
``WWW-Authenticate`` challenges that say how to use them."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import stat
from dataclasses import dataclass
from pathlib import Path

from .. import errors

__all__ = [
    "Challenge",
    "Credentials",
    "auth_json_credentials",
    "auth_json_paths",
    "configured_credentials",
    "docker_config_credentials",
    "parse_challenge",
]

_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_HUB_SERVER = "https://index.docker.io/v1/"
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


def auth_json_paths() -> list[Path]:
    """Where podman and skopeo keep credentials, in the order they look:
    ``$REGISTRY_AUTH_FILE``, ``$XDG_RUNTIME_DIR/containers/auth.json``,
    ``~/.config/containers/auth.json``."""
    paths = []
    given = os.environ.get("REGISTRY_AUTH_FILE")
    if given:
        paths.append(Path(given))
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        paths.append(Path(runtime) / "containers" / "auth.json")
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    paths.append(Path(config_home) / "containers" / "auth.json")
    return paths


def auth_json_credentials(domain: str, repository: str = "") -> Credentials | None:
    """The credentials an ``auth.json`` (see :func:`auth_json_paths`) holds
    for ``domain``, the entry of the longest ``domain/repository`` prefix
    first (``auth.json`` may key credentials by namespace or repository)."""
    keys = []
    parts = repository.split("/") if repository else []
    for i in range(len(parts), 0, -1):
        keys.append(f"{domain}/{'/'.join(parts[:i])}")
    for path in auth_json_paths():
        config = _read_config(path)
        auths = config.get("auths")
        if not isinstance(auths, dict):
            continue
        for key in keys:
            entry = auths.get(key)
            if isinstance(entry, dict):
                return _entry_credentials(entry, domain)
        found = _from_auths(config, domain)
        if found is not None:
            return found
    return None


def _read_config(path: Path | None) -> dict[str, object]:
    # Non-blocking and a regular file only: a FIFO put there would otherwise
    # hold the event loop's thread in open() until someone wrote to it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path or _config_path(), flags)
    except OSError:
        return {}
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {}
        data = json.loads(os.read(fd, 1 << 20))
    except (OSError, ValueError, RecursionError):
        return {}
    finally:
        os.close(fd)
    return data if isinstance(data, dict) else {}


def docker_config_credentials(domain: str, path: Path | None = None) -> Credentials | None:
    """The credentials ``docker login DOMAIN`` stored in ``~/.docker/config.json``
    (or ``$DOCKER_CONFIG``) itself, if any; see :func:`configured_credentials`
    for the credential helpers."""
    return _from_auths(_read_config(path), domain)


def _from_auths(config: dict[str, object], domain: str) -> Credentials | None:
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return None
    keys = [domain, f"https://{domain}", f"http://{domain}"]
    if domain == "docker.io":
        keys += [_HUB_SERVER, "index.docker.io", "registry-1.docker.io"]
    for key in keys:
        entry = auths.get(key) or auths.get(key + "/")
        if isinstance(entry, dict):
            return _entry_credentials(entry, domain)
    return None


async def configured_credentials(
    domain: str, path: Path | None = None, *, limit: float = 30.0, repository: str = ""
) -> Credentials | None:
    """What ``podman login`` or ``docker login DOMAIN`` left: first an
    ``auth.json`` entry (:func:`auth_json_credentials`; skipped when
    ``path`` names a docker config), then docker's config as docker reads
    it: the registry's credential helper (``credHelpers``), else the
    default store (``credsStore``), else ``auths``. A helper is run as
    ``docker-credential-NAME get`` from ``PATH``, bounded by ``limit`` seconds.

    Raises:
        InvalidArgument: a helper name that is not one.
        FailedPrecondition: the helper is missing, fails, answers nonsense or
            does not answer in time.
    """
    if not 0 < limit < float("inf"):  # NaN fails too
        raise errors.InvalidArgument(f"credential helper limit {limit!r}")
    if path is None:
        found = auth_json_credentials(domain, repository)
        if found is not None:
            return found
    config = _read_config(path)
    server = _HUB_SERVER if domain == "docker.io" else domain
    helpers = config.get("credHelpers")
    helper = None
    if isinstance(helpers, dict):
        # docker keys Docker Hub's entry by its index address.
        helper = helpers.get(domain) or (helpers.get(server) if server != domain else None)
    if not isinstance(helper, str) or not helper:
        store = config.get("credsStore")
        helper = store if isinstance(store, str) and store else None
    if helper is not None:
        return await _from_helper(helper, server, limit)
    return _from_auths(config, domain)


async def _from_helper(helper: str, server: str, limit: float) -> Credentials | None:
    import shutil

    if not _HELPER_NAME.fullmatch(helper):
        raise errors.InvalidArgument(f"the docker config names credential helper {helper!r}")
    name = f"docker-credential-{helper}"
    # Absolute PATH entries only: an empty or relative one would run a
    # program from whatever the current directory is (docker refuses too).
    path = os.pathsep.join(
        d for d in os.environ.get("PATH", "").split(os.pathsep) if os.path.isabs(d)
    )
    found = shutil.which(name, path=path)
    if found is None:
        raise errors.FailedPrecondition(f"credential helper {name} is not on PATH")
    try:
        code, out, err = await _run_helper(found, server, limit)
    except TimeoutError:
        raise errors.FailedPrecondition(f"{name} did not answer within {limit}s") from None
    except OSError as exc:
        raise errors.FailedPrecondition(f"cannot run {name}: {exc}") from None
    said = (out + err).decode(errors="replace").strip()
    if code != 0:
        if "credentials not found" in said.lower():
            return None
        raise errors.FailedPrecondition(f"{name} get failed: {said[:200]}")
    try:
        answer = json.loads(out)
        user, secret = answer["Username"], answer["Secret"]
    except (ValueError, TypeError, KeyError, RecursionError):
        raise errors.FailedPrecondition(
            f"{name} answered something that is not credentials"
        ) from None
    if not isinstance(user, str) or not isinstance(secret, str):
        raise errors.FailedPrecondition(f"{name} answered something that is not credentials")
    return Credentials(user, secret) if user or secret else None


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


async def _run_helper(executable: str, server: str, limit: float) -> tuple[int, bytes, bytes]:
    """``executable get`` with ``server`` on its stdin: its exit code, stdout
    and stderr (each at most 1 MiB). Killed if it outlives ``limit`` or the
    caller is cancelled."""
    import anyio
    from anyio.abc import ByteReceiveStream

    out, err = bytearray(), bytearray()

    async def drain(stream: ByteReceiveStream | None, into: bytearray) -> None:
        if stream is not None:
            async for chunk in stream:
                if len(into) < 1 << 20:
                    into += chunk

    # A session of its own: the helper and anything it started die together.
    process = await anyio.open_process([executable, "get"], start_new_session=True)
    try:
        with anyio.fail_after(limit):
            async with anyio.create_task_group() as tg:
                tg.start_soon(drain, process.stdout, out)
                tg.start_soon(drain, process.stderr, err)
                if process.stdin is not None:
                    # A helper may exit without reading what it was asked.
                    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                        await process.stdin.send(server.encode())
                    await process.stdin.aclose()
                code = await process.wait()
                # Its answer is in; a child it left holding the pipes must
                # not keep us reading: the rest of its output gets a moment.
                tg.cancel_scope.deadline = anyio.current_time() + 0.5
    finally:
        killpg = getattr(os, "killpg", None)
        if killpg is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                killpg(process.pid, signal.SIGKILL)
        elif process.returncode is None:
            process.kill()
        with anyio.move_on_after(5, shield=True):
            await process.aclose()
    return code, bytes(out), bytes(err)
