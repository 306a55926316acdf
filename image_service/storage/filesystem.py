"""Filesystem backend: ``<root>/<ns>/blobs/sha256/<hex>`` and ``<root>/<ns>/tags/<tag>``.

Writes go to a temporary file in the same directory, are fsynced, and are renamed into place,
so a crash never leaves a half-written entry visible, and concurrent writers of the same content
(several processes on one host) race harmlessly: both renames install identical bytes. Readers
need no locks. Blocking file work runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from image_service.storage.base import (
    CHUNK,
    BlobInfo,
    BlobNotFound,
    StorageError,
    check_digest,
    check_namespace,
    check_tag,
    file_digest,
    sha256_digest,
)

__all__ = ["FilesystemStore"]


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _install(source: Path, path: Path) -> None:
    """Put ``source``'s content at ``path`` atomically: a hard link when both are on one file
    system (instant, keeps sparse files sparse), else a copy; fsynced, then renamed."""
    tmp = path.parent / f".tmp-{os.getpid()}-{id(source):x}-{path.name[:16]}"
    try:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o444)  # stored content never changes in place
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class FilesystemStore:
    """``BlobStore`` on a local directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _blob_path(self, namespace: str, digest: str) -> Path:
        check_namespace(namespace)
        check_digest(digest)
        return self.root / namespace / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def _tag_path(self, namespace: str, tag: str) -> Path:
        check_namespace(namespace)
        return self.root / namespace / "tags" / check_tag(tag)

    def _put(self, namespace: str, data: bytes, tag: str | None) -> str:
        digest = sha256_digest(data)
        path = self._blob_path(namespace, digest)
        try:
            if not path.exists():
                _atomic_write(path, data)
            if tag is not None:
                _atomic_write(self._tag_path(namespace, tag), digest.encode())
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror}") from exc
        return digest

    def _get(self, namespace: str, digest: str, max_bytes: int) -> bytes:
        path = self._blob_path(namespace, digest)
        try:
            with path.open("rb") as handle:
                data = handle.read(max_bytes + 1)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found in {namespace}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from exc
        if len(data) > max_bytes:
            raise StorageError(f"blob {digest} in {namespace} is larger than {max_bytes} bytes")
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise StorageError(f"blob {digest} in {namespace} is corrupted (digest mismatch)")
        return data

    def _resolve(self, namespace: str, tag: str) -> str | None:
        try:
            text = self._tag_path(namespace, tag).read_text().strip()
        except FileNotFoundError:
            return None
        return check_digest(text)

    async def put_bytes(
        self, namespace: str, data: bytes, *, media_type: str, tag: str | None = None
    ) -> str:
        del media_type  # the filesystem keeps only content; the caller knows its type
        return await asyncio.to_thread(self._put, namespace, data, tag)

    async def get_bytes(self, namespace: str, digest: str, *, max_bytes: int) -> bytes:
        return await asyncio.to_thread(self._get, namespace, digest, max_bytes)

    def _put_file(self, namespace: str, source: Path, tag: str | None) -> BlobInfo:
        info = file_digest(source)
        path = self._blob_path(namespace, info.digest)
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                _install(source, path)
            if tag is not None:
                _atomic_write(self._tag_path(namespace, tag), info.digest.encode())
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror}") from exc
        return info

    async def put_file(
        self, namespace: str, path: Path, *, media_type: str, tag: str | None = None
    ) -> BlobInfo:
        del media_type
        return await asyncio.to_thread(self._put_file, namespace, path, tag)

    def _stat(self, namespace: str, digest: str) -> BlobInfo | None:
        try:
            return BlobInfo(digest, self._blob_path(namespace, digest).stat().st_size)
        except FileNotFoundError:
            return None

    async def stat(self, namespace: str, digest: str) -> BlobInfo | None:
        return await asyncio.to_thread(self._stat, namespace, digest)

    async def read(
        self, namespace: str, digest: str, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        path = self._blob_path(namespace, digest)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found in {namespace}") from None
        try:
            await asyncio.to_thread(handle.seek, offset)
            remaining = length
            while remaining is None or remaining > 0:
                want = CHUNK if remaining is None else min(CHUNK, remaining)
                chunk = await asyncio.to_thread(handle.read, want)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def exists(self, namespace: str, digest: str) -> bool:
        return await asyncio.to_thread(self._blob_path(namespace, digest).is_file)

    async def resolve_tag(self, namespace: str, tag: str) -> str | None:
        return await asyncio.to_thread(self._resolve, namespace, tag)

    async def aclose(self) -> None:
        return None
