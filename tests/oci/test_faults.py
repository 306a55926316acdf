"""Failure paths against small real HTTP servers: wrong content, broken transfers, 5xx, 4xx."""

from __future__ import annotations

import asyncio
import json
import os
from contextlib import aclosing

import pytest

from image_service.oci import (
    BlobCache,
    DigestMismatch,
    RegistryClient,
    RegistryResponseError,
    RegistryUnavailable,
    UnsupportedMediaType,
)
from tests.oci.layout import sha256
from tests.oci.servers import HttpServer, Reply, Request

pytestmark = pytest.mark.anyio

GOOD = b"the blob everybody expects"
GOOD_DIGEST = sha256(GOOD)


def _client(server: HttpServer, cache: BlobCache | None = None, retries: int = 3) -> RegistryClient:
    return RegistryClient(server.host, insecure=True, cache=cache, retries=retries, backoff=0.01)


async def test_wrong_blob_is_detected_and_not_cached(cache: BlobCache) -> None:
    with HttpServer(lambda r: Reply(200, body=b"something else entirely")) as server:
        async with _client(server, cache) as client:
            with pytest.raises(DigestMismatch) as fetched:
                await client.fetch_blob("lib/x", GOOD_DIGEST)
            received: list[bytes] = []
            with pytest.raises(DigestMismatch) as streamed:
                async with aclosing(client.stream_blob("lib/x", GOOD_DIGEST)) as chunks:
                    async for chunk in chunks:
                        received.append(chunk)
    assert fetched.value.expected == GOOD_DIGEST
    assert fetched.value.actual == sha256(b"something else entirely")
    assert GOOD_DIGEST in str(fetched.value) and server.host in str(fetched.value)
    assert GOOD_DIGEST in str(streamed.value)
    # Pass-through hands the bytes on as they come and flags them after the last chunk.
    assert b"".join(received) == b"something else entirely"
    assert not cache.has(GOOD_DIGEST)
    assert list((cache.root / "tmp").iterdir()) == []


async def test_wrong_manifest_is_detected() -> None:
    manifest = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    wanted = sha256(b"another manifest")

    def serve(request: Request) -> Reply:
        headers = {"Content-Type": "application/vnd.oci.image.index.v1+json"}
        if request.path.endswith("/lies"):
            headers["Docker-Content-Digest"] = wanted
        return Reply(200, headers, manifest)

    with HttpServer(serve) as server:
        async with _client(server) as client:
            with pytest.raises(DigestMismatch) as by_digest:
                await client.get_manifest_or_index("lib/x", wanted)
            with pytest.raises(DigestMismatch) as by_header:
                await client.get_manifest_or_index("lib/x", "lies")
            honest = await client.get_manifest_or_index("lib/x", "v1")
    assert f"{server.host}/lib/x@{wanted}" in str(by_digest.value)
    assert by_digest.value.actual == sha256(manifest)
    assert f"{server.host}/lib/x:lies" in str(by_header.value)
    assert honest.digest == sha256(manifest)


async def test_broken_transfer_is_resumed_with_range(cache: BlobCache) -> None:
    payload = os.urandom(3 << 20)

    def serve(request: Request) -> Reply:
        if "range" not in request.headers:
            return Reply(200, {"Content-Length": str(len(payload))}, payload, cut_after=1 << 20)
        start = int(request.headers["range"].removeprefix("bytes=").rstrip("-"))
        return Reply(
            206,
            {"Content-Range": f"bytes {start}-{len(payload) - 1}/{len(payload)}"},
            payload[start:],
        )

    with HttpServer(serve) as server:
        async with _client(server, cache) as client:
            path = await client.fetch_blob("lib/x", sha256(payload), size=len(payload))
    assert path.read_bytes() == payload
    ranges = [r.headers.get("range") for r in server.requests]
    assert ranges[0] is None and len(ranges) == 2
    assert ranges[1] is not None and int(ranges[1][6:-1]) >= 1  # resumed, not restarted


async def test_oversized_blob_is_cut_off(cache: BlobCache) -> None:
    with HttpServer(lambda r: Reply(200, body=GOOD + b" and more")) as server:
        async with _client(server, cache) as client:
            with pytest.raises(DigestMismatch, match="larger than the 26 bytes"):
                await client.fetch_blob("lib/x", GOOD_DIGEST, size=len(GOOD))


async def test_5xx_and_429_are_retried_until_success(cache: BlobCache) -> None:
    statuses = iter([503, 429, 502])

    def serve(request: Request) -> Reply:
        status = next(statuses, 200)
        return Reply(status, {"Retry-After": "0"}, GOOD if status == 200 else b"busy")

    with HttpServer(serve) as server:
        async with _client(server, cache) as client:
            path = await client.fetch_blob("lib/x", GOOD_DIGEST)
    assert path.read_bytes() == GOOD
    assert len(server.requests) == 4


async def test_persistent_5xx_becomes_unavailable() -> None:
    with HttpServer(
        lambda r: Reply(500, body=b'{"errors":[{"code":"UNKNOWN","message":"disk full"}]}')
    ) as server:
        async with _client(server, retries=2) as client:
            with pytest.raises(RegistryUnavailable) as failed:
                await client.get_manifest("lib/x", "v1")
    assert len(server.requests) == 3
    message = str(failed.value)
    assert server.host in message and "HTTP 500" in message and "disk full" in message


async def test_other_4xx_is_not_retried() -> None:
    body = b'{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid"}]}'
    with HttpServer(lambda r: Reply(400, {"Content-Type": "application/json"}, body)) as server:
        async with _client(server) as client:
            with pytest.raises(RegistryResponseError) as failed:
                await client.list_tags("lib/x")
    assert len(server.requests) == 1
    assert (failed.value.status, failed.value.code) == (400, "MANIFEST_INVALID")


async def test_schema1_manifest_is_unsupported() -> None:
    schema1 = json.dumps({"schemaVersion": 1, "name": "lib/x", "fsLayers": []}).encode()
    headers = {"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"}
    with HttpServer(lambda r: Reply(200, headers, schema1)) as server:
        async with _client(server) as client:
            with pytest.raises(UnsupportedMediaType) as failed:
                await client.get_manifest("lib/x", "old")
    assert failed.value.media_type == "application/vnd.docker.distribution.manifest.v1+prettyjws"
    assert f"{server.host}/lib/x:old" in str(failed.value)


async def test_concurrent_fetches_download_once(cache: BlobCache) -> None:
    with HttpServer(lambda r: Reply(200, body=GOOD)) as server:
        async with _client(server, cache) as client:
            paths = await asyncio.gather(
                *(client.fetch_blob("lib/x", GOOD_DIGEST) for _ in range(5))
            )
    assert len(set(paths)) == 1 and paths[0].read_bytes() == GOOD
    assert len(server.requests) == 1


async def test_push_skips_a_blob_the_registry_has() -> None:
    with HttpServer(lambda r: Reply(200, {"Content-Length": str(len(GOOD))})) as server:
        async with _client(server) as client:
            pushed = await client.push_blob("lib/x", GOOD)
    assert pushed.digest == GOOD_DIGEST and pushed.size == len(GOOD)
    assert [(r.method, r.path) for r in server.requests] == [
        ("HEAD", f"/v2/lib/x/blobs/{GOOD_DIGEST}")
    ]
