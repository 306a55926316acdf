"""The storage interface and its errors.

::

    StorageError        base of storage failures (I/O, unreachable registry)
    └── BlobNotFound    no blob with that digest in that namespace (maps to NotFound)

Namespaces and tags are validated by the backends; digests are always ``sha256:<64 hex>``.
Reads verify content against the digest, so a corrupted entry is never served.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from image_service.errors import NotFound, Unavailable

__all__ = [
    "CHUNK",
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "StorageError",
    "StorageUnavailable",
    "check_digest",
    "check_namespace",
    "check_tag",
    "file_digest",
    "sha256_digest",
]

CHUNK = 1024 * 1024

_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_NAMESPACE_RE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


class StorageError(Exception):
    """Storage failed in a way the caller cannot fix."""


class StorageUnavailable(StorageError, Unavailable):
    """The storage backend cannot be reached."""


class BlobNotFound(StorageError, NotFound):
    """No blob with that digest is stored in the namespace."""


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    if not _DIGEST_RE.fullmatch(digest):
        raise ValueError(f"invalid digest {digest!r}: expected sha256:<64 lowercase hex>")
    return digest


def check_namespace(namespace: str) -> str:
    if not _NAMESPACE_RE.fullmatch(namespace) or len(namespace) > 200:
        raise ValueError(f"invalid storage namespace {namespace!r}")
    return namespace


def check_tag(tag: str) -> str:
    if not _TAG_RE.fullmatch(tag):
        raise ValueError(f"invalid tag {tag!r}")
    return tag


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int


def file_digest(path: Path) -> BlobInfo:
    """sha256 and size of a file, read in chunks."""
    hasher = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return BlobInfo("sha256:" + hasher.hexdigest(), size)


class BlobStore(Protocol):
    """Content-addressed blobs per namespace, plus tags."""

    async def put_bytes(
        self, namespace: str, data: bytes, *, media_type: str, tag: str | None = None
    ) -> str:
        """Store ``data`` (idempotent), optionally tag it, and return its digest."""
        ...

    async def get_bytes(self, namespace: str, digest: str, *, max_bytes: int) -> bytes:
        """Return a small blob, verified against its digest; ``BlobNotFound`` if absent."""
        ...

    async def put_file(
        self, namespace: str, path: Path, *, media_type: str, tag: str | None = None
    ) -> BlobInfo:
        """Store a file's content without reading it into memory; optionally tag it."""
        ...

    async def stat(self, namespace: str, digest: str) -> BlobInfo | None:
        """Digest and size of a stored blob, or ``None``."""
        ...

    def read(
        self, namespace: str, digest: str, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream a blob (or a byte range of it) in chunks."""
        ...

    async def exists(self, namespace: str, digest: str) -> bool:
        """Whether the namespace holds the blob."""
        ...

    async def resolve_tag(self, namespace: str, tag: str) -> str | None:
        """The digest a tag names, or ``None``."""
        ...

    async def aclose(self) -> None:
        """Release connections and other resources."""
        ...
