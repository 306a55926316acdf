"""Build progress as server-sent events: ``GET /builds/{flavor}/{version}/{path}``.

The handler starts (or joins) the build of the asset ``/image/{flavor}/{version}/{path}``
through the builder's ``Build`` stream and forwards what it reports, one event each::

    event: progress
    data: {"stage": "queued", "message": "waiting for the builder"}

    event: progress
    data: {"stage": "building", "message": "..."}

    event: ready
    data: {"url": "/image/...", "size": 123, "digest": "sha256:..."}

``stage`` is the builder's stage name (``queued`` first, then ``resolving``, ``building`` …);
``percent`` is added when the builder knows one. A failure that happens before the first event
(unknown flavor, bad path) is an ordinary 4xx with the API's plain-text message; one that
happens later ends the stream with ``event: error`` carrying the HTTP status and message. The
wizard's final page uses this to show progress before the download; scripts can read it too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import grpc
import grpc.aio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from frontends.common.errors import HTTP_STATUS, rpc_error
from image_service.proto import builder_pb2, builder_pb2_grpc

__all__ = ["BuildProgress"]

log = logging.getLogger(__name__)


def _event(name: str, payload: dict[str, object]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()


class BuildProgress:
    def __init__(self, builder: grpc.aio.Channel) -> None:
        self._builder = builder_pb2_grpc.BuilderServiceStub(builder)

    async def stream(self, request: Request) -> Response:
        flavor_id = request.path_params["flavor_id"]
        version = request.path_params["version"]
        path = request.path_params["path"]
        call = self._builder.Build(
            builder_pb2.BuildRequest(flavor_id=flavor_id, version=version, path=path)
        )
        events = call.__aiter__()
        try:
            first = await anext(events, None)
        except grpc.aio.AioRpcError as exc:
            return rpc_error(exc)
        url = f"/image/{flavor_id}/{version}/{path}"
        return StreamingResponse(
            self._events(first, events, url),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _events(
        self,
        first: builder_pb2.BuildEvent | None,
        rest: AsyncIterator[builder_pb2.BuildEvent],
        url: str,
    ) -> AsyncIterator[bytes]:
        yield _event("progress", {"stage": "queued", "message": "waiting for the builder"})
        event = first
        try:
            while event is not None:
                if event.HasField("asset"):
                    asset = event.asset
                    payload = {"url": url, "size": asset.size, "digest": asset.digest}
                    yield _event("ready", payload)
                    return
                if event.HasField("progress"):
                    yield _event(
                        "progress",
                        {"stage": event.progress.stage, "message": event.progress.message},
                    )
                event = await anext(rest, None)
        except grpc.aio.AioRpcError as exc:
            status = HTTP_STATUS.get(exc.code(), 500)
            message = exc.details() if status != 500 else "internal server error"
            if status == 500:
                log.error("build failed: %s %s", exc.code(), exc.details())
            yield _event("error", {"status": status, "message": message})
            return
        yield _event("error", {"status": 500, "message": "the build ended without an asset"})
