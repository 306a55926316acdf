"""Streaming stored assets to HTTP clients: single ``Range`` requests and chunked bodies.

Both the HTTP API (``/image/...`` downloads) and the OCI registry (blobs) serve bytes the
builder keeps in its asset store. They share the byte-range rules (RFC 9110: one range is
honoured, several or malformed ones are ignored, a range outside the body is unsatisfiable) and
the streaming of ``ReadAsset`` chunks, so no asset is ever held in memory by a frontend. How an
unsatisfiable range is reported differs per transport and stays with each frontend.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.responses import Response, StreamingResponse

from image_service.proto import builder_pb2, builder_pb2_grpc

__all__ = ["Span", "parse_range", "select_span", "span_response"]

_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """``(start, end)`` inclusive for one satisfiable range; ``None`` to serve everything;
    ``"unsatisfiable"`` when the range lies outside the asset."""
    match = _RANGE_RE.fullmatch(header.strip())
    if match is None:
        return None  # multiple or malformed ranges: ignore, as RFC 9110 allows
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0:
            return "unsatisfiable"
        return (max(size - suffix, 0), size - 1) if size else "unsatisfiable"
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return (start, min(end, size - 1))


@dataclass(frozen=True)
class Span:
    """The part of a ``size``-byte body one response sends."""

    status: int
    offset: int
    length: int
    size: int

    @property
    def content_range(self) -> str | None:
        if self.status != 206:
            return None
        return f"bytes {self.offset}-{self.offset + self.length - 1}/{self.size}"


def select_span(range_header: str | None, size: int) -> Span | None:
    """The span to send for an optional ``Range`` header; ``None`` when it is unsatisfiable."""
    if range_header:
        wanted = parse_range(range_header, size)
        if wanted == "unsatisfiable":
            return None
        if isinstance(wanted, tuple):
            start, end = wanted
            return Span(206, start, end - start + 1, size)
    return Span(200, 0, size, size)


def span_response(
    builder: builder_pb2_grpc.BuilderServiceAsyncStub,
    digest: str,
    span: Span,
    headers: dict[str, str],
    *,
    head: bool,
) -> Response:
    """Answer with ``span`` of the stored asset ``digest``: headers only for ``HEAD`` or an
    empty span, else the bytes streamed chunk by chunk from the builder's ``ReadAsset``."""
    headers = {**headers, "Content-Length": str(span.length)}
    if span.content_range is not None:
        headers["Content-Range"] = span.content_range
    if head or span.length == 0:
        return Response(status_code=span.status, headers=headers)
    chunks = _chunks(builder, digest, span.offset, span.length)
    return StreamingResponse(chunks, status_code=span.status, headers=headers)


async def _chunks(
    builder: builder_pb2_grpc.BuilderServiceAsyncStub, digest: str, offset: int, length: int
) -> AsyncIterator[bytes]:
    call = builder.ReadAsset(
        builder_pb2.ReadAssetRequest(digest=digest, offset=offset, length=length)
    )
    async for chunk in call:
        yield chunk.data
