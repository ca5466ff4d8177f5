"""The registry HTTP API v2, read side, over httpx: manifests and blobs,
with token and basic authentication.

httpx is imported when a :class:`Registry` is first opened, so that
``import supervisor`` never pays for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .. import errors
from .._log import get_logger
from ._auth import Credentials, configured_credentials, parse_challenge
from ._digest import Verifier, sha256_digest
from ._manifest import ACCEPT, MAX_MANIFEST_SIZE, Descriptor, media_type_of
from ._reference import Reference

if TYPE_CHECKING:
    import httpx

__all__ = ["Registry"]

_log = get_logger("images.registry")
_CHUNK = 1 << 20


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
    except (httpx.HTTPError, httpx.StreamError, OSError) as exc:
        raise errors.Unavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


def _status_error(status: int, what: str, body: str = "") -> errors.SupervisorError:
    detail = f"{what}: HTTP {status}" + (f": {body[:200]}" if body else "")
    if status == 404:
        return errors.NotFound(detail)
    if status in (401, 403):
        return errors.FailedPrecondition(detail + " (access denied: check the credentials)")
    if status == 429 or status >= 500:
        return errors.Unavailable(detail)
    return errors.Unknown(detail)


class Registry:
    """One repository of one registry, for the length of an ``async with``.

    A loopback registry is spoken to over plain HTTP; any other only with
    ``insecure=True`` (also plain HTTP), else over verified HTTPS.
    """

    def __init__(
        self,
        ref: Reference,
        *,
        insecure: bool = False,
        credentials: Credentials | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.ref = ref
        scheme = "http" if (insecure or ref.is_loopback) else "https"
        self._base = f"{scheme}://{ref.api_host}/v2/{ref.path}"
        self._credentials = credentials
        self._timeout = timeout
        self._authorization: str | None = None
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Registry:
        import httpx

        if self._credentials is None:
            self._credentials = await configured_credentials(self.ref.domain, limit=self._timeout)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout),
            follow_redirects=True,
            trust_env=False,
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

    @property
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise errors.Closed("the registry client is not open")
        return self._client

    async def _send(self, method: str, url: str, headers: dict[str, str], what: str) -> Any:
        """Send with our Authorization, answering one 401 challenge; the
        response is streamed, and the caller closes it."""
        http = self._http
        for attempt in range(2):
            request_headers = dict(headers)
            if self._authorization is not None:
                request_headers["Authorization"] = self._authorization
            request = http.build_request(method, url, headers=request_headers)
            with map_http_errors(what):
                response = await http.send(request, stream=True)
            if response.status_code != 401 or attempt:
                return response
            challenge = response.headers.get("www-authenticate", "")
            await response.aclose()
            await self._authenticate(challenge, what)
        raise AssertionError("unreachable")  # pragma: no cover

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
        with map_http_errors(f"{what}: token"):
            reply = await self._http.get(realm, params=params, headers=headers)
        if reply.status_code != 200:
            raise _status_error(reply.status_code, f"{what}: token", reply.text)
        try:
            body = reply.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise errors.FailedPrecondition(f"{what}: the token service gave no token")
        self._authorization = f"Bearer {token}"
        _log.debug("registry.token", registry=self.ref.domain)

    async def manifest(self, obj: str, declared: str = "") -> tuple[str, bytes, str]:
        """The manifest or index named by a tag or digest: its media type,
        bytes and digest. A digest asked for is verified."""
        what = f"manifest {self.ref.path}:{obj}"
        response = await self._send(
            "GET", f"{self._base}/manifests/{obj}", {"Accept": ACCEPT}, what
        )
        try:
            if response.status_code != 200:
                await response.aread()
                raise _status_error(response.status_code, what, response.text)
            body = b""
            with map_http_errors(what):
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_MANIFEST_SIZE:
                        raise errors.FailedPrecondition(f"{what}: larger than allowed")
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
        async with self.blob_stream(desc.digest, 0) as stream:
            async for chunk in stream:
                verifier.update(chunk)
                parts.append(chunk)
        verifier.check()
        return b"".join(parts)

    @contextlib.asynccontextmanager
    async def blob_stream(self, digest: str, offset: int) -> AsyncIterator[AsyncIterator[bytes]]:
        """The bytes of a blob from ``offset`` on (a Range request; a
        registry that ignores the range has the prefix skipped here)."""
        what = f"blob {digest}"
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = await self._send("GET", f"{self._base}/blobs/{digest}", headers, what)
        try:
            if response.status_code not in (200, 206):
                await response.aread()
                raise _status_error(response.status_code, what, response.text)
            skip = offset if (offset and response.status_code == 200) else 0
            yield self._chunks(response, skip, what)
        finally:
            await response.aclose()

    async def _chunks(self, response: Any, skip: int, what: str) -> AsyncIterator[bytes]:
        with map_http_errors(what):
            async for chunk in response.aiter_bytes(_CHUNK):
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                    if not chunk:
                        continue
                yield chunk
