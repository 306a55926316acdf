"""OCI and Docker v2 media types and the documents built from them.

``Descriptor``, ``Manifest``, ``Index`` and ``Platform`` are frozen records of the JSON the
registry stores; ``parse_manifest`` turns raw bytes into one of them (accepting the OCI types
and their Docker v2 schema 2 equivalents), ``Manifest.encode``/``Index.encode`` turn them back
into compact JSON for pushing. The raw bytes a registry returned are kept by the client next to
the parsed form, because digests are taken over the exact bytes, never over a re-encoding.

Nothing here does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from image_service.oci.errors import InvalidManifest, UnsupportedMediaType
from image_service.oci.names import is_digest

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER_TAR_GZIP",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "EMPTY_JSON_DESCRIPTOR",
    "INDEX_MEDIA_TYPES",
    "LAYER_COMPRESSION",
    "LINUX_AMD64",
    "MANIFEST_MEDIA_TYPES",
    "OCI_CONFIG",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_LAYER_TAR",
    "OCI_LAYER_TAR_GZIP",
    "OCI_LAYER_TAR_ZSTD",
    "OCI_MANIFEST",
    "OCTET_STREAM",
    "Descriptor",
    "Fetched",
    "Index",
    "Manifest",
    "Platform",
    "parse_manifest",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_TAR_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCTET_STREAM = "application/octet-stream"

MANIFEST_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})

# How each tar layer type is compressed (None: plain tar), for whoever unpacks layers.
LAYER_COMPRESSION: Mapping[str, str | None] = {
    OCI_LAYER_TAR: None,
    OCI_LAYER_TAR_GZIP: "gzip",
    OCI_LAYER_TAR_ZSTD: "zstd",
    DOCKER_LAYER_TAR_GZIP: "gzip",
}

# Variant assumed when a platform names none (as containerd's platform matcher does).
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7", "amd64": "v1"}


@dataclass(frozen=True)
class Platform:
    """An ``os/architecture[/variant]`` triple, e.g. ``linux/arm64``."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch`` or ``os/arch/variant``."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(
                f"invalid platform {text!r}: expected OS/ARCH[/VARIANT], e.g. linux/arm64"
            )
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def _variant(self) -> str | None:
        return self.variant or _DEFAULT_VARIANT.get(self.architecture)

    def matches(self, other: Platform) -> bool:
        """True if ``other`` satisfies this (wanted) platform; no variant here matches any."""
        return (
            self.os == other.os
            and self.architecture == other.architecture
            and (self.variant is None or self._variant() == other._variant())
        )

    def to_dict(self) -> dict[str, str]:
        data = {"architecture": self.architecture, "os": self.os}
        if self.variant is not None:
            data["variant"] = self.variant
        return data

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


# What ``RegistryClient.get_manifest`` resolves an index to when no platform is given.
LINUX_AMD64 = Platform("linux", "amd64")


@dataclass(frozen=True)
class Descriptor:
    """A pointer to content: media type, digest and size (plus optional extras)."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    platform: Platform | None = None
    artifact_type: str | None = None
    urls: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type is not None:
            data["artifactType"] = self.artifact_type
        if self.urls:
            data["urls"] = list(self.urls)
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        if self.platform is not None:
            data["platform"] = self.platform.to_dict()
        return data


# The OCI "empty" config blob ``{}`` used by artifacts that carry no configuration.
EMPTY_JSON_DESCRIPTOR = Descriptor(
    OCI_EMPTY, "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", 2
)


@dataclass(frozen=True)
class Manifest:
    """An image manifest (OCI or Docker v2 schema 2): one config plus ordered layers."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = OCI_MANIFEST
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    artifact_type: str | None = None
    subject: Descriptor | None = None

    def encode(self) -> bytes:
        """Compact JSON, ready for ``RegistryClient.put_manifest``."""
        data: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type}
        if self.artifact_type is not None:
            data["artifactType"] = self.artifact_type
        data["config"] = self.config.to_dict()
        data["layers"] = [layer.to_dict() for layer in self.layers]
        if self.subject is not None:
            data["subject"] = self.subject.to_dict()
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        return _dump(data)


@dataclass(frozen=True)
class Index:
    """An image index (OCI) or manifest list (Docker): manifests per platform."""

    manifests: tuple[Descriptor, ...]
    media_type: str = OCI_INDEX
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    def select(self, platform: Platform) -> Descriptor | None:
        """The manifest for ``platform``, preferring the default variant; None if absent."""
        found = [
            d
            for d in self.manifests
            if d.platform is not None
            and d.media_type in MANIFEST_MEDIA_TYPES
            and platform.matches(d.platform)
        ]
        preferred = [
            d for d in found if d.platform and d.platform._variant() == platform._variant()
        ]
        return next(iter(preferred or found), None)

    def encode(self) -> bytes:
        data: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "manifests": [d.to_dict() for d in self.manifests],
        }
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        return _dump(data)


DocT = TypeVar("DocT", bound=Manifest | Index)


@dataclass(frozen=True)
class Fetched(Generic[DocT]):
    """A manifest or index as the registry served it: parsed form plus exact raw bytes.

    ``index_digest`` is set when ``document`` was picked from an image index for a platform.
    """

    document: DocT
    digest: str
    media_type: str
    raw: bytes
    index_digest: str | None = None

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw))


def parse_manifest(raw: bytes, media_type: str | None = None) -> Manifest | Index:
    """Parse a manifest or index; ``media_type`` is the Content-Type the registry sent.

    The type comes from the document's own ``mediaType`` when present, then from the
    Content-Type, then from its shape (``manifests`` means an index).
    """
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidManifest(f"manifest is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidManifest("manifest is not a JSON object")
    header = (media_type or "").split(";")[0].strip()
    declared = data.get("mediaType")
    kind = declared if isinstance(declared, str) and declared else header
    if kind not in MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES:
        if kind and kind not in ("application/json", OCTET_STREAM):
            raise UnsupportedMediaType(
                f"unsupported manifest media type {kind!r}; supported are OCI image manifests "
                "and indexes and Docker v2 schema 2 manifests and manifest lists",
                media_type=kind,
            )
        kind = OCI_INDEX if "manifests" in data else OCI_MANIFEST
    if data.get("schemaVersion") != 2:
        raise UnsupportedMediaType(
            f"unsupported manifest schemaVersion {data.get('schemaVersion')!r} "
            "(Docker schema 1 is not supported)",
            media_type=kind,
        )
    if kind in INDEX_MEDIA_TYPES:
        return Index(
            manifests=tuple(_descriptor(d) for d in _list(data, "manifests")),
            media_type=kind,
            annotations=_annotations(data),
        )
    subject = data.get("subject")
    return Manifest(
        config=_descriptor(data.get("config")),
        layers=tuple(_descriptor(d) for d in _list(data, "layers")),
        media_type=kind,
        annotations=_annotations(data),
        artifact_type=_opt_str(data, "artifactType"),
        subject=_descriptor(subject) if subject is not None else None,
    )


def _dump(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise InvalidManifest(f"manifest field {key!r} is not a list")
    return value


def _opt_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidManifest(f"manifest field {key!r} is not a string")
    return value


def _annotations(data: dict[str, Any]) -> dict[str, str]:
    value = data.get("annotations") or {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidManifest("manifest annotations must map strings to strings")
    return value


def _descriptor(data: Any) -> Descriptor:
    if not isinstance(data, dict):
        raise InvalidManifest("descriptor is not a JSON object")
    media_type, digest, size = data.get("mediaType"), data.get("digest"), data.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise InvalidManifest("descriptor has no mediaType")
    if not isinstance(digest, str) or not is_digest(digest):
        raise InvalidManifest(f"descriptor digest {digest!r} is not a sha256 digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidManifest(f"descriptor {digest} has an invalid size {size!r}")
    urls = _list(data, "urls")
    if not all(isinstance(u, str) for u in urls):
        raise InvalidManifest(f"descriptor {digest} has non-string urls")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        annotations=_annotations(data),
        platform=_platform(data.get("platform")),
        artifact_type=_opt_str(data, "artifactType"),
        urls=tuple(urls),
    )


def _platform(data: Any) -> Platform | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise InvalidManifest("descriptor platform is not a JSON object")
    os_, arch, variant = data.get("os"), data.get("architecture"), data.get("variant")
    if not isinstance(os_, str) or not isinstance(arch, str):
        raise InvalidManifest("descriptor platform lacks os or architecture")
    if variant is not None and not isinstance(variant, str):
        raise InvalidManifest("descriptor platform variant is not a string")
    return Platform(os_, arch, variant or None)
