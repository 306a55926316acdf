"""gRPC plumbing shared by the services and the frontends.

* ``handler`` wraps every servicer method: it restores the caller's request id from the
  ``x-request-id`` metadata into ``logs.REQUEST_ID`` and turns ``ServiceError``s into gRPC
  statuses through ``STATUS_CODES``, the one error table of this transport. Any other exception
  is a bug: it is logged with its traceback and the caller gets ``INTERNAL`` with a generic text.
* ``open_channel`` returns an aio channel whose interceptors send the current request id along.
* ``start_server`` binds an aio server to ``HOST:PORT`` (port 0 picks a free one) and returns it
  with the bound port.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import grpc
import grpc.aio

from image_service.errors import (
    InvalidInput,
    NotFound,
    Overloaded,
    ServiceError,
    TooLarge,
    Unavailable,
    Unsupported,
)
from image_service.logs import REQUEST_ID

__all__ = [
    "REQUEST_ID_KEY",
    "STATUS_CODES",
    "handler",
    "open_channel",
    "start_server",
    "status_for",
    "stream_handler",
]

log = logging.getLogger(__name__)

REQUEST_ID_KEY = "x-request-id"
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

# The one error table of the gRPC transport; the first matching class wins.
STATUS_CODES: tuple[tuple[type[ServiceError], grpc.StatusCode], ...] = (
    (InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (TooLarge, grpc.StatusCode.OUT_OF_RANGE),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (Unsupported, grpc.StatusCode.UNIMPLEMENTED),
)

_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Self = TypeVar("Self")


def status_for(exc: ServiceError) -> grpc.StatusCode:
    for cls, code in STATUS_CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


def _restore_request_id(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and value:
            REQUEST_ID.set(value[:128])
            return


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
    if isinstance(exc, ServiceError):
        code = status_for(exc)
        if code is grpc.StatusCode.INTERNAL:
            log.error("unmapped service error", exc_info=exc)
            await context.abort(code, "internal error")
        await context.abort(code, str(exc))
    log.error("unexpected error in RPC handler", exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")


def handler(
    method: Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]],
) -> Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]:
    """Decorate a unary servicer method (request id + error table)."""

    @functools.wraps(method)
    async def wrapper(
        self: Self, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> Resp:
        _restore_request_id(context)
        try:
            return await method(self, request, context)
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            await _abort(context, exc)
            raise AssertionError("context.abort returned") from exc

    return wrapper


def stream_handler(
    method: Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]],
) -> Callable[[Self, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]]:
    """Decorate a server-streaming servicer method (request id + error table)."""

    @functools.wraps(method)
    async def wrapper(
        self: Self, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> AsyncIterator[Resp]:
        _restore_request_id(context)
        try:
            async for item in method(self, request, context):
                yield item
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            await _abort(context, exc)

    return wrapper


def _with_request_id(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    metadata = list(details.metadata or ())
    request_id = REQUEST_ID.get()
    if request_id != "-" and not any(key == REQUEST_ID_KEY for key, _ in metadata):
        metadata.append((REQUEST_ID_KEY, request_id))
    return grpc.aio.ClientCallDetails(
        details.method,
        details.timeout,
        grpc.aio.Metadata(*metadata),
        details.credentials,
        details.wait_for_ready,
    )


class _UnaryUnaryRequestId(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        return await continuation(_with_request_id(client_call_details), request)


class _UnaryStreamRequestId(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        return await continuation(_with_request_id(client_call_details), request)


def open_channel(address: str) -> grpc.aio.Channel:
    """An insecure aio channel to ``HOST:PORT`` that forwards the request id."""
    # grpc-stubs types interceptors loosely; the two classes are real aio client interceptors.
    interceptors: list[Any] = [_UnaryUnaryRequestId(), _UnaryStreamRequestId()]
    return grpc.aio.insecure_channel(address, options=_OPTIONS, interceptors=interceptors)


async def start_server(
    address: str, register: Iterable[Callable[[grpc.aio.Server], None]]
) -> tuple[grpc.aio.Server, int]:
    """Start an aio server on ``address`` with the given servicers; return it and its port."""
    server = grpc.aio.server(options=_OPTIONS)
    for add in register:
        add(server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    await server.start()
    return server, port
