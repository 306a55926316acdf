"""Chunked file access for blobs: hashing and async reading without loading a file whole.

Used by ``RegistryClient`` to push files (hash first, then stream the same file as the PUT
body, replayable on retry) and to serve ``stream_blob`` from the cache. Reads happen in a
worker thread, one chunk at a time, so the event loop never blocks on disk.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncGenerator
from pathlib import Path

__all__ = ["CHUNK_SIZE", "hash_file", "read_file"]

CHUNK_SIZE = 1 << 20


def hash_file(path: Path) -> tuple[str, int]:
    """``(sha256 digest, size)`` of a file, read in chunks (blocking; run it in a thread)."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return "sha256:" + digest.hexdigest(), size


async def read_file(path: Path, offset: int, length: int | None) -> AsyncGenerator[bytes, None]:
    """Chunks of a file from ``offset``, at most ``length`` bytes (all when None)."""
    f = await asyncio.to_thread(path.open, "rb")
    try:
        await asyncio.to_thread(f.seek, offset)
        remaining = length
        while remaining is None or remaining > 0:
            want = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
            chunk = await asyncio.to_thread(f.read, want)
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
    finally:
        f.close()
