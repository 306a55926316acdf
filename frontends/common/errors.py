"""The frontends' one HTTP error table: gRPC status → HTTP status (HTTP API and PXE).

The OCI registry answers in its own error format and keeps its own table
(:mod:`frontends.registry.errors`).

Service errors arrive as gRPC statuses whose details are client-safe messages (upstream's texts
where they exist). ``INTERNAL`` and anything unexpected become a generic 500 so internals never
leak; the details go to the log instead.
"""

from __future__ import annotations

import logging

import grpc
import grpc.aio
from starlette.requests import Request
from starlette.responses import Response

from frontends.common.web import BodyTooLarge, text_response

__all__ = ["HTTP_STATUS", "RETRY_AFTER_SECONDS", "body_too_large", "rpc_error"]

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 10

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.OUT_OF_RANGE: 413,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 503,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def rpc_error(exc: grpc.aio.AioRpcError, *, not_found: str | None = None) -> Response:
    """Translate a failed RPC; ``not_found`` replaces the message of a 404 (route wording)."""
    code = exc.code()
    status = HTTP_STATUS.get(code, 500)
    if status == 500:
        log.error("RPC failed: %s %s", code, exc.details())
        return text_response(500, "internal server error")
    message = exc.details() or code.name.lower()
    if status == 404 and not_found is not None:
        message = not_found
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return text_response(status, message, headers)


async def body_too_large(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BodyTooLarge)
    return text_response(413, str(exc))
