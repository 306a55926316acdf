"""Where flavors live: canonical YAML blobs in a ``BlobStore``, the upstream way.

The blob is the canonical YAML, so its digest is ``sha256:<flavor ID>``; it is stored with the
media type upstream uses (``application/vnd.sidero.dev-image.schematic``) and tagged with the ID,
in the ``schematics`` namespace. A registry can therefore be shared with an upstream factory.
Reads are verified against the digest by the store, so a stored flavor is exactly its ID.
"""

from __future__ import annotations

import re

from image_service.storage import BlobNotFound, BlobStore
from services.flavor.errors import FlavorNotFound

__all__ = ["MAX_FLAVOR_BYTES", "MEDIA_TYPE", "NAMESPACE", "FlavorStore", "is_flavor_id"]

NAMESPACE = "schematics"
MEDIA_TYPE = "application/vnd.sidero.dev-image.schematic"
MAX_FLAVOR_BYTES = 4 * 1024 * 1024

_ID_RE = re.compile(r"[0-9a-f]{64}")


def is_flavor_id(text: str) -> bool:
    return _ID_RE.fullmatch(text) is not None


class FlavorStore:
    """Store and fetch canonical flavor documents by ID."""

    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    async def put(self, flavor_id: str, canonical: bytes) -> bool:
        """Store the document unless present; return whether it was new."""
        digest = "sha256:" + flavor_id
        if await self._blobs.exists(NAMESPACE, digest):
            return False
        stored = await self._blobs.put_bytes(
            NAMESPACE, canonical, media_type=MEDIA_TYPE, tag=flavor_id
        )
        if stored != digest:
            raise AssertionError(f"stored flavor digest {stored} differs from its ID {flavor_id}")
        return True

    async def get(self, flavor_id: str) -> bytes:
        if not is_flavor_id(flavor_id):
            raise FlavorNotFound(f"flavor ID {flavor_id!r} is not 64 lowercase hex digits")
        try:
            return await self._blobs.get_bytes(
                NAMESPACE, "sha256:" + flavor_id, max_bytes=MAX_FLAVOR_BYTES
            )
        except BlobNotFound:
            raise FlavorNotFound(f"flavor {flavor_id} not found") from None
