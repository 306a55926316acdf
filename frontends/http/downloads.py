"""Asset downloads: ``GET|HEAD /image/{flavor}/{version}/{path}``.

The handler asks the builder to build (or find) the asset, then answers with upstream's headers
(``Content-Type`` chosen by the builder from the path, ``Content-Disposition`` from the path or
``?filename=``, ``Content-Length``) plus what upstream lacks: ``ETag`` (the content digest),
``If-None-Match`` → 304 and single ``Range`` requests → 206. The body is streamed chunk by chunk
from the builder's ``ReadAsset``; no asset is ever held in memory here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import grpc
import grpc.aio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from frontends.http.errors import rpc_error
from image_service.proto import builder_pb2, builder_pb2_grpc
from image_service.web import content_disposition, text_response

__all__ = ["Downloads", "parse_range"]

log = logging.getLogger(__name__)

# Enterprise-only sidecars; the community edition answers 402 before anything else.
_SIDECARS = (
    (".sigstore.json", "enterprise signing is not enabled: signature endpoint is not available"),
    (".sha256", "enterprise not enabled: checksum endpoint is not available"),
    (".sha512", "enterprise not enabled: checksum endpoint is not available"),
)
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


def _etag_matches(header: str, etag: str) -> bool:
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


class Downloads:
    def __init__(self, builder: grpc.aio.Channel) -> None:
        self._builder = builder_pb2_grpc.BuilderServiceStub(builder)

    async def image(self, request: Request) -> Response:
        flavor_id = request.path_params["flavor_id"]
        version = request.path_params["version"]
        path = request.path_params["path"]
        for suffix, message in _SIDECARS:
            if path.endswith(suffix):
                return text_response(402, message)
        try:
            asset = await self._build(flavor_id, version, path)
        except grpc.aio.AioRpcError as exc:
            return rpc_error(exc)
        if asset is None:
            log.error("the builder ended the stream for %s without an asset", path)
            return text_response(500, "internal server error")

        etag = f'"{asset.digest}"'
        filename = request.query_params.get("filename") or path
        headers = {
            "Content-Type": asset.content_type,
            "Content-Disposition": content_disposition(filename),
            "ETag": etag,
            "Accept-Ranges": "bytes",
            "Cache-Control": "public, max-age=31536000, immutable",
        }
        if _etag_matches(request.headers.get("if-none-match", ""), etag):
            return Response(status_code=304, headers={"ETag": etag})
        size = asset.size
        status, offset, length = 200, 0, size
        range_header = request.headers.get("range")
        if_range = request.headers.get("if-range")
        if range_header and (if_range is None or if_range == etag):
            wanted = parse_range(range_header, size)
            if wanted == "unsatisfiable":
                return text_response(
                    416, "requested range not satisfiable", {"Content-Range": f"bytes */{size}"}
                )
            if isinstance(wanted, tuple):
                start, end = wanted
                status, offset, length = 206, start, end - start + 1
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(length)
        if request.method == "HEAD" or length == 0:
            return Response(status_code=status, headers=headers)
        return StreamingResponse(
            self._chunks(asset.digest, offset, length), status_code=status, headers=headers
        )

    async def _build(
        self, flavor_id: str, version: str, path: str
    ) -> builder_pb2.AssetDescriptor | None:
        call = self._builder.Build(
            builder_pb2.BuildRequest(flavor_id=flavor_id, version=version, path=path)
        )
        async for event in call:
            if event.HasField("asset"):
                return event.asset
        return None

    async def _chunks(self, digest: str, offset: int, length: int) -> AsyncIterator[bytes]:
        call = self._builder.ReadAsset(
            builder_pb2.ReadAssetRequest(digest=digest, offset=offset, length=length)
        )
        async for chunk in call:
            yield chunk.data
