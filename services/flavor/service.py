"""The gRPC FlavorService: decode → canonicalize → ID → store, and lookups by ID.

Decoding and canonicalization are pure (``decode``, ``canonical``) and run in a worker thread so
a large document never stalls the event loop; storage is whatever ``BlobStore`` the composition
root passed in.
"""

from __future__ import annotations

import asyncio
import logging

import grpc.aio

from image_service.errors import TooLarge
from image_service.flavor.canonical import OutputTooLarge, canonical_yaml, flavor_id
from image_service.flavor.decode import decode_flavor
from image_service.flavor.errors import InvalidFlavor
from image_service.proto import flavor_pb2, flavor_pb2_grpc
from image_service.rpc import handler
from services.flavor.storage import MAX_FLAVOR_BYTES, FlavorStore

__all__ = ["FlavorServicer", "canonicalize"]

log = logging.getLogger(__name__)


def canonicalize(document: bytes) -> tuple[str, bytes]:
    """Decode a YAML/JSON document and return (ID, canonical YAML).

    The canonical text is decoded once more: upstream's emitter writes a few rare documents it
    cannot read back (see ``image_service/flavor/_policy.py``), and a stored flavor that cannot be
    decoded would only fail later, at build time. Such documents are refused here instead.
    """
    flavor = decode_flavor(document)
    try:
        canonical = canonical_yaml(flavor, max_bytes=MAX_FLAVOR_BYTES)
    except OutputTooLarge:
        raise InvalidFlavor(
            f"the canonical form of this flavor would exceed {MAX_FLAVOR_BYTES} bytes"
        ) from None
    try:
        decode_flavor(canonical)  # floats such as 2.0 read back as 2: decodable is what counts
    except InvalidFlavor as exc:
        raise InvalidFlavor(f"flavor cannot be stored in canonical form: {exc}") from None
    return flavor_id(canonical), canonical


class FlavorServicer(flavor_pb2_grpc.FlavorServiceServicer):
    def __init__(self, store: FlavorStore, *, max_document_bytes: int) -> None:
        self._store = store
        self._max = max_document_bytes

    @handler
    async def CreateFlavor(
        self,
        request: flavor_pb2.CreateFlavorRequest,
        context: grpc.aio.ServicerContext[
            flavor_pb2.CreateFlavorRequest, flavor_pb2.CreateFlavorResponse
        ],
    ) -> flavor_pb2.CreateFlavorResponse:
        if len(request.document) > self._max:
            raise TooLarge(f"flavor document is larger than {self._max} bytes")
        fid, canonical = await asyncio.to_thread(canonicalize, request.document)
        created = await self._store.put(fid, canonical)
        log.info("flavor %s %s", fid, "created" if created else "already stored")
        return flavor_pb2.CreateFlavorResponse(id=fid, canonical_yaml=canonical, created=created)

    @handler
    async def GetFlavor(
        self,
        request: flavor_pb2.GetFlavorRequest,
        context: grpc.aio.ServicerContext[
            flavor_pb2.GetFlavorRequest, flavor_pb2.GetFlavorResponse
        ],
    ) -> flavor_pb2.GetFlavorResponse:
        canonical = await self._store.get(request.id)
        return flavor_pb2.GetFlavorResponse(id=request.id, canonical_yaml=canonical)
