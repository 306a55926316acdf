"""HTTP plumbing of the registry client: the one seam between httpx and ``oci.errors``.

``Transport.stream`` sends one logical request and yields the open response once its status is
one the caller accepts. On the way it

* attaches a bearer token for the request's scope, fetching one from the realm the registry
  named (up front once the registry's challenge is known, else after a 401) and refreshing it
  once when the registry rejects it;
* retries connection errors, timeouts, 429 and 5xx with exponential backoff and jitter
  (honouring a short ``Retry-After``), at most ``retries`` times; other 4xx are never retried;
* follows redirects of GET/HEAD (registries send blob downloads to a CDN) and sends the
  token only to the registry's own origin;
* maps a final unwanted status to ``ImageNotFound``/``RegistryAuthError``/
  ``RegistryUnavailable``/``RegistryResponseError``, quoting the OCI error body.

Every httpx exception is translated here (``_unavailable``) and chained. Bodies are read in
bounded pieces: ``read_limited`` for small JSON documents, ``iter_body`` for blobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Mapping
from typing import NoReturn

import httpx

from image_service.oci._files import CHUNK_SIZE
from image_service.oci.auth import Challenge, TokenCache, parse_challenge, parse_token_response
from image_service.oci.errors import (
    ImageNotFound,
    RegistryAuthError,
    RegistryResponseError,
    RegistryUnavailable,
)
from image_service.oci.names import validate_registry

__all__ = ["Body", "Transport"]

# A request body: bytes, or a factory of fresh async chunk iterators (so retries can replay).
Body = bytes | Callable[[], AsyncIterator[bytes]] | None

_ERROR_BODY_LIMIT = 64 << 10
_MAX_REDIRECTS = 5
_BACKOFF_CAP = 5.0
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class Transport:
    """Retrying, authenticating HTTP access to one registry."""

    def __init__(
        self, registry: str, *, insecure: bool, timeout: float, retries: int, backoff: float
    ) -> None:
        self.registry = validate_registry(registry)
        self.base = httpx.URL(f"{'http' if insecure else 'https'}://{registry}")
        self._insecure = insecure
        self._timeout = timeout
        self._retries = max(retries, 0)
        self._backoff = backoff
        self._tokens = TokenCache()
        self._token_lock = asyncio.Lock()
        # trust_env=False: proxies and CA bundles come from the settings object, not the env.
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,
            headers={"Accept-Encoding": "identity", "User-Agent": "image-service"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def url(self, path: str) -> httpx.URL:
        """An absolute URL on the registry for an already validated path."""
        return self.base.join(path)

    def same_origin(self, url: httpx.URL) -> bool:
        return (url.scheme, url.netloc) == (self.base.scheme, self.base.netloc)

    def follow(self, base: httpx.URL, link: str, what: str) -> httpx.URL:
        """Resolve a ``Location``/``Link`` the registry sent; it must stay on the registry."""
        try:
            url = base.join(link) if link else None
        except httpx.InvalidURL:
            url = None
        if url is None or not self.same_origin(url):
            raise RegistryResponseError(
                f"registry {self.registry} sent an unusable URL {link!r} for {what}; "
                "it must be on the registry itself",
                registry=self.registry,
            )
        return url

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: httpx.URL,
        *,
        scope: str | None,
        subject: str,
        ok: Collection[int] = (200,),
        headers: Mapping[str, str] | None = None,
        content: Body = None,
    ) -> AsyncIterator[httpx.Response]:
        """Send a request; yield the open response if its status is in ``ok``, else raise."""
        response = await self._send(method, url, scope, headers or {}, content)
        try:
            if response.status_code not in ok:
                await self._fail(response, subject)
            yield response
        finally:
            await response.aclose()

    async def read_limited(self, response: httpx.Response, limit: int, subject: str) -> bytes:
        """The whole body of a small document; longer than ``limit`` is a protocol error."""
        parts: list[bytes] = []
        total = 0
        async with contextlib.aclosing(self.iter_body(response, subject)) as chunks:
            async for chunk in chunks:
                total += len(chunk)
                if total > limit:
                    raise RegistryResponseError(
                        f"registry {self.registry} sent more than {limit} bytes for {subject}",
                        registry=self.registry,
                    )
                parts.append(chunk)
        return b"".join(parts)

    async def iter_body(
        self, response: httpx.Response, subject: str
    ) -> AsyncGenerator[bytes, None]:
        """The body in chunks of at most ``CHUNK_SIZE``; transport errors become ours."""
        try:
            async for chunk in response.aiter_bytes(CHUNK_SIZE):
                yield chunk
        except httpx.HTTPError as exc:
            raise self._unavailable(exc, response.url, f"while reading {subject}") from exc

    async def _send(
        self,
        method: str,
        url: httpx.URL,
        scope: str | None,
        headers: Mapping[str, str],
        content: Body,
    ) -> httpx.Response:
        attempt = 0
        refreshed = False
        while True:
            try:
                response = await self._send_following(method, url, scope, headers, content)
            except httpx.TransportError as exc:
                if attempt >= self._retries:
                    raise self._unavailable(exc, url, _attempts(attempt + 1)) from exc
                attempt += 1
                await self._sleep(attempt, None)
                continue
            status = response.status_code
            if status == 401 and scope is not None and not refreshed:
                challenge = parse_challenge(response.headers.get_list("www-authenticate"))
                if (
                    challenge is not None
                    and challenge.scheme == "bearer"
                    and self.same_origin(response.url)
                ):
                    await response.aclose()
                    self._tokens.challenge = challenge
                    self._tokens.discard(scope)
                    await self._fetch_token(scope)
                    refreshed = True
                    continue
            if (status == 429 or status >= 500) and attempt < self._retries:
                retry_after = response.headers.get("retry-after", "")
                await response.aclose()
                attempt += 1
                await self._sleep(attempt, retry_after)
                continue
            return response

    async def _send_following(
        self,
        method: str,
        url: httpx.URL,
        scope: str | None,
        headers: Mapping[str, str],
        content: Body,
    ) -> httpx.Response:
        token = await self._token(scope) if scope is not None else None
        for _ in range(_MAX_REDIRECTS + 1):
            request = self._http.build_request(
                method,
                url,
                headers=headers,
                content=content() if callable(content) else content,
            )
            if token is not None and self.same_origin(url):
                request.headers["Authorization"] = f"Bearer {token}"
            response = await self._http.send(request, stream=True)
            if response.status_code not in _REDIRECTS or method not in ("GET", "HEAD"):
                return response
            location = response.headers.get("location")
            await response.aclose()
            if not location:
                break
            try:
                url = url.join(location)
            except httpx.InvalidURL as exc:
                raise RegistryResponseError(
                    f"registry {self.registry} redirected to an invalid URL {location!r}",
                    registry=self.registry,
                ) from exc
            if url.scheme != "https" and not (self._insecure and url.scheme == "http"):
                raise RegistryResponseError(
                    f"registry {self.registry} redirected to {url.scheme}:// URL {url}; "
                    "only https is followed unless the registry is configured as insecure",
                    registry=self.registry,
                )
        raise RegistryResponseError(
            f"registry {self.registry} sent too many or broken redirects for {method} {url.path}",
            registry=self.registry,
        )

    async def _token(self, scope: str) -> str | None:
        token = self._tokens.get(scope)
        if token is None and self._tokens.challenge is not None:
            await self._fetch_token(scope)
            token = self._tokens.get(scope)
        return token

    async def _fetch_token(self, scope: str) -> None:
        challenge = self._tokens.challenge
        assert challenge is not None
        async with self._token_lock:
            if self._tokens.get(scope) is not None:  # another task fetched it meanwhile
                return
            realm = self._realm_url(challenge)
            # Ask for the scope this operation needs (the challenge's scope names the same
            # repository, possibly with fewer actions, e.g. pull for the HEAD before a push).
            params = {"scope": scope}
            if challenge.service:
                params["service"] = challenge.service
            subject = f"a token for {scope}"
            async with self.stream(
                "GET", realm.copy_merge_params(params), scope=None, subject=subject
            ) as response:
                body = await self.read_limited(response, _ERROR_BODY_LIMIT, subject)
            token, ttl = parse_token_response(body, realm=str(realm))
            self._tokens.put(scope, token, ttl)

    def _realm_url(self, challenge: Challenge) -> httpx.URL:
        try:
            realm = httpx.URL(challenge.realm or "")
        except httpx.InvalidURL as exc:
            raise RegistryAuthError(
                f"registry {self.registry} named an invalid token realm {challenge.realm!r}",
                registry=self.registry,
            ) from exc
        allowed = ("https", "http") if self._insecure else ("https",)
        if realm.scheme not in allowed or not realm.host:
            raise RegistryAuthError(
                f"registry {self.registry} named token realm {challenge.realm!r}; "
                f"it must be an absolute {' or '.join(allowed)} URL",
                registry=self.registry,
            )
        return realm

    async def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self._backoff * 2 ** (attempt - 1)
        if retry_after and retry_after.isdigit():
            delay = max(delay, float(retry_after))
        jitter = 0.5 + random.random() / 2  # noqa: S311 - jitter, not cryptography
        await asyncio.sleep(min(delay, _BACKOFF_CAP) * jitter)

    async def _fail(self, response: httpx.Response, subject: str) -> NoReturn:
        status = response.status_code
        body = b""
        if response.request.method != "HEAD":
            with contextlib.suppress(RegistryResponseError, RegistryUnavailable):
                body = await self.read_limited(response, _ERROR_BODY_LIMIT, subject)
        code, detail = _error_detail(body)
        where = self.registry if self.same_origin(response.url) else response.url.netloc.decode()
        said = f": {detail}" if detail else ""
        if status == 404:
            by = "" if where == self.registry else f" (answered by {where})"
            raise ImageNotFound(f"{subject} not found{said}{by}", registry=where)
        if status in (401, 403):
            challenge = parse_challenge(response.headers.get_list("www-authenticate"))
            hint = (
                f"; the registry asks for {challenge.scheme.capitalize()} credentials, which "
                "this client does not send"
                if challenge is not None and challenge.scheme != "bearer"
                else "; anonymous access was refused"
            )
            raise RegistryAuthError(
                f"registry {where} denied access to {subject} (HTTP {status}{said}){hint}",
                registry=where,
            )
        if status == 429 or status >= 500:
            raise RegistryUnavailable(
                f"registry {where} kept failing with HTTP {status} for {subject} "
                f"({_attempts(self._retries + 1)}){said}",
                registry=where,
            )
        raise RegistryResponseError(
            f"registry {where} answered HTTP {status} to {response.request.method} for "
            f"{subject}{said}",
            status=status,
            code=code,
            registry=where,
        )

    def _unavailable(self, exc: httpx.HTTPError, url: httpx.URL, when: str) -> RegistryUnavailable:
        if isinstance(exc, httpx.RequestError):
            with contextlib.suppress(RuntimeError):  # .request is unset on some errors
                url = exc.request.url  # name the host that failed, e.g. a redirect target
        where = self.registry if self.same_origin(url) else url.netloc.decode()
        return RegistryUnavailable(
            f"registry {where} is unreachable: {_describe(exc, self._timeout)} ({when})",
            registry=where,
        )


def _attempts(count: int) -> str:
    return f"after {count} attempt{'' if count == 1 else 's'}"


def _describe(exc: httpx.HTTPError, timeout: float) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return f"timed out connecting after {timeout:g} s"
    if isinstance(exc, httpx.ReadTimeout):
        return f"no data for {timeout:g} s"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    cause = _os_cause(exc)
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(cause, socket.gaierror):
        return f"cannot resolve the host name ({cause.strerror})"
    if isinstance(cause, ssl.SSLError):
        return (
            f"TLS failed ({cause.reason or cause}); if it is a plain-HTTP registry, "
            "configure it as insecure"
        )
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return f"connection broken ({text})"
    return f"{type(exc).__name__}: {text}"


def _os_cause(exc: BaseException) -> OSError | None:
    """The most specific OSError behind an httpx error (httpx wraps httpcore wraps OSError)."""
    found: OSError | None = None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            found = current
        current = current.__cause__ or current.__context__
    return found


def _error_detail(body: bytes) -> tuple[str | None, str]:
    """The first OCI error's code and a one-line description from an error body."""
    try:
        errors = json.loads(body).get("errors") if body else None
    except (ValueError, AttributeError):
        errors = None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code, message = errors[0].get("code"), errors[0].get("message")
        code = code if isinstance(code, str) else None
        text = " ".join(str(p) for p in (code, message) if p)
        return code, text[:300]
    return None, body[:200].decode("utf-8", "replace").strip()
