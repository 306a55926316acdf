"""The registry frontend's one error table: gRPC status → HTTP status and OCI error code.

OCI clients expect ``{"errors":[{"code":"MANIFEST_UNKNOWN","message":…}]}`` with
``Content-Type: application/json`` (api.md §15.5, an improvement over upstream's plain text);
the message keeps upstream's text where upstream has one (``schematic ID "<id>" not found``,
``invalid image: <name>``, ``unknown registry path: "<path>"``). The code depends on what the
failed call was about — the repository (``NAME_*``), a manifest or a blob — so the table maps
a status to an HTTP status plus one code per :class:`Subject`. ``INTERNAL`` and anything
unexpected become a 500 ``UNKNOWN`` with a generic message, and the details go to the log.
Every answer of this frontend carries ``Docker-Distribution-API-Version: registry/2.0``; a
HEAD answer has the headers of the GET answer and no body.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from enum import StrEnum

import grpc
import grpc.aio
from starlette.responses import Response

__all__ = [
    "API_VERSION_HEADERS",
    "ERROR_TABLE",
    "RETRY_AFTER_SECONDS",
    "Subject",
    "oci_error",
    "rpc_error",
]

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 10
API_VERSION_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}


class Subject(StrEnum):
    """What a failed call was about; picks the OCI code of a status."""

    REPOSITORY = "repository"
    MANIFEST = "manifest"
    BLOB = "blob"


def _same(code: str) -> Mapping[Subject, str]:
    return dict.fromkeys(Subject, code)


ERROR_TABLE: Mapping[grpc.StatusCode, tuple[int, Mapping[Subject, str]]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (
        400,
        {
            Subject.REPOSITORY: "NAME_INVALID",
            # the flavor cannot be built for this tag (Secure Boot off, bad version, …)
            Subject.MANIFEST: "UNSUPPORTED",
            Subject.BLOB: "DIGEST_INVALID",
        },
    ),
    grpc.StatusCode.NOT_FOUND: (
        404,
        {
            Subject.REPOSITORY: "NAME_UNKNOWN",
            Subject.MANIFEST: "MANIFEST_UNKNOWN",
            Subject.BLOB: "BLOB_UNKNOWN",
        },
    ),
    grpc.StatusCode.OUT_OF_RANGE: (413, _same("SIZE_INVALID")),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (503, _same("UNAVAILABLE")),
    grpc.StatusCode.UNAVAILABLE: (503, _same("UNAVAILABLE")),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, _same("UNAVAILABLE")),
    grpc.StatusCode.UNIMPLEMENTED: (501, _same("UNSUPPORTED")),
}


def oci_error(
    status: int,
    code: str,
    message: str,
    *,
    head: bool = False,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """An OCI error envelope (JSON with a trailing newline, as Go's encoder writes it)."""
    body = json.dumps({"errors": [{"code": code, "message": message}]}).encode() + b"\n"
    all_headers = {
        **API_VERSION_HEADERS,
        **(headers or {}),
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "X-Content-Type-Options": "nosniff",
    }
    return Response(b"" if head else body, status_code=status, headers=all_headers)


def rpc_error(exc: grpc.aio.AioRpcError, subject: Subject, *, head: bool = False) -> Response:
    """Translate a failed RPC about ``subject``."""
    code = exc.code()
    row = ERROR_TABLE.get(code)
    if row is None:
        log.error("RPC failed: %s %s", code, exc.details())
        return oci_error(500, "UNKNOWN", "internal server error", head=head)
    status, codes = row
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    message = exc.details() or code.name.lower()
    return oci_error(status, codes[subject], message, head=head, headers=headers)
