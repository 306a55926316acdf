"""OCI distribution client shared by the catalog, the builder and the OCI storage backend.

``RegistryClient`` (``client``) talks to one registry over ``_transport`` (httpx, retries,
anonymous bearer tokens from ``auth``, error mapping into the tree in ``errors``); names are
validated by ``names`` before they reach a URL; ``media`` holds the manifest/index records
and media types; ``cache.BlobCache`` stores downloaded blobs by digest.

    async with RegistryClient("ghcr.io", cache=BlobCache(data_dir / "blobs")) as registry:
        image = await registry.get_manifest("siderolabs/imager", "v1.10.0")
        for layer in image.document.layers:
            path = await registry.fetch_blob("siderolabs/imager", layer.digest, size=layer.size)
"""

from image_service.oci.cache import BlobCache, BlobWriter
from image_service.oci.client import RegistryClient
from image_service.oci.errors import (
    DigestMismatch,
    ImageNotFound,
    InvalidManifest,
    InvalidReference,
    PlatformNotFound,
    RegistryAuthError,
    RegistryError,
    RegistryResponseError,
    RegistryUnavailable,
    UnsupportedMediaType,
)
from image_service.oci.media import (
    DOCKER_CONFIG,
    DOCKER_LAYER_TAR_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    EMPTY_JSON_DESCRIPTOR,
    INDEX_MEDIA_TYPES,
    LAYER_COMPRESSION,
    LINUX_AMD64,
    MANIFEST_MEDIA_TYPES,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER_TAR,
    OCI_LAYER_TAR_GZIP,
    OCI_LAYER_TAR_ZSTD,
    OCI_MANIFEST,
    OCTET_STREAM,
    Descriptor,
    Fetched,
    Index,
    Manifest,
    Platform,
    parse_manifest,
)
from image_service.oci.names import (
    ImageReference,
    is_digest,
    validate_digest,
    validate_reference,
    validate_registry,
    validate_repository,
    validate_tag,
)

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
    "BlobCache",
    "BlobWriter",
    "Descriptor",
    "DigestMismatch",
    "Fetched",
    "ImageNotFound",
    "ImageReference",
    "Index",
    "InvalidManifest",
    "InvalidReference",
    "Manifest",
    "Platform",
    "PlatformNotFound",
    "RegistryAuthError",
    "RegistryClient",
    "RegistryError",
    "RegistryResponseError",
    "RegistryUnavailable",
    "UnsupportedMediaType",
    "is_digest",
    "parse_manifest",
    "validate_digest",
    "validate_reference",
    "validate_registry",
    "validate_repository",
    "validate_tag",
]
