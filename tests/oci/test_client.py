"""RegistryClient against a real registry (Debian's docker-registry), checked with skopeo/oras."""

from __future__ import annotations

import json
import os
from contextlib import aclosing
from pathlib import Path

import httpx
import oras.client
import pytest

from image_service.oci import (
    DOCKER_CONFIG,
    DOCKER_LAYER_TAR_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_TAR_GZIP,
    OCI_MANIFEST,
    BlobCache,
    Descriptor,
    ImageNotFound,
    Index,
    Manifest,
    Platform,
    PlatformNotFound,
    RegistryClient,
    RegistryUnavailable,
)
from tests.oci.layout import OciLayout, sha256, skopeo, tar_gz
from tests.oci.servers import HttpServer, Reply, Request
from tests.support.registry import LocalRegistry

pytestmark = [pytest.mark.anyio, pytest.mark.registry]


async def push_image(
    client: RegistryClient,
    repo: str,
    tag: str,
    files: dict[str, bytes],
    *,
    arch: str = "amd64",
    docker: bool = False,
) -> tuple[str, Descriptor]:
    """Push a one-layer image with the client under test; returns (manifest digest, layer)."""
    layer_bytes, diff = tar_gz(files)
    config_bytes = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(diff)]},
        }
    ).encode()
    config = await client.push_blob(repo, config_bytes, DOCKER_CONFIG if docker else OCI_CONFIG)
    layer = await client.push_blob(
        repo, layer_bytes, DOCKER_LAYER_TAR_GZIP if docker else OCI_LAYER_TAR_GZIP
    )
    media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    raw = Manifest(config, (layer,), media_type=media_type).encode()
    return await client.put_manifest(repo, tag, raw, media_type), layer


async def test_pushed_image_reads_back_with_skopeo(
    registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    async with RegistryClient(registry.host, insecure=True) as client:
        digest, layer = await push_image(
            client, repo, "v1", {"usr/install/amd64/vmlinuz": b"kernel"}
        )

    inspected = json.loads(
        skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/{repo}:v1")
    )
    assert inspected["Digest"] == digest
    assert inspected["Layers"] == [layer.digest]
    skopeo(
        "copy",
        "--src-tls-verify=false",
        f"docker://{registry.host}/{repo}:v1",
        f"dir:{tmp_path / 'out'}",
    )
    copied = (tmp_path / "out" / layer.digest.removeprefix("sha256:")).read_bytes()
    assert sha256(copied) == layer.digest


async def test_skopeo_pushed_image_is_pulled(
    registry: LocalRegistry, repo: str, tmp_path: Path, cache: BlobCache
) -> None:
    layout = OciLayout(tmp_path / "layout")
    image = layout.image({"usr/install/amd64/vmlinuz": os.urandom(3 << 20)})
    layout.tag(image, "v1")
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        f"oci:{layout.root}:v1",
        f"docker://{registry.host}/{repo}:v1",
    )

    async with RegistryClient(registry.host, insecure=True, cache=cache) as client:
        head = await client.head_manifest(repo, "v1")
        fetched = await client.get_manifest(repo, "v1")
        by_digest = await client.get_manifest(repo, image["digest"])
        layer = fetched.document.layers[0]
        path = await client.fetch_blob(repo, layer.digest, size=layer.size)

    assert head == Descriptor(OCI_MANIFEST, image["digest"], image["size"])
    assert (fetched.digest, fetched.media_type) == (image["digest"], OCI_MANIFEST)
    assert fetched.raw == layout.read(image["digest"]) == by_digest.raw
    assert fetched.index_digest is None
    assert path == cache.path_for(layer.digest)
    assert path.read_bytes() == layout.layer_bytes(image)


@pytest.mark.parametrize("docker", [False, True], ids=["oci", "docker"])
async def test_index_resolves_per_platform(
    registry: LocalRegistry, repo: str, docker: bool
) -> None:
    async with RegistryClient(registry.host, insecure=True) as client:
        amd64, _ = await push_image(client, repo, "amd64", {"arch": b"amd64"}, docker=docker)
        arm64, _ = await push_image(
            client, repo, "arm64", {"arch": b"arm64"}, arch="arm64", docker=docker
        )
        manifest_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
        index_type = DOCKER_MANIFEST_LIST if docker else OCI_INDEX
        entries = []
        for digest, arch in ((amd64, "amd64"), (arm64, "arm64")):
            size = (await client.head_manifest(repo, digest)).size
            entries.append(
                Descriptor(manifest_type, digest, size, platform=Platform("linux", arch))
            )
        index_digest = await client.put_manifest(
            repo, "multi", Index(tuple(entries), index_type).encode(), index_type
        )

        default = await client.get_manifest(repo, "multi")
        arm = await client.get_manifest(repo, "multi", platform=Platform.parse("linux/arm64/v8"))
        top = await client.get_manifest_or_index(repo, "multi")
        head = await client.head_manifest(repo, "multi")
        with pytest.raises(PlatformNotFound) as missing:
            await client.get_manifest(repo, "multi", platform=Platform("linux", "riscv64"))

    assert (default.digest, default.index_digest, default.media_type) == (
        amd64,
        index_digest,
        manifest_type,
    )
    assert (arm.digest, arm.index_digest) == (arm64, index_digest)
    assert isinstance(top.document, Index) and top.media_type == index_type
    assert (head.digest, head.media_type) == (index_digest, index_type)
    assert "linux/riscv64" in str(missing.value) and "linux/amd64, linux/arm64" in str(
        missing.value
    )
    # An independent client agrees on what the index resolves to.
    raw = skopeo(
        "inspect",
        "--tls-verify=false",
        "--override-arch=arm64",
        f"docker://{registry.host}/{repo}:multi",
    )
    inspected = json.loads(raw)
    assert inspected["Digest"] == index_digest  # skopeo reports the top-level digest
    assert inspected["Architecture"] == "arm64"
    assert inspected["Layers"] == [layer.digest for layer in arm.document.layers]


async def test_list_tags_follows_pagination(registry: LocalRegistry, repo: str) -> None:
    tags = sorted(f"v1.{i}.0" for i in range(7))
    async with RegistryClient(registry.host, insecure=True) as client:
        digest, _ = await push_image(client, repo, tags[0], {"a": b"a"})
        raw = (await client.get_manifest(repo, digest)).raw
        for tag in tags[1:]:
            await client.put_manifest(repo, tag, raw, OCI_MANIFEST)
        unpaged = await client.list_tags(repo)

    # distribution 2.8 ignores ?n= on tag lists (v3 and ghcr.io page them), so a front pages
    # the real registry's list the way distribution v3 does: ?n=&last=, Link rel="next".
    def paging(request: Request) -> Reply:
        listed = sorted(httpx.get(f"{registry.url}{request.path}").json()["tags"])
        n = int(request.query["n"][0])
        after = request.query.get("last", [""])[0]
        page = [t for t in listed if t > after][:n]
        headers = {"Content-Type": "application/json"}
        if page and page[-1] != listed[-1]:
            headers["Link"] = f'<{request.path}?last={page[-1]}&n={n}>; rel="next"'
        return Reply(200, headers, json.dumps({"name": repo, "tags": page}).encode())

    with HttpServer(paging) as front:
        async with RegistryClient(front.host, insecure=True) as client:
            listed = await client.list_tags(repo, page_size=3)
    assert [r.query.get("last") for r in front.requests] == [None, ["v1.2.0"], ["v1.5.0"]]
    assert listed == tags
    assert sorted(unpaged) == tags


async def test_fetch_blob_hits_cache_without_network(
    registry: LocalRegistry, repo: str, cache: BlobCache
) -> None:
    payload = os.urandom(100_000)
    async with RegistryClient(registry.host, insecure=True, cache=cache, retries=0) as client:
        blob = await client.push_blob(repo, payload)
        path = await client.fetch_blob(repo, blob.digest)
        registry.stop()
        try:
            again = await client.fetch_blob(repo, blob.digest)
            async with aclosing(client.stream_blob(repo, blob.digest, offset=10, length=20)) as it:
                ranged = b"".join([chunk async for chunk in it])
            with pytest.raises(RegistryUnavailable):  # proves the registry is really down
                await client.blob_exists(repo, blob.digest)
        finally:
            registry.start()
    assert again == path and path.read_bytes() == payload
    assert ranged == payload[10:30]
    assert oct(path.stat().st_mode & 0o777) == oct(0o444)
    assert list((cache.root / "tmp").iterdir()) == []


async def test_stopped_registry_is_unavailable_then_recovers(
    registry: LocalRegistry, repo: str
) -> None:
    async with RegistryClient(registry.host, insecure=True, retries=1, backoff=0.01) as client:
        await push_image(client, repo, "v1", {"a": b"a"})
        registry.stop()
        try:
            with pytest.raises(RegistryUnavailable) as down:
                await client.get_manifest(repo, "v1")
        finally:
            registry.start()
        assert (await client.get_manifest(repo, "v1")).document.layers
    assert f"registry {registry.host} is unreachable: connection refused" in str(down.value)
    assert down.value.registry == registry.host
    assert isinstance(down.value.__cause__, httpx.ConnectError)


async def test_missing_things_raise_image_not_found(registry: LocalRegistry, repo: str) -> None:
    missing_digest = sha256(b"nothing")
    async with RegistryClient(registry.host, insecure=True) as client:
        await push_image(client, repo, "v1", {"a": b"a"})
        with pytest.raises(ImageNotFound) as tag:
            await client.get_manifest(repo, "v2")
        with pytest.raises(ImageNotFound) as by_digest:
            await client.head_manifest(repo, missing_digest)
        with pytest.raises(ImageNotFound) as blob:
            await client.stream_blob(repo, missing_digest).__anext__()
        with pytest.raises(ImageNotFound) as unknown_repo:
            await client.list_tags(repo + "-nope")
        assert not await client.blob_exists(repo, missing_digest)
    assert f"{registry.host}/{repo}:v2 not found" in str(tag.value)
    assert "MANIFEST_UNKNOWN" in str(tag.value)
    assert f"{registry.host}/{repo}@{missing_digest}" in str(by_digest.value)
    assert f"blob {missing_digest} in {registry.host}/{repo}" in str(blob.value)
    assert f"{registry.host}/{repo}-nope" in str(unknown_repo.value)


async def test_stream_blob_ranges_and_full(registry: LocalRegistry, repo: str) -> None:
    payload = os.urandom((2 << 20) + 123)
    async with RegistryClient(registry.host, insecure=True) as client:
        blob = await client.push_blob(repo, payload)

        async def read(offset: int = 0, length: int | None = None) -> bytes:
            async with aclosing(
                client.stream_blob(repo, blob.digest, offset=offset, length=length)
            ) as it:
                return b"".join([chunk async for chunk in it])

        assert await read() == payload
        assert await read(5, 1000) == payload[5:1005]
        assert await read(len(payload) - 10) == payload[-10:]
        assert await read(0, 0) == b""


async def test_push_blob_from_file_and_skip_existing(
    registry: LocalRegistry, repo: str, tmp_path: Path, cache: BlobCache
) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom((5 << 20) + 7))
    async with RegistryClient(registry.host, insecure=True, cache=cache) as client:
        pushed = await client.push_blob(repo, source, "application/vnd.example.blob")
        assert await client.blob_exists(repo, pushed.digest)
        again = await client.push_blob(repo, source, "application/vnd.example.blob")
        path = await client.fetch_blob(repo, pushed.digest)
    assert (
        pushed
        == again
        == Descriptor(
            "application/vnd.example.blob", sha256(source.read_bytes()), source.stat().st_size
        )
    )
    assert path.read_bytes() == source.read_bytes()


async def test_oras_reads_what_we_push_and_we_read_what_oras_pushes(
    registry: LocalRegistry,
    repo: str,
    tmp_path: Path,
    cache: BlobCache,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    oras_client = oras.client.OrasClient(hostname=registry.host, insecure=True)
    (tmp_path / "kernel").write_bytes(b"oras kernel")
    monkeypatch.chdir(tmp_path)  # oras-py names layers by the path it was given
    oras_client.push(
        files=["kernel:application/vnd.example.kernel"], target=f"{registry.host}/{repo}:oras"
    )
    async with RegistryClient(registry.host, insecure=True, cache=cache) as client:
        fetched = await client.get_manifest(repo, "oras")
        (layer,) = fetched.document.layers
        assert layer.media_type == "application/vnd.example.kernel"
        assert layer.annotations["org.opencontainers.image.title"] == "kernel"
        assert (await client.fetch_blob(repo, layer.digest)).read_bytes() == b"oras kernel"

        ours = await client.push_blob(repo, b"our initramfs", "application/vnd.example.initramfs")
        config = await client.push_blob(repo, b"{}", "application/vnd.oci.empty.v1+json")
        titled = Descriptor(
            ours.media_type,
            ours.digest,
            ours.size,
            annotations={"org.opencontainers.image.title": "initramfs"},
        )
        await client.put_manifest(repo, "ours", Manifest(config, (titled,)).encode(), OCI_MANIFEST)
    pulled = oras_client.pull(
        target=f"{registry.host}/{repo}:ours", outdir=str(tmp_path / "pulled")
    )
    assert [Path(p).name for p in pulled] == ["initramfs"]
    assert (tmp_path / "pulled" / "initramfs").read_bytes() == b"our initramfs"


async def test_delete_manifest(registry: LocalRegistry, repo: str) -> None:
    async with RegistryClient(registry.host, insecure=True) as client:
        digest, _ = await push_image(client, repo, "v1", {"a": b"a"})
        await client.delete_manifest(repo, digest)
        with pytest.raises(ImageNotFound):
            await client.get_manifest(repo, digest)
        with pytest.raises(ImageNotFound):
            await client.delete_manifest(repo, digest)


async def test_https_is_the_default(registry: LocalRegistry) -> None:
    # The local registry speaks plain HTTP only, so a client that is not told `insecure`
    # must fail (it speaks TLS) instead of silently downgrading.
    async with RegistryClient(registry.host, retries=0) as client:
        with pytest.raises(RegistryUnavailable) as failed:
            await client.list_tags("anything")
    assert registry.host in str(failed.value) and "configure it as insecure" in str(failed.value)
