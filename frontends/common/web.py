"""HTTP plumbing shared by the three Starlette frontends.

* ``RequestContextMiddleware`` (pure ASGI, so streaming responses pass straight through) gives
  every response ``Server`` and ``X-Request-ID`` headers and puts the request id into
  ``logs.REQUEST_ID`` for the logs and the gRPC metadata of calls made while handling it.
* ``read_body`` reads a request body up to a limit and raises ``BodyTooLarge`` beyond it,
  checking ``Content-Length`` first so an oversized upload is refused without reading it.
* ``text_response`` writes upstream's plain-text bodies (``http.Error`` style).
* ``content_disposition`` keeps upstream's exact ``attachment; filename="<name>"`` for plain
  names such as ``metal-amd64.iso``, but fixes upstream's unescaped insertion (api.md §15.18):
  control characters are dropped, the quoted ASCII fallback replaces what a quoted-string or a
  browser could misread (``"`` ``\\`` ``/`` ``%`` and non-ASCII) with ``_``, and whenever that
  changed the name the exact name follows as ``filename*=UTF-8''<percent-encoded>`` (RFC 6266,
  RFC 8187).
"""

from __future__ import annotations

import re
import urllib.parse
import uuid

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from image_service import __version__
from image_service.logs import REQUEST_ID

__all__ = [
    "MAX_FILENAME_CHARS",
    "SERVER_HEADER",
    "BodyTooLarge",
    "RequestContextMiddleware",
    "content_disposition",
    "healthz_route",
    "read_body",
    "text_response",
]

SERVER_HEADER = f"image-service/{__version__} (Image Factory compatible)"
_REQUEST_ID_RE = re.compile(r"[\x21-\x7e]{1,128}")
MAX_FILENAME_CHARS = 255
_FALLBACK_NAME = "download"
# RFC 8187 attr-char minus ALPHA / DIGIT (which urllib never escapes).
_ATTR_CHAR_PUNCTUATION = "!#$&+-.^_`|~"


class BodyTooLarge(Exception):
    """The request body exceeds the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than the limit of {limit} bytes")
        self.limit = limit


def text_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> PlainTextResponse:
    """A Go ``http.Error``-style answer: the message, one newline, nosniff."""
    response = PlainTextResponse(message + "\n", status_code=status, headers=headers)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


class RequestContextMiddleware:
    """Request id in, ``Server`` and ``X-Request-ID`` out, on every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if _REQUEST_ID_RE.fullmatch(incoming) else str(uuid.uuid4())
        token = REQUEST_ID.set(request_id)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"server", b"x-request-id")
                ]
                headers.append((b"server", SERVER_HEADER.encode()))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            REQUEST_ID.reset(token)


def _fallback_char(char: str) -> str:
    return char if " " <= char <= "~" and char not in '"\\/%' else "_"


def content_disposition(filename: str) -> str:
    """``Content-Disposition: attachment`` for ``filename`` (the path or ``?filename=``).

    The name is cut to ``MAX_FILENAME_CHARS`` after dropping control characters; an empty
    result becomes ``download``.
    """
    name = "".join(c for c in filename if c.isprintable())[:MAX_FILENAME_CHARS] or _FALLBACK_NAME
    fallback = "".join(_fallback_char(c) for c in name)
    header = f'attachment; filename="{fallback}"'
    if fallback != name:
        header += "; filename*=UTF-8''" + urllib.parse.quote(name, safe=_ATTR_CHAR_PUNCTUATION)
    return header


async def _healthz(request: Request) -> Response:
    return Response(status_code=200)


def healthz_route() -> Route:
    """``GET|HEAD /healthz``: 200 while the process serves HTTP (every frontend has it)."""
    return Route("/healthz", _healthz, methods=["GET", "HEAD"])
