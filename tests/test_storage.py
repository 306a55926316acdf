"""Both storage backends behave the same: the filesystem and a real OCI registry."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from image_service.storage import BlobNotFound, BlobStore, StorageError
from image_service.storage.filesystem import FilesystemStore
from image_service.storage.registry import RegistryStore
from tests.support.registry import LocalRegistry

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["filesystem", "registry"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    if request.param == "filesystem":
        backend: BlobStore = FilesystemStore(tmp_path / "store")
    else:
        registry: LocalRegistry = request.getfixturevalue("registry")
        backend = RegistryStore(
            registry.host, prefix=f"storage-test-{uuid.uuid4().hex[:8]}", insecure=True
        )
    yield backend
    await backend.aclose()


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def test_bytes_roundtrip_and_tags(store: BlobStore) -> None:
    data = b"customization: {}\n"
    digest = await store.put_bytes("schematics", data, media_type="text/yaml", tag="first")
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert await store.exists("schematics", digest)
    assert await store.get_bytes("schematics", digest, max_bytes=1024) == data
    assert await store.resolve_tag("schematics", "first") == digest
    assert await store.resolve_tag("schematics", "missing") is None
    # idempotent
    assert await store.put_bytes("schematics", data, media_type="text/yaml") == digest


async def test_namespaces_are_isolated(store: BlobStore) -> None:
    digest = await store.put_bytes("assets", b"only here", media_type="application/data")
    assert not await store.exists("schematics", digest)
    with pytest.raises(BlobNotFound):
        await store.get_bytes("schematics", digest, max_bytes=1024)


async def test_size_limit(store: BlobStore) -> None:
    digest = await store.put_bytes("assets", b"x" * 100, media_type="application/data")
    with pytest.raises(StorageError):
        await store.get_bytes("assets", digest, max_bytes=10)


async def test_files_stream_and_ranges(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    payload = os.urandom(3 * 1024 * 1024 + 17)
    source.write_bytes(payload)
    info = await store.put_file("assets", source, media_type="application/data", tag="k1")
    assert info.digest == "sha256:" + hashlib.sha256(payload).hexdigest()
    assert info.size == len(payload)
    assert await store.stat("assets", info.digest) == info
    assert await collect(store.read("assets", info.digest)) == payload
    assert await collect(store.read("assets", info.digest, offset=5, length=10)) == payload[5:15]
    tail = await collect(store.read("assets", info.digest, offset=len(payload) - 3))
    assert tail == payload[-3:]
    assert await store.resolve_tag("assets", "k1") == info.digest
    assert await store.stat("assets", "sha256:" + "0" * 64) is None


async def test_missing_blob(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        await store.get_bytes("assets", "sha256:" + "1" * 64, max_bytes=10)
    with pytest.raises(BlobNotFound):
        await collect(store.read("assets", "sha256:" + "1" * 64))


@pytest.mark.parametrize("bad", ["../x", "UPPER", "a//b", ""])
async def test_invalid_names_rejected(store: BlobStore, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        await store.put_bytes(bad, b"x", media_type="application/data")


async def test_filesystem_writes_are_atomic_and_verified(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "store")
    digest = await store.put_bytes("assets", b"content", media_type="application/data")
    leftovers = [p for p in (tmp_path / "store").rglob(".tmp-*")]
    assert leftovers == []
    blob = tmp_path / "store" / "assets" / "blobs" / "sha256" / digest.removeprefix("sha256:")
    blob.chmod(0o644)
    blob.write_bytes(b"tampered")
    with pytest.raises(StorageError, match="corrupted"):
        await store.get_bytes("assets", digest, max_bytes=100)
