"""The HTTP API frontend: flavors/schematics, health and readiness.

Routes (upstream wording in ``reference/api.md``):

* ``POST /schematics`` → 201 ``{"id","schematic"}``; ``POST /flavors`` (seed API) → 201 ``{"id"}``
* ``GET /schematics/{id}`` → the canonical YAML (``application/yaml``); 404 ``schematic not found``
* ``GET /versions`` → offered versions; ``GET /version/{v}/extensions/official`` and
  ``GET /version/{v}/overlays/official`` → the catalogue lists (JSON arrays)
* ``GET|HEAD /image/{flavor}/{version}/{path}`` → a built asset (``downloads``)
* ``GET /builds/{flavor}/{version}/{path}`` → that build's progress as server-sent events
* ``GET /metrics`` → Prometheus metrics of this process
* ``GET /secureboot/signing-cert.pem`` → the Secure Boot signing certificate (404 when disabled)
* ``GET /`` → the web wizard, ``/ui/static/*`` its files (:mod:`frontends.http.ui`)
* ``GET|HEAD /healthz`` (always 200), ``GET|HEAD /readyz`` (200 once every peer service answers)

Handlers only translate: HTTP in, one gRPC call to a service, HTTP out; failed calls go through
the error table in ``errors``.
"""

from __future__ import annotations

import asyncio
import json

import grpc
import grpc.aio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from frontends.common.errors import rpc_error
from frontends.common.web import healthz_route, read_body, text_response
from frontends.http.builds import BuildProgress
from frontends.http.downloads import Downloads
from frontends.http.ui.views import Wizard
from image_service.proto import (
    builder_pb2,
    builder_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    flavor_pb2,
    flavor_pb2_grpc,
)

__all__ = ["HttpFrontend", "go_json"]


def go_json(payload: object) -> bytes:
    """JSON as Go's ``json.Encoder`` writes it: compact, HTML-escaped, newline-terminated."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return (text + "\n").encode()


def _json(payload: object) -> Response:
    return Response(go_json(payload), media_type="application/json")


class HttpFrontend:
    """Route handlers bound to the flavor and catalog services' channels."""

    def __init__(
        self,
        *,
        flavor: grpc.aio.Channel,
        catalog: grpc.aio.Channel,
        builder: grpc.aio.Channel,
        metrics: CollectorRegistry,
        max_request_bytes: int,
    ) -> None:
        self._channels = (flavor, catalog, builder)
        self._downloads = Downloads(builder)
        self._progress = BuildProgress(builder)
        self._builder = builder_pb2_grpc.BuilderServiceStub(builder)
        self._metrics = metrics
        self._flavors = flavor_pb2_grpc.FlavorServiceStub(flavor)
        self._catalog = catalog_pb2_grpc.CatalogServiceStub(catalog)
        self._max = max_request_bytes
        self._wizard = Wizard(flavor=flavor, catalog=catalog, builder=builder)

    def routes(self) -> list[BaseRoute]:
        return [
            healthz_route(),
            Route("/readyz", self.readyz, methods=["GET", "HEAD"]),
            Route("/schematics", self.create_schematic, methods=["POST"]),
            Route("/flavors", self.create_flavor, methods=["POST"]),
            Route("/schematics/{flavor_id}", self.get_schematic, methods=["GET"]),
            Route("/versions", self.versions, methods=["GET"]),
            Route("/version/{version}/extensions/official", self.extensions, methods=["GET"]),
            Route("/version/{version}/overlays/official", self.overlays, methods=["GET"]),
            Route(
                "/image/{flavor_id}/{version}/{path}",
                self._downloads.image,
                methods=["GET", "HEAD"],
            ),
            Route("/builds/{flavor_id}/{version}/{path}", self._progress.stream, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/secureboot/signing-cert.pem", self.signing_cert, methods=["GET"]),
            *self._wizard.routes(),
        ]

    async def signing_cert(self, request: Request) -> Response:
        try:
            answer = await self._builder.GetSigningCertificate(
                builder_pb2.GetSigningCertificateRequest()
            )
        except grpc.aio.AioRpcError as exc:
            return rpc_error(exc)
        return Response(answer.pem, media_type="application/x-pem-file")

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self._metrics), media_type=CONTENT_TYPE_LATEST)

    async def readyz(self, request: Request) -> Response:
        try:
            for channel in self._channels:
                await asyncio.wait_for(channel.channel_ready(), timeout=2.0)
        except TimeoutError:
            return text_response(503, "not ready")
        return Response(status_code=200)

    async def _create(self, request: Request) -> flavor_pb2.CreateFlavorResponse | Response:
        body = await read_body(request, self._max)
        try:
            return await self._flavors.CreateFlavor(flavor_pb2.CreateFlavorRequest(document=body))
        except grpc.aio.AioRpcError as exc:
            return rpc_error(exc)

    async def create_schematic(self, request: Request) -> Response:
        result = await self._create(request)
        if isinstance(result, Response):
            return result
        payload = {"id": result.id, "schematic": result.canonical_yaml.decode()}
        return Response(go_json(payload), status_code=201, media_type="application/json")

    async def create_flavor(self, request: Request) -> Response:
        result = await self._create(request)
        if isinstance(result, Response):
            return result
        return Response(go_json({"id": result.id}), status_code=201, media_type="application/json")

    async def get_schematic(self, request: Request) -> Response:
        flavor_id = request.path_params["flavor_id"]
        try:
            result = await self._flavors.GetFlavor(flavor_pb2.GetFlavorRequest(id=flavor_id))
        except grpc.aio.AioRpcError as exc:
            return rpc_error(exc, not_found="schematic not found")
        return Response(result.canonical_yaml, media_type="application/yaml")

    async def versions(self, request: Request) -> Response:
        try:
            result = await self._catalog.ListVersions(catalog_pb2.ListVersionsRequest())
        except grpc.aio.AioRpcError as exc:
            return rpc_error(exc)
        return _json(list(result.versions))

    async def extensions(self, request: Request) -> Response:
        version = request.path_params["version"]
        try:
            result = await self._catalog.ListExtensions(
                catalog_pb2.ListExtensionsRequest(version=version)
            )
        except grpc.aio.AioRpcError as exc:
            return rpc_error(exc)
        return _json(
            [
                {
                    "name": e.name,
                    "ref": e.ref,
                    "digest": e.digest,
                    "author": e.author,
                    "description": e.description,
                }
                for e in result.extensions
            ]
        )

    async def overlays(self, request: Request) -> Response:
        version = request.path_params["version"]
        try:
            result = await self._catalog.ListOverlays(
                catalog_pb2.ListOverlaysRequest(version=version)
            )
        except grpc.aio.AioRpcError as exc:
            return rpc_error(exc)
        return _json(
            [
                {"name": o.name, "image": o.image, "ref": o.ref, "digest": o.digest}
                for o in result.overlays
            ]
        )
