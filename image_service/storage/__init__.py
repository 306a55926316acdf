"""Content-addressed storage with two interchangeable backends.

``BlobStore`` (in ``base``) is the interface: blobs addressed by ``sha256:<hex>`` inside a
*namespace* (a registry repository; a directory on disk), plus tags naming a blob. The
``filesystem`` backend is the embedded default; the ``registry`` backend stores everything in an
OCI distribution registry (the shared store when the parts are scaled out). ``open_store`` picks
one from the settings.
"""

from image_service.storage.base import (
    BlobInfo,
    BlobNotFound,
    BlobStore,
    StorageError,
    StorageUnavailable,
    sha256_digest,
)

__all__ = [
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "StorageError",
    "StorageUnavailable",
    "sha256_digest",
]
