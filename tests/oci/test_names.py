"""Grammar of registry hosts, repository names, tags, digests and image references."""

from __future__ import annotations

import pytest

from image_service.oci import (
    ImageReference,
    InvalidReference,
    RegistryClient,
    validate_digest,
    validate_reference,
    validate_registry,
    validate_repository,
    validate_tag,
)
from tests.oci.servers import HttpServer, Reply

HEX = "a" * 64


@pytest.mark.parametrize(
    "name",
    [
        "siderolabs/imager",
        "a",
        "a/b/c",
        "image-factory/schematics",
        "a__b",
        "a.b_c",
        "a--b",
        "x" * 255,
    ],
)
def test_valid_repositories(name: str) -> None:
    assert validate_repository(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Upper",
        "a/",
        "/a",
        "a//b",
        "-a",
        "a-",
        "a..b",
        "a___b",
        "../etc",
        "a/../b",
        "a b",
        "a?b",
        "x" * 256,
        "a%2fb",
    ],
)
def test_invalid_repositories(name: str) -> None:
    with pytest.raises(InvalidReference, match="invalid repository name"):
        validate_repository(name)


@pytest.mark.parametrize("tag", ["v1.10.0", "latest", "_x", "A-b.c_d", "x" * 128])
def test_valid_tags(tag: str) -> None:
    assert validate_tag(tag) == tag == validate_reference(tag)


@pytest.mark.parametrize("tag", ["", ".x", "-x", "a/b", "a b", "x" * 129, "v1?", "a:b"])
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(InvalidReference):
        validate_reference(tag)


@pytest.mark.parametrize(
    "digest",
    [f"sha256:{HEX[:63]}", f"sha256:{'A' * 64}", f"sha512:{HEX}{HEX}", f"sha256:{HEX}x", "sha256:"],
)
def test_invalid_digests(digest: str) -> None:
    with pytest.raises(InvalidReference, match="invalid digest"):
        validate_digest(digest)
    with pytest.raises(InvalidReference):
        validate_reference(digest)


@pytest.mark.parametrize(
    "host", ["ghcr.io", "127.0.0.1:5000", "localhost", "my-registry.example.com:443", "[::1]:5000"]
)
def test_valid_registries(host: str) -> None:
    assert validate_registry(host) == host


@pytest.mark.parametrize(
    "host",
    [
        "",
        "https://ghcr.io",
        "ghcr.io/",
        "ghcr.io/x",
        "a:b",
        "host:70000",
        "host:0",
        "-bad.io",
        "a b",
        "user@host",
    ],
)
def test_invalid_registries(host: str) -> None:
    with pytest.raises(InvalidReference, match="invalid registry"):
        validate_registry(host)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "ghcr.io/siderolabs/imager:v1.10.0",
            ImageReference("ghcr.io", "siderolabs/imager", "v1.10.0"),
        ),
        (
            f"ghcr.io/siderolabs/gvisor:20231214.0-v1.6.0@sha256:{HEX}",
            ImageReference("ghcr.io", "siderolabs/gvisor", "20231214.0-v1.6.0", f"sha256:{HEX}"),
        ),
        (
            f"127.0.0.1:5000/x/y@sha256:{HEX}",
            ImageReference("127.0.0.1:5000", "x/y", None, f"sha256:{HEX}"),
        ),
        ("localhost/x:1", ImageReference("localhost", "x", "1")),
    ],
)
def test_image_reference_round_trip(text: str, expected: ImageReference) -> None:
    parsed = ImageReference.parse(text)
    assert parsed == expected and str(parsed) == text
    assert parsed.reference == (expected.digest or expected.tag)


def test_image_reference_with_registry() -> None:
    ref = ImageReference.parse("ghcr.io/siderolabs/sbc-raspberrypi:v0.2.0")
    assert (
        str(ref.with_registry("127.0.0.1:5000"))
        == "127.0.0.1:5000/siderolabs/sbc-raspberrypi:v0.2.0"
    )


@pytest.mark.parametrize(
    "text",
    [
        "siderolabs/imager:v1",
        "imager",
        "ghcr.io/Bad/x:v1",
        "ghcr.io/x",
        "ghcr.io/x:",
        "ghcr.io/x@sha256:z",
    ],
)
def test_invalid_image_references(text: str) -> None:
    with pytest.raises(InvalidReference):
        ImageReference.parse(text)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("repo_name", "reference"),
    [
        ("UPPER/case", "v1"),
        ("../etc", "v1"),
        ("ok/repo", "bad tag"),
        ("ok/repo", "sha256:abc"),
        ("ok/repo", "a/b"),
    ],
)
async def test_invalid_names_fail_before_any_request(repo_name: str, reference: str) -> None:
    with HttpServer(lambda r: Reply(500)) as server:
        async with RegistryClient(server.host, insecure=True, retries=0) as client:
            with pytest.raises(InvalidReference):
                await client.get_manifest(repo_name, reference)
            with pytest.raises(InvalidReference):
                await client.blob_exists(repo_name, reference)
    assert server.requests == []
