"""Asset downloads: ``GET|HEAD /image/{flavor}/{version}/{path}``.

The handler asks the builder to build (or find) the asset, then answers with upstream's headers
(``Content-Type`` chosen by the builder from the path, ``Content-Disposition`` from the path or
``?filename=``, ``Content-Length``) plus what upstream lacks: ``ETag`` (the content digest),
``If-None-Match`` → 304 and single ``Range`` requests → 206. The body is streamed chunk by chunk
from the builder's ``ReadAsset``; no asset is ever held in memory here.
"""

from __future__ import annotations

import logging

import grpc
import grpc.aio
from starlette.requests import Request
from starlette.responses import Response

from frontends.common.downloads import select_span, span_response
from frontends.common.errors import rpc_error
from frontends.common.web import content_disposition, text_response
from image_service.proto import builder_pb2, builder_pb2_grpc

__all__ = ["Downloads"]

log = logging.getLogger(__name__)

# Enterprise-only sidecars; the community edition answers 402 before anything else.
_SIDECARS = (
    (".sigstore.json", "enterprise signing is not enabled: signature endpoint is not available"),
    (".sha256", "enterprise not enabled: checksum endpoint is not available"),
    (".sha512", "enterprise not enabled: checksum endpoint is not available"),
)


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
        range_header = request.headers.get("range")
        if_range = request.headers.get("if-range")
        if if_range is not None and if_range != etag:
            range_header = None  # the client holds another version: send the whole asset
        span = select_span(range_header, asset.size)
        if span is None:
            return text_response(
                416, "requested range not satisfiable", {"Content-Range": f"bytes */{asset.size}"}
            )
        head = request.method == "HEAD"
        return span_response(self._builder, asset.digest, span, headers, head=head)

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
