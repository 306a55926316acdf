"""The gRPC CatalogService: translates between protobuf and ``Catalog``."""

from __future__ import annotations

import grpc.aio

from image_service.proto import catalog_pb2, catalog_pb2_grpc
from image_service.rpc import handler
from services.catalog.catalog import Catalog

__all__ = ["CatalogServicer"]


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    @handler
    async def ListVersions(
        self,
        request: catalog_pb2.ListVersionsRequest,
        context: grpc.aio.ServicerContext[
            catalog_pb2.ListVersionsRequest, catalog_pb2.ListVersionsResponse
        ],
    ) -> catalog_pb2.ListVersionsResponse:
        versions = await self._catalog.versions()
        return catalog_pb2.ListVersionsResponse(versions=[v.tag for v in versions])

    @handler
    async def ListExtensions(
        self,
        request: catalog_pb2.ListExtensionsRequest,
        context: grpc.aio.ServicerContext[
            catalog_pb2.ListExtensionsRequest, catalog_pb2.ListExtensionsResponse
        ],
    ) -> catalog_pb2.ListExtensionsResponse:
        extensions = await self._catalog.extensions(request.version)
        return catalog_pb2.ListExtensionsResponse(
            extensions=[
                catalog_pb2.Extension(
                    name=e.name,
                    ref=e.ref,
                    digest=e.digest,
                    author=e.author,
                    description=e.description,
                )
                for e in extensions
            ]
        )

    @handler
    async def ListOverlays(
        self,
        request: catalog_pb2.ListOverlaysRequest,
        context: grpc.aio.ServicerContext[
            catalog_pb2.ListOverlaysRequest, catalog_pb2.ListOverlaysResponse
        ],
    ) -> catalog_pb2.ListOverlaysResponse:
        overlays = await self._catalog.overlays(request.version)
        return catalog_pb2.ListOverlaysResponse(
            overlays=[
                catalog_pb2.Overlay(name=o.name, image=o.image, ref=o.ref, digest=o.digest)
                for o in overlays
            ]
        )
