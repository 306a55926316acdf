"""``/v2``: a read-only OCI distribution API for installer images (api.md §10).

One handler takes every ``/v2`` path and parses it like upstream (§10.1): trim slashes, split on
``/``; nothing is a ping; then ``<image>/<flavor ID>/<resource>/<reference>`` with the resource
``manifests``, ``blobs`` or ``referrers`` and exactly two repository segments. Anything else is
404 ``unknown registry path: "<path>"``.

* ``manifests/<tag>`` (``v<version>`` or ``latest``) → the builder's ``BuildInstallerImage``
  builds the multi-arch image on the first pull (both arches in parallel, one build however
  many clients ask) and answers the index from the cache after that; the index is served with
  its media type, size and ``Docker-Content-Digest``. HEAD builds too: containerd resolves tags
  with HEAD.
* ``manifests/<digest>`` and ``blobs/<digest>`` → ``StatRegistryBlob`` (media type and size of a
  blob of *that* repository), then the bytes streamed from ``ReadAsset``; blobs honour one
  ``Range``.
* ``referrers/<digest>`` → an empty index: this service attaches no signatures or SBOMs.
* Any other method → 405 ``UNSUPPORTED``: the registry is read-only. The source-image proxy
  (``/v2/siderolabs/...``, §10.7) is not offered.

Failed calls are classified like upstream orders its checks: when a build or stat answers
``NOT_FOUND`` or ``INVALID_ARGUMENT``, ``CheckInstallerRepository`` tells whether the
repository itself is wrong (unknown flavor → ``NAME_UNKNOWN``, bad image name →
``NAME_INVALID``) or the tag or digest (``MANIFEST_UNKNOWN``, ``BLOB_UNKNOWN``, …).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from enum import StrEnum

import grpc
import grpc.aio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from frontends.common.downloads import Span, select_span, span_response
from frontends.registry.errors import API_VERSION_HEADERS, Subject, oci_error, rpc_error
from image_service.errors import go_quote
from image_service.oci import INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES, OCI_INDEX, OCTET_STREAM
from image_service.proto import builder_pb2, builder_pb2_grpc

__all__ = ["Ping", "RegistryFrontend", "RegistryPath", "Resource", "UnknownPath", "parse_v2_path"]

log = logging.getLogger(__name__)

_MANIFEST_TYPES = MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES
_SHA256_RE = re.compile(r"sha256:[0-9a-f]{64}")
# The OCI digest grammar: algorithm ":" encoded.
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_READ_ONLY = "this registry is read-only: pushing, mounting and deleting are not supported"
_ALLOW = {"Allow": "GET, HEAD"}
_EMPTY_INDEX = (
    json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}, separators=(",", ":"))
    + "\n"
).encode()


class Resource(StrEnum):
    MANIFESTS = "manifests"
    BLOBS = "blobs"
    REFERRERS = "referrers"


@dataclass(frozen=True)
class Ping:
    """``/v2`` or ``/v2/``."""


@dataclass(frozen=True)
class UnknownPath:
    """A path upstream answers with 404; ``code`` is the OCI code we add."""

    message: str
    code: str = "NAME_UNKNOWN"


@dataclass(frozen=True)
class RegistryPath:
    image: str
    flavor_id: str
    resource: Resource
    reference: str


def parse_v2_path(path: str) -> Ping | UnknownPath | RegistryPath:
    """Parse what follows ``/v2`` (api.md §10.1)."""
    segments = path.strip("/").split("/")
    if segments == [""]:
        return Ping()
    unknown = UnknownPath(f"unknown registry path: {go_quote('/' + path.lstrip('/'))}")
    if len(segments) < 3 or not segments[-1]:
        return unknown
    if segments[0] == "siderolabs":
        return UnknownPath(
            f"the source-image proxy (/v2/siderolabs/{'/'.join(segments[1:])}) is not offered "
            "by this image service; pull release images from their registry",
            "UNSUPPORTED",
        )
    *repository, resource, reference = segments
    try:
        kind = Resource(resource)
    except ValueError:
        return UnknownPath(unknown.message, "UNSUPPORTED" if resource == "tags" else unknown.code)
    if len(repository) != 2 or not all(repository):
        return unknown
    return RegistryPath(repository[0], repository[1], kind, reference)


def _content_headers(digest: str, size: int, media_type: str) -> dict[str, str]:
    return {
        **API_VERSION_HEADERS,
        "Content-Type": media_type,
        "Content-Length": str(size),
        "Docker-Content-Digest": digest,
        "ETag": f'"{digest}"',
    }


class RegistryFrontend:
    """The ``/v2`` routes bound to the builder's channel."""

    def __init__(self, builder: grpc.aio.Channel) -> None:
        self._builder = builder_pb2_grpc.BuilderServiceStub(builder)

    def routes(self) -> list[BaseRoute]:
        methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        return [
            Route("/v2", self.handle, methods=methods),
            Route("/v2/{path:path}", self.handle, methods=methods),
        ]

    async def handle(self, request: Request) -> Response:
        head = request.method == "HEAD"
        if request.method not in ("GET", "HEAD"):
            return oci_error(405, "UNSUPPORTED", _READ_ONLY, headers=_ALLOW)
        target = parse_v2_path(request.path_params.get("path", ""))
        if isinstance(target, Ping):
            return Response(status_code=200, headers=API_VERSION_HEADERS)
        if isinstance(target, UnknownPath):
            return oci_error(404, target.code, target.message, head=head)
        match target.resource:
            case Resource.MANIFESTS if ":" not in target.reference:
                return await self._tag(target, head)
            case Resource.MANIFESTS:
                return await self._by_digest(target, Subject.MANIFEST, head, request)
            case Resource.BLOBS:
                return await self._by_digest(target, Subject.BLOB, head, request)
            case Resource.REFERRERS:
                return await self._referrers(target, head)

    async def _tag(self, target: RegistryPath, head: bool) -> Response:
        image: builder_pb2.InstallerImage | None = None
        try:
            call = self._builder.BuildInstallerImage(
                builder_pb2.BuildInstallerImageRequest(
                    flavor_id=target.flavor_id, image=target.image, version=target.reference
                )
            )
            async for event in call:
                if event.HasField("image"):
                    image = event.image
                    break
        except grpc.aio.AioRpcError as exc:
            return await self._failed(exc, target, Subject.MANIFEST, head)
        if image is None:
            log.error("the builder ended the stream for %s without an image", target)
            return oci_error(500, "UNKNOWN", "internal server error", head=head)
        index = image.index
        return self._content(index.digest, index.size, index.media_type, head)

    async def _by_digest(
        self, target: RegistryPath, subject: Subject, head: bool, request: Request
    ) -> Response:
        digest = target.reference
        if not _DIGEST_RE.fullmatch(digest) or (
            digest.startswith("sha256:") and not _SHA256_RE.fullmatch(digest)
        ):
            return oci_error(400, "DIGEST_INVALID", f"invalid digest: {digest}", head=head)
        unknown_code = "MANIFEST_UNKNOWN" if subject is Subject.MANIFEST else "BLOB_UNKNOWN"
        unknown = f"{subject} {digest} is unknown to repository {target.image}/{target.flavor_id}"
        if not _SHA256_RE.fullmatch(digest):  # only sha256 is ever stored
            return await self._unknown(target, unknown_code, unknown, head)
        try:
            blob = await self._builder.StatRegistryBlob(
                builder_pb2.StatRegistryBlobRequest(
                    flavor_id=target.flavor_id, image=target.image, digest=digest
                )
            )
        except grpc.aio.AioRpcError as exc:
            return await self._failed(exc, target, subject, head)
        if subject is Subject.MANIFEST:
            if blob.media_type not in _MANIFEST_TYPES:
                return oci_error(404, unknown_code, unknown, head=head)
            return self._content(blob.digest, blob.size, blob.media_type, head)
        return self._blob(blob, head, request.headers.get("range"))

    async def _referrers(self, target: RegistryPath, head: bool) -> Response:
        if not _DIGEST_RE.fullmatch(target.reference):
            message = f"invalid digest: {target.reference}"
            return oci_error(400, "DIGEST_INVALID", message, head=head)
        try:
            await self._check(target)
        except grpc.aio.AioRpcError as exc:
            return rpc_error(exc, Subject.REPOSITORY, head=head)
        digest = "sha256:" + hashlib.sha256(_EMPTY_INDEX).hexdigest()
        headers = _content_headers(digest, len(_EMPTY_INDEX), OCI_INDEX)
        return Response(b"" if head else _EMPTY_INDEX, headers=headers)

    async def _check(self, target: RegistryPath) -> None:
        await self._builder.CheckInstallerRepository(
            builder_pb2.InstallerRepositoryRequest(flavor_id=target.flavor_id, image=target.image)
        )

    async def _failed(
        self, exc: grpc.aio.AioRpcError, target: RegistryPath, subject: Subject, head: bool
    ) -> Response:
        """Blame the repository when it is what is wrong, else the manifest or blob."""
        if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            try:
                await self._check(target)
            except grpc.aio.AioRpcError as repo_exc:
                return rpc_error(repo_exc, Subject.REPOSITORY, head=head)
        return rpc_error(exc, subject, head=head)

    async def _unknown(self, target: RegistryPath, code: str, message: str, head: bool) -> Response:
        try:
            await self._check(target)
        except grpc.aio.AioRpcError as exc:
            return rpc_error(exc, Subject.REPOSITORY, head=head)
        return oci_error(404, code, message, head=head)

    def _content(self, digest: str, size: int, media_type: str, head: bool) -> Response:
        headers = _content_headers(digest, size, media_type)
        return span_response(self._builder, digest, Span(200, 0, size, size), headers, head=head)

    def _blob(
        self, blob: builder_pb2.RegistryBlob, head: bool, range_header: str | None
    ) -> Response:
        headers = _content_headers(blob.digest, blob.size, OCTET_STREAM)
        headers["Accept-Ranges"] = "bytes"
        span = select_span(range_header, blob.size)
        if span is None:
            return oci_error(
                416,
                "BLOB_UNKNOWN",
                f"range {range_header} is outside blob {blob.digest} of {blob.size} bytes",
                head=head,
                headers={"Content-Range": f"bytes */{blob.size}"},
            )
        return span_response(self._builder, blob.digest, span, headers, head=head)
