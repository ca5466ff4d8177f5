"""How a registry is spoken to: plain HTTP or TLS, and with which
certificates, found the way containerd and docker find them.

For a registry ``HOST`` (as the reference names it, ``host[:port]``), in
this order:

1. what the call passes: ``tls_ca`` (a PEM file of CA certificates),
   ``tls_cert``/``tls_key`` (a client certificate and its key),
   ``plain_http``, ``skip_verify``;
2. each hosts directory in turn (default ``/etc/containerd/certs.d`` then
   ``/etc/docker/certs.d``; ``$SUPERVISOR_CERTS_DIRS``, colon-separated,
   or ``certs_dirs=`` replace them): ``<dir>/HOST/hosts.toml`` as containerd
   reads it (``server``, ``ca``, ``client``, ``skip_verify``, and the
   ``[host."URL"]`` table naming HOST itself; mirrors are not used), else
   the files there as docker reads them: every ``*.crt`` is a CA, every
   ``*.cert`` with the ``*.key`` of the same name a client certificate;
3. the system's trust store (OpenSSL's default paths, so ``SSL_CERT_FILE``
   and ``SSL_CERT_DIR`` count), to which the CAs found above are added.

CAs add up; the first client certificate found is used. A registry on a
loopback address is tried over HTTPS first and, when nothing there speaks
TLS, over plain HTTP (as docker does); any other is HTTPS unless
``plain_http`` (or ``server = "http://..."`` in its ``hosts.toml``).
"""

from __future__ import annotations

import os
import ssl
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import errors

__all__ = [
    "CERTS_DIRS_ENV",
    "DEFAULT_CERTS_DIRS",
    "TLSOptions",
    "TLSSettings",
    "default_context",
    "resolve_tls",
]

DEFAULT_CERTS_DIRS = ("/etc/containerd/certs.d", "/etc/docker/certs.d")
CERTS_DIRS_ENV = "SUPERVISOR_CERTS_DIRS"
# hosts.toml and PEM files are small; a bigger one is not what it claims.
_MAX_FILE = 1 << 20


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """What a pull's caller asked for (see the module's docstring)."""

    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    plain_http: bool = False
    skip_verify: bool = False
    certs_dirs: tuple[str, ...] | None = None  # None: the env var or the defaults


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """What was found for one registry: the schemes to try, in order, and
    the SSL context for HTTPS (also for a plain-HTTP registry, whose
    redirects may lead to HTTPS)."""

    schemes: tuple[str, ...]
    context: ssl.SSLContext
    # Where each setting came from, for messages and debugging.
    sources: tuple[str, ...] = field(default_factory=tuple)


@dataclass
class _Found:
    cas: list[str] = field(default_factory=list)
    client: tuple[str, str | None] | None = None
    skip_verify: bool = False
    plain_http: bool = False
    sources: list[str] = field(default_factory=list)


def certs_dirs(given: Sequence[str] | None) -> tuple[str, ...]:
    if given is not None:
        return tuple(os.fspath(d) for d in given)
    env = os.environ.get(CERTS_DIRS_ENV)
    if env is not None:
        return tuple(d for d in env.split(os.pathsep) if d)
    return DEFAULT_CERTS_DIRS


def _read(path: Path, what: str) -> bytes:
    # Non-blocking and regular files only: a FIFO put in a certs directory
    # must not hold the pull in open().
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise errors.from_os_error(exc, f"cannot read {what} {path}", given=True) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise errors.InvalidArgument(f"{what} {path} is not a regular file")
        data = os.read(fd, _MAX_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_FILE:
        raise errors.InvalidArgument(f"{what} {path} is larger than {_MAX_FILE} bytes")
    return data


def _host_entry(doc: dict[str, Any], hosts: Sequence[str]) -> dict[str, Any]:
    """The ``[host."URL"]`` table naming one of ``hosts`` itself, if any."""
    tables = doc.get("host")
    if not isinstance(tables, dict):
        return {}
    for url, table in tables.items():
        if not isinstance(table, dict) or not isinstance(url, str):
            continue
        bare = url.split("://", 1)[-1].split("/", 1)[0]
        if bare in hosts:
            return {**table, "server": url}
    return {}


def _from_hosts_toml(path: Path, hosts: Sequence[str], found: _Found) -> None:
    import tomllib

    try:
        doc = tomllib.loads(_read(path, "hosts file").decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise errors.InvalidArgument(f"hosts file {path} is not TOML: {exc}") from None
    base = path.parent

    def absolute(p: object) -> str:
        if not isinstance(p, str) or not p:
            raise errors.InvalidArgument(f"hosts file {path}: bad path {p!r}")
        return str(base / p) if not os.path.isabs(p) else p

    for table in (doc, _host_entry(doc, hosts)):
        server = table.get("server")
        if isinstance(server, str) and server.startswith("http://"):
            found.plain_http = True
        if table.get("skip_verify") is True:
            found.skip_verify = True
        ca = table.get("ca")
        for item in [ca] if isinstance(ca, str) else ca if isinstance(ca, list) else []:
            found.cas.append(absolute(item))
        client = table.get("client")
        pairs = [client] if isinstance(client, str) else client if isinstance(client, list) else []
        for pair in pairs:
            if found.client is not None:
                break
            if isinstance(pair, str):
                found.client = (absolute(pair), None)
            elif isinstance(pair, list) and len(pair) == 2:
                found.client = (absolute(pair[0]), absolute(pair[1]))
            else:
                raise errors.InvalidArgument(f"hosts file {path}: bad client {pair!r}")
    found.sources.append(str(path))


def _from_directory(directory: Path, found: _Found) -> None:
    """docker's convention: ``*.crt`` CAs, ``*.cert``/``*.key`` pairs."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return
    for name in names:
        path = directory / name
        if name.endswith(".crt"):
            found.cas.append(str(path))
        elif name.endswith(".cert") and found.client is None:
            key = directory / (name[: -len(".cert")] + ".key")
            if not key.exists():
                raise errors.InvalidArgument(f"client certificate {path} has no {key.name}")
            found.client = (str(path), str(key))
    found.sources.append(str(directory))


def resolve_tls(domain: str, api_host: str, loopback: bool, opts: TLSOptions) -> TLSSettings:
    """The settings for registry ``domain`` (blocking: it reads files).

    Raises:
        InvalidArgument: a certificate, key or hosts file that cannot be
            read or is not what it should be; a key without a certificate.
    """
    if opts.tls_key is not None and opts.tls_cert is None:
        raise errors.InvalidArgument("tls_key needs tls_cert")
    found = _Found(skip_verify=opts.skip_verify, plain_http=opts.plain_http)
    if opts.tls_ca is not None:
        found.cas.append(os.fspath(opts.tls_ca))
        found.sources.append("tls_ca")
    if opts.tls_cert is not None:
        key = os.fspath(opts.tls_key) if opts.tls_key is not None else None
        found.client = (os.fspath(opts.tls_cert), key)
        found.sources.append("tls_cert")
    hosts = [domain] if api_host == domain else [domain, api_host]
    for root in certs_dirs(opts.certs_dirs):
        for host in hosts:
            directory = Path(root) / host
            if (directory / "hosts.toml").exists():
                _from_hosts_toml(directory / "hosts.toml", hosts, found)
            elif directory.is_dir():
                _from_directory(directory, found)
    if found.plain_http:
        # A redirect may still lead to HTTPS (blob storage): verified.
        return TLSSettings(("http",), default_context(), tuple(found.sources))
    context = _context(found)
    schemes = ("https", "http") if loopback else ("https",)
    return TLSSettings(schemes, context, tuple(found.sources))


_defaults: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


def default_context() -> ssl.SSLContext:
    """The system store's context, made once per ``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR``: loading the store costs tens of milliseconds, more
    than a small pull's own work. Never modified once made."""
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    context = _defaults.get(key)
    if context is None:
        context = _defaults[key] = ssl.create_default_context()
    return context


def _context(found: _Found) -> ssl.SSLContext:
    if not found.cas and found.client is None and not found.skip_verify:
        return default_context()
    context = ssl.create_default_context()
    for ca in found.cas:
        data = _read(Path(ca), "CA file")
        try:
            context.load_verify_locations(cadata=data.decode("ascii", errors="replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise errors.InvalidArgument(
                f"CA file {ca} holds no usable certificate: {exc}"
            ) from None
    if found.client is not None:
        cert, key = found.client
        for path in (cert, key):
            if path is not None:
                _read(Path(path), "client certificate or key")  # the same checks, early
        try:
            context.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as exc:
            raise errors.InvalidArgument(
                f"client certificate {cert} (key {key or cert}) cannot be used: {exc}"
            ) from None
    if found.skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
