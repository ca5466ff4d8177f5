"""The registry HTTP API v2, read side, over httpx: manifests and blobs,
with token and basic authentication.

A registry is hostile input like an archive: every body is read up to a
bound (an error body :data:`ERROR_BODY_LIMIT`, a token reply
:data:`TOKEN_LIMIT`, a manifest ``MAX_MANIFEST_SIZE``, a blob its
descriptor's size), and every transfer must keep up :data:`MIN_RATE` over
each window of ``http_timeout`` seconds spent waiting for it, so that a
server sending one byte a second cannot keep a pull alive forever.

httpx is imported when a :class:`Registry` is first opened, so that
``import supervisor`` never pays for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .. import errors
from .._log import get_logger
from ..oci._digest import Verifier, sha256_digest
from ..oci._manifest import ACCEPT, MAX_MANIFEST_SIZE, Descriptor, media_type_of
from ._auth import Credentials, configured_credentials, parse_challenge
from ._reference import Reference
from ._tls import TLSOptions, resolve_tls

if TYPE_CHECKING:
    import httpx

__all__ = ["ERROR_BODY_LIMIT", "MIN_RATE", "TOKEN_LIMIT", "Registry"]

_log = get_logger("images.registry")
# What of an error body is read (it is only shown, cut to 200 characters).
ERROR_BODY_LIMIT = 4096
# A token reply is a JWT or two in JSON: a few KiB; more is refused.
TOKEN_LIMIT = 1 << 20
# Bytes per second a transfer must average over each window of
# ``http_timeout`` seconds spent waiting for the registry.
MIN_RATE = 10 * 1024


def tag_registry(exc: BaseException, host: str) -> None:
    """Record on a :mod:`supervisor.errors` exception which registry it came
    from (its ``registry`` attribute: ``host[:port]``), so that a caller can
    tell a registry's failure from containerd's."""
    if isinstance(exc, errors.SupervisorError) and getattr(exc, "registry", None) is None:
        exc.registry = host


class _Pace:
    """The minimum rate of one transfer: each window of ``window`` seconds
    spent waiting for bytes must bring ``MIN_RATE * window`` of them (the
    time spent writing to containerd in between does not count)."""

    def __init__(self, window: float, what: str) -> None:
        self.window = window
        self.need = max(1, int(MIN_RATE * window))
        self.what = what
        self._waited = 0.0
        self._got = 0

    async def next(self, chunks: AsyncIterator[bytes]) -> bytes | None:
        """The next chunk, None at the end; DeadlineExceeded if the window
        runs out first."""
        import anyio

        start = anyio.current_time()
        with anyio.move_on_after(max(0.0, self.window - self._waited)) as scope:
            chunk = await anext(chunks, None)
        if scope.cancelled_caught:
            raise errors.DeadlineExceeded(
                f"{self.what}: slower than the minimum rate of {MIN_RATE} bytes/s "
                f"over {self.window}s"
            )
        self._waited += anyio.current_time() - start
        if chunk is not None:
            self._got += len(chunk)
            if self._got >= self.need:
                self._waited, self._got = 0.0, 0
        return chunk


def _refused_certificate(exc: BaseException) -> bool:
    import ssl

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _separator(obj: str) -> str:
    return "@" if obj.startswith("sha256:") else ":"


@contextlib.contextmanager
def map_http_errors(what: str) -> Iterator[None]:
    """The one place where httpx's failures become :mod:`supervisor.errors`."""
    import httpx

    try:
        yield
    except errors.SupervisorError:
        raise
    except httpx.TimeoutException as exc:
        raise errors.DeadlineExceeded(f"{what}: the registry did not answer in time") from exc
    except httpx.InvalidURL as exc:
        raise errors.InvalidArgument(f"{what}: {exc}") from exc
    except httpx.ConnectError as exc:
        if _refused_certificate(exc):
            # Not something a retry mends: the caller must say whom to trust.
            raise errors.FailedPrecondition(
                f"{what}: the registry's certificate is not trusted ({exc}); "
                "give its CA (tls_ca, a certs.d directory, SSL_CERT_FILE) or skip_verify"
            ) from exc
        raise errors.Unavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
    except (httpx.HTTPError, httpx.StreamError, OSError) as exc:
        raise errors.Unavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


def _status_error(status: int, what: str, body: bytes = b"") -> errors.SupervisorError:
    text = body[:200].decode(errors="replace").strip()
    detail = f"{what}: HTTP {status}" + (f": {text}" if text else "")
    if status == 404:
        return errors.NotFound(detail)
    if status in (401, 403):
        return errors.FailedPrecondition(detail + " (access denied: check the credentials)")
    if status == 429 or status >= 500:
        return errors.Unavailable(detail)
    return errors.Unknown(detail)


class Registry:
    """One repository of one registry, for the length of an ``async with``.

    How it is reached (plain HTTP or TLS, which certificates) is worked out
    on entry from ``tls`` and the hosts directories: see
    :mod:`supervisor.images._tls`. ``insecure=True`` is the deprecated
    spelling of ``plain_http``.
    """

    def __init__(
        self,
        ref: Reference,
        *,
        tls: TLSOptions | None = None,
        insecure: bool = False,
        credentials: Credentials | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.ref = ref
        tls = tls if tls is not None else TLSOptions()
        if insecure and not tls.plain_http:
            tls = dataclasses.replace(tls, plain_http=True)
        self._tls = tls
        self._schemes: tuple[str, ...] = ("https",)
        # Set once an answer came: the scheme is then fixed for the pull.
        self._settled = False
        self._base = ""
        self._credentials = credentials
        self._timeout = timeout
        self._authorization: str | None = None
        self._client: httpx.AsyncClient | None = None

    def _set_scheme(self, scheme: str) -> None:
        self._base = f"{scheme}://{self.ref.api_host}/v2/{self.ref.path}"

    async def __aenter__(self) -> Registry:
        import anyio
        import httpx

        with self._tagged():
            settings = await anyio.to_thread.run_sync(
                resolve_tls, self.ref.domain, self.ref.api_host, self.ref.is_loopback, self._tls
            )
            if self._credentials is None:
                self._credentials = await configured_credentials(
                    self.ref.domain, limit=self._timeout, repository=self.ref.path
                )
        self._schemes = settings.schemes
        self._set_scheme(settings.schemes[0])
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout),
            follow_redirects=True,
            trust_env=False,
            verify=settings.context,
            headers={"User-Agent": "containerd-supervisor"},
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    @contextlib.contextmanager
    def _tagged(self) -> Iterator[None]:
        try:
            yield
        except errors.SupervisorError as exc:
            tag_registry(exc, self.ref.domain)
            raise

    @property
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise errors.Closed("the registry client is not open")
        return self._client

    async def _send(self, method: str, path: str, headers: dict[str, str], what: str) -> Any:
        """Send to ``path`` under the repository's API with our
        Authorization, answering one 401 challenge; the response is
        streamed, and the caller closes it."""
        http = self._http
        for attempt in range(2):
            request_headers = dict(headers)
            if self._authorization is not None:
                request_headers["Authorization"] = self._authorization
            request = http.build_request(method, self._base + path, headers=request_headers)
            response = await self._send_once(request, what, registry=True)
            self._settled = True
            if response.status_code != 401 or attempt:
                return response
            challenge = response.headers.get("www-authenticate", "")
            await response.aclose()
            await self._authenticate(challenge, what)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_once(self, request: Any, what: str, *, registry: bool = False) -> Any:
        """The response's head, which must come within ``http_timeout``
        however it trickles in. A ``registry`` request to a loopback
        registry that does not speak TLS is sent again over plain HTTP."""
        import anyio
        import httpx

        with map_http_errors(what), anyio.move_on_after(self._timeout) as scope:
            try:
                return await self._http.send(request, stream=True)
            except httpx.ConnectError as exc:
                if not (registry and self._may_fall_back(exc)):
                    raise
            _log.debug("registry.plain_http", registry=self.ref.domain)
            self._set_scheme("http")
            self._settled = True
            url = "http://" + str(request.url).removeprefix("https://")
            request = self._http.build_request(request.method, url, headers=request.headers)
            return await self._http.send(request, stream=True)
        if scope.cancelled_caught:
            raise errors.DeadlineExceeded(
                f"{what}: the registry did not answer within {self._timeout}s"
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _may_fall_back(self, exc: BaseException) -> bool:
        """True when plain HTTP is the next thing to try: HTTPS failed to
        connect before any answer, and not because a TLS server's
        certificate was refused (plain HTTP would then only hide that)."""
        if self._settled or not self._base.startswith("https://") or "http" not in self._schemes:
            return False
        return not _refused_certificate(exc)

    async def _read(self, response: Any, limit: int, what: str, *, cut: bool = False) -> bytes:
        """At most ``limit`` bytes of a body, at the minimum rate: more is
        refused (FailedPrecondition), or with ``cut`` dropped."""
        body = bytearray()
        pace = _Pace(self._timeout, what)
        with map_http_errors(what):
            chunks = response.aiter_bytes()
            while (chunk := await pace.next(chunks)) is not None:
                body += chunk
                if len(body) > limit:
                    if cut:
                        return bytes(body[:limit])
                    raise errors.FailedPrecondition(f"{what}: larger than {limit} bytes")
        return bytes(body)

    async def _status(self, response: Any, what: str) -> errors.SupervisorError:
        """The error for a response that is not a success, from a bounded
        prefix of its body."""
        try:
            body = await self._read(response, ERROR_BODY_LIMIT, what, cut=True)
        except errors.SupervisorError:
            body = b""
        return _status_error(response.status_code, what, body)

    async def _authenticate(self, header: str, what: str) -> None:
        challenge = parse_challenge(header)
        creds = self._credentials
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            raise errors.FailedPrecondition(f"{what}: unauthorized, and no usable challenge")
        if challenge.scheme == "basic":
            if creds is None:
                raise errors.FailedPrecondition(f"{what}: the registry wants credentials")
            if self._authorization == creds.basic():
                raise errors.FailedPrecondition(f"{what}: the registry refused the credentials")
            self._authorization = creds.basic()
            return
        realm = challenge.params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise errors.FailedPrecondition(f"{what}: bad token realm {realm!r}")
        if creds is not None and realm.startswith("http://") and self._base.startswith("https://"):
            # The credentials would cross the network in the clear, sent
            # where a registry reached over TLS pointed us.
            raise errors.FailedPrecondition(
                f"{what}: the registry's token service {realm!r} is plain HTTP; "
                "credentials are not sent there"
            )
        params = {"scope": f"repository:{self.ref.path}:pull"}
        if "service" in challenge.params:
            params["service"] = challenge.params["service"]
        headers = {} if creds is None else {"Authorization": creds.basic()}
        request = self._http.build_request("GET", realm, params=params, headers=headers)
        reply = await self._send_once(request, f"{what}: token")
        try:
            if reply.status_code != 200:
                raise await self._status(reply, f"{what}: token")
            raw = await self._read(reply, TOKEN_LIMIT, f"{what}: token")
        finally:
            await reply.aclose()
        try:
            body = json.loads(raw)
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError, RecursionError):
            token = None
        if not isinstance(token, str) or not token:
            raise errors.FailedPrecondition(f"{what}: the token service gave no token")
        self._authorization = f"Bearer {token}"
        _log.debug("registry.token", registry=self.ref.domain)

    async def manifest(self, obj: str, declared: str = "") -> tuple[str, bytes, str]:
        """The manifest or index named by a tag or digest: its media type,
        bytes and digest. A digest asked for is verified."""
        with self._tagged():
            return await self._manifest(obj, declared)

    async def _manifest(self, obj: str, declared: str) -> tuple[str, bytes, str]:
        what = f"manifest {self.ref.domain}/{self.ref.path}{_separator(obj)}{obj}"
        response = await self._send("GET", f"/manifests/{obj}", {"Accept": ACCEPT}, what)
        try:
            if response.status_code != 200:
                raise await self._status(response, what)
            body = await self._read(response, MAX_MANIFEST_SIZE, what)
        finally:
            await response.aclose()
        digest = sha256_digest(body)
        if obj.startswith("sha256:") and digest != obj:
            raise errors.FailedPrecondition(f"{what}: the registry sent content of digest {digest}")
        content_type = response.headers.get("content-type", "").split(";")[0].strip()
        return media_type_of(body, declared or content_type), body, digest

    async def blob_bytes(self, desc: Descriptor) -> bytes:
        """A small blob (a config), read whole and verified."""
        if desc.size > MAX_MANIFEST_SIZE:
            raise errors.FailedPrecondition(f"{desc.digest}: too large to read whole")
        verifier = Verifier(desc.digest, desc.size)
        parts = []
        async with self.blob_stream(desc.digest, 0, desc.size) as stream:
            async for chunk in stream:
                with self._tagged():
                    verifier.update(chunk)
                parts.append(chunk)
        with self._tagged():
            verifier.check()
        return b"".join(parts)

    @contextlib.asynccontextmanager
    async def blob_stream(
        self, digest: str, offset: int, size: int
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """The bytes of a blob of ``size`` bytes from ``offset`` on (a Range
        request; a registry that ignores the range has the prefix skipped
        here). A byte past ``size`` is refused as it arrives."""
        what = f"blob {self.ref.domain}/{self.ref.path}@{digest}"
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with self._tagged():
            response = await self._send("GET", f"/blobs/{digest}", headers, what)
        try:
            with self._tagged():
                if response.status_code not in (200, 206):
                    raise await self._status(response, what)
            skip = offset if (offset and response.status_code == 200) else 0
            # What the caller's block raises is not the registry's doing:
            # only the stream's own errors are tagged.
            yield self._chunks(response, skip, size - offset, what)
        finally:
            await response.aclose()

    async def _chunks(self, response: Any, skip: int, left: int, what: str) -> AsyncIterator[bytes]:
        pace = _Pace(self._timeout, what)
        with self._tagged(), map_http_errors(what):
            chunks = response.aiter_bytes()
            while (chunk := await pace.next(chunks)) is not None:
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                    if not chunk:
                        continue
                left -= len(chunk)
                if left < 0:
                    raise errors.FailedPrecondition(
                        f"{what}: the registry sent more than the descriptor's size"
                    )
                yield chunk
