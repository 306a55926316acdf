"""The gRPC BuilderService: build requests in, progress events and asset chunks out.

``Build`` runs the pipeline in a task and streams its progress events; the final event is the
asset descriptor. When the caller goes away, only its wait is cancelled: the build itself runs
detached in the scheduler and lands in the cache for the next caller. ``ReadAsset`` streams a
stored asset (or a byte range) from the store in 1 MiB chunks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc.aio

from image_service.errors import NotFound
from image_service.proto import builder_pb2, builder_pb2_grpc
from image_service.rpc import handler, stream_handler
from image_service.storage import BlobStore
from image_service.storage.base import check_digest
from services.builder.errors import InvalidPath
from services.builder.metrics import BuilderMetrics
from services.builder.pipeline import BuildResult, Pipeline
from services.builder.registry_images import InstallerImages, InstallerImagesServicer
from services.builder.scheduler import ASSET_NAMESPACE

__all__ = ["BuilderServicer"]


class SecureBootNotConfigured(NotFound):
    """No Secure Boot keys are configured, so there is no signing certificate."""


_BuildContext = grpc.aio.ServicerContext[builder_pb2.BuildRequest, builder_pb2.BuildEvent]
_ReadContext = grpc.aio.ServicerContext[builder_pb2.ReadAssetRequest, builder_pb2.AssetChunk]


class BuilderServicer(InstallerImagesServicer, builder_pb2_grpc.BuilderServiceServicer):
    def __init__(
        self,
        pipeline: Pipeline,
        store: BlobStore,
        metrics: BuilderMetrics,
        *,
        signing_cert: bytes | None = None,
        installer_images: InstallerImages | None = None,
    ) -> None:
        self.installer_images = installer_images
        self._pipeline = pipeline
        self._store = store
        self._metrics = metrics
        self._signing_cert = signing_cert

    @handler
    async def GetSigningCertificate(
        self,
        request: builder_pb2.GetSigningCertificateRequest,
        context: grpc.aio.ServicerContext[
            builder_pb2.GetSigningCertificateRequest, builder_pb2.SigningCertificate
        ],
    ) -> builder_pb2.SigningCertificate:
        if self._signing_cert is None:
            raise SecureBootNotConfigured("secure boot is not enabled on this image service")
        return builder_pb2.SigningCertificate(pem=self._signing_cert)

    @stream_handler
    async def Build(
        self, request: builder_pb2.BuildRequest, context: _BuildContext
    ) -> AsyncIterator[builder_pb2.BuildEvent]:
        events: asyncio.Queue[builder_pb2.Progress] = asyncio.Queue()

        def progress(stage: str, message: str) -> None:
            events.put_nowait(builder_pb2.Progress(stage=stage, message=message))

        task = asyncio.create_task(
            self._pipeline.build(request.flavor_id, request.version, request.path, progress)
        )
        try:
            while not task.done():
                getter = asyncio.create_task(events.get())
                await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield builder_pb2.BuildEvent(progress=getter.result())
                else:
                    getter.cancel()
            while not events.empty():
                yield builder_pb2.BuildEvent(progress=events.get_nowait())
            result: BuildResult = task.result()
        finally:
            task.cancel()
        info = result.built.info
        yield builder_pb2.BuildEvent(
            asset=builder_pb2.AssetDescriptor(
                digest=info.digest,
                size=info.size,
                filename=result.filename,
                content_type=result.content_type,
                cached=result.built.cached,
            )
        )

    @stream_handler
    async def ReadAsset(
        self, request: builder_pb2.ReadAssetRequest, context: _ReadContext
    ) -> AsyncIterator[builder_pb2.AssetChunk]:
        try:
            digest = check_digest(request.digest)
        except ValueError as exc:
            raise InvalidPath(str(exc)) from None
        length = request.length or None
        async for chunk in self._store.read(
            ASSET_NAMESPACE, digest, offset=request.offset, length=length
        ):
            self._metrics.served_bytes.inc(len(chunk))
            yield builder_pb2.AssetChunk(data=chunk)
