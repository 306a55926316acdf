"""OCI registry backend: the shared store when the parts are scaled out.

A namespace is the repository ``<prefix>/<namespace>``. A blob is pushed as a registry blob
(so its digest is the content digest) and, when tagged, wrapped as the single layer of an
otherwise empty image tagged with that name — the layout upstream uses for schematics, so a
registry can be shared with an upstream factory. Registry blobs are linked to repositories, so
a namespace only ever sees its own blobs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from pathlib import Path

from image_service.oci import (
    OCI_CONFIG,
    OCI_MANIFEST,
    Descriptor,
    ImageNotFound,
    Manifest,
    RegistryClient,
    RegistryError,
    RegistryUnavailable,
)
from image_service.storage.base import (
    BlobInfo,
    BlobNotFound,
    StorageError,
    StorageUnavailable,
    check_digest,
    check_namespace,
    check_tag,
    sha256_digest,
)

__all__ = ["RegistryStore"]


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """The one seam where registry errors become storage errors (``what`` names the action)."""
    try:
        yield
    except ImageNotFound as exc:
        raise BlobNotFound(f"{what}: not found") from exc
    except RegistryUnavailable as exc:
        raise StorageUnavailable(f"storage registry is unavailable: {exc}") from exc
    except RegistryError as exc:
        raise StorageError(f"cannot {what}: {exc}") from exc


class RegistryStore:
    """``BlobStore`` in an OCI distribution registry."""

    def __init__(self, registry: str, *, prefix: str, insecure: bool = False) -> None:
        self._client = RegistryClient(registry, insecure=insecure)
        self._prefix = check_namespace(prefix)

    def _repo(self, namespace: str) -> str:
        return f"{self._prefix}/{check_namespace(namespace)}"

    async def put_bytes(
        self, namespace: str, data: bytes, *, media_type: str, tag: str | None = None
    ) -> str:
        repo = self._repo(namespace)
        with _translated(f"store a blob in {self._client.registry}/{repo}"):
            layer = await self._client.push_blob(repo, data, media_type)
            if tag is not None:
                await self._tag(repo, layer, tag)
        if layer.digest != sha256_digest(data):
            raise StorageError(f"registry stored {layer.digest}, expected {sha256_digest(data)}")
        return layer.digest

    async def get_bytes(self, namespace: str, digest: str, *, max_bytes: int) -> bytes:
        repo = self._repo(namespace)
        check_digest(digest)
        chunks: list[bytes] = []
        size = 0
        hasher = hashlib.sha256()
        with _translated(f"read blob {digest} from {repo}"):
            async with aclosing(self._client.stream_blob(repo, digest)) as stream:
                async for chunk in stream:
                    size += len(chunk)
                    if size > max_bytes:
                        raise StorageError(f"blob {digest} in {repo} is larger than {max_bytes}")
                    hasher.update(chunk)
                    chunks.append(chunk)
        if "sha256:" + hasher.hexdigest() != digest:
            raise StorageError(f"blob {digest} in {repo} is corrupted (digest mismatch)")
        return b"".join(chunks)

    async def put_file(
        self, namespace: str, path: Path, *, media_type: str, tag: str | None = None
    ) -> BlobInfo:
        repo = self._repo(namespace)
        with _translated(f"store {path.name} in {repo}"):
            layer = await self._client.push_blob(repo, path, media_type)
            if tag is not None:
                await self._tag(repo, layer, tag)
        return BlobInfo(layer.digest, layer.size)

    async def stat(self, namespace: str, digest: str) -> BlobInfo | None:
        repo = self._repo(namespace)
        try:
            with _translated(f"check blob {digest} in {repo}"):
                size = await self._client.blob_size(repo, check_digest(digest))
        except BlobNotFound:
            return None
        return BlobInfo(digest, size)

    async def read(
        self, namespace: str, digest: str, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        repo = self._repo(namespace)
        with _translated(f"read blob {digest} from {repo}"):
            async with aclosing(
                self._client.stream_blob(repo, check_digest(digest), offset=offset, length=length)
            ) as stream:
                async for chunk in stream:
                    yield chunk

    async def _tag(self, repo: str, layer: Descriptor, tag: str) -> None:
        config_raw = json.dumps(
            {
                "architecture": "",
                "os": "",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
            },
            separators=(",", ":"),
        ).encode()
        config = await self._client.push_blob(repo, config_raw, OCI_CONFIG)
        manifest = Manifest(config=config, layers=(layer,), media_type=OCI_MANIFEST)
        await self._client.put_manifest(repo, check_tag(tag), manifest.encode(), OCI_MANIFEST)

    async def exists(self, namespace: str, digest: str) -> bool:
        repo = self._repo(namespace)
        with _translated(f"check blob {digest} in {repo}"):
            return await self._client.blob_exists(repo, check_digest(digest))

    async def resolve_tag(self, namespace: str, tag: str) -> str | None:
        repo = self._repo(namespace)
        try:
            with _translated(f"resolve {repo}:{tag}"):
                fetched = await self._client.get_manifest(repo, check_tag(tag))
        except BlobNotFound:
            return None
        layers: tuple[Descriptor, ...] = fetched.document.layers
        if len(layers) != 1:
            raise StorageError(f"{repo}:{tag} is not a single-blob entry")
        return layers[0].digest

    async def aclose(self) -> None:
        await self._client.aclose()
