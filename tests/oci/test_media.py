"""Parsing and encoding manifests and indexes; platform matching."""

from __future__ import annotations

import json

import pytest

from image_service.oci import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    EMPTY_JSON_DESCRIPTOR,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Index,
    InvalidManifest,
    Manifest,
    Platform,
    UnsupportedMediaType,
    parse_manifest,
)
from tests.oci.layout import sha256

D1 = sha256(b"1")
D2 = sha256(b"2")


def test_empty_json_descriptor_is_the_oci_constant() -> None:
    assert EMPTY_JSON_DESCRIPTOR.digest == sha256(b"{}") and EMPTY_JSON_DESCRIPTOR.size == 2


def test_manifest_round_trip_keeps_everything() -> None:
    manifest = Manifest(
        config=EMPTY_JSON_DESCRIPTOR,
        layers=(
            Descriptor(
                "application/vnd.sidero.dev-image.schematic", D1, 10, annotations={"k": "v"}
            ),
        ),
        annotations={"org.opencontainers.image.created": "1970-01-01T00:00:00Z"},
        artifact_type="application/vnd.example",
        subject=Descriptor(OCI_MANIFEST, D2, 5),
    )
    raw = manifest.encode()
    assert parse_manifest(raw) == manifest
    assert json.loads(raw)["schemaVersion"] == 2


@pytest.mark.parametrize(
    ("media_type", "kind"),
    [
        (OCI_INDEX, Index),
        (DOCKER_MANIFEST_LIST, Index),
        (OCI_MANIFEST, Manifest),
        (DOCKER_MANIFEST, Manifest),
    ],
)
def test_media_type_from_header_when_body_has_none(media_type: str, kind: type) -> None:
    body = (
        {"schemaVersion": 2, "manifests": []}
        if kind is Index
        else {"schemaVersion": 2, "config": EMPTY_JSON_DESCRIPTOR.to_dict(), "layers": []}
    )
    parsed = parse_manifest(json.dumps(body).encode(), media_type + "; charset=utf-8")
    assert isinstance(parsed, kind) and parsed.media_type == media_type


def test_shape_decides_without_any_media_type() -> None:
    assert isinstance(parse_manifest(b'{"schemaVersion":2,"manifests":[]}'), Index)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"not json", InvalidManifest),
        (b"[]", InvalidManifest),
        (
            b'{"schemaVersion":2,"config":{"mediaType":"x","digest":"md5:1","size":1},"layers":[]}',
            InvalidManifest,
        ),
        (
            b'{"schemaVersion":2,"config":{"mediaType":"x","digest":"'
            + D1.encode()
            + b'","size":-1},"layers":[]}',
            InvalidManifest,
        ),
        (b'{"schemaVersion":2,"manifests":{}}', InvalidManifest),
        (b'{"schemaVersion":1,"fsLayers":[]}', UnsupportedMediaType),
        (
            b'{"schemaVersion":2,"mediaType":"application/vnd.oci.artifact.manifest.v1+json"}',
            UnsupportedMediaType,
        ),
    ],
)
def test_invalid_documents(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_manifest(raw)


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ("linux/amd64", D1),
        ("linux/arm64", D2),
        ("linux/arm64/v8", D2),
        ("linux/arm/v7", D1),
        ("linux/arm", D1),  # no variant wanted: the default variant (v7) is preferred
        ("linux/arm/v6", D2),
        ("linux/riscv64", None),
        ("windows/amd64", None),
    ],
)
def test_index_select(wanted: str, expected: str | None) -> None:
    index = Index(
        (
            Descriptor(OCI_MANIFEST, D1, 1, platform=Platform("linux", "amd64")),
            Descriptor(OCI_MANIFEST, D2, 1, platform=Platform("linux", "arm64")),  # no variant: v8
            Descriptor(OCI_MANIFEST, D2, 1, platform=Platform("linux", "arm", "v6")),
            Descriptor(OCI_MANIFEST, D1, 1, platform=Platform("linux", "arm", "v7")),
            Descriptor(OCI_MANIFEST, D2, 1, platform=Platform("unknown", "unknown")),  # attestation
        )
    )
    chosen = index.select(Platform.parse(wanted))
    assert (chosen.digest if chosen else None) == expected
    assert parse_manifest(index.encode()) == index


@pytest.mark.parametrize("text", ["linux", "linux/", "/amd64", "linux/arm/v7/x"])
def test_invalid_platforms(text: str) -> None:
    with pytest.raises(ValueError, match="invalid platform"):
        Platform.parse(text)
