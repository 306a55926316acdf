"""Errors raised by the OCI distribution client.

Every failure the package reports is a ``RegistryError``; nothing from httpx escapes. Foreign
exceptions are translated in one place (``image_service.oci._transport``) and chained with
``raise ... from exc`` so the original cause stays in tracebacks and logs.

The hierarchy::

    RegistryError                     base class; ``registry`` names HOST[:PORT] when known
    ├── InvalidReference (ValueError) a repository, tag, digest or host failed validation;
    │                                 raised before any request is made
    ├── RegistryUnavailable           connection refused or reset, timeouts, 429 and 5xx
    │                                 answers that persisted through every retry
    ├── RegistryAuthError             401/403 after the token flow, or the token endpoint
    │                                 refused to hand out a token
    ├── ImageNotFound                 404: the repository, manifest or blob does not exist
    │   └── PlatformNotFound          an image index has no manifest for the wanted platform
    ├── DigestMismatch                content does not hash to the digest it was asked for
    ├── UnsupportedMediaType          a manifest type this client cannot parse (e.g. schema 1)
    ├── InvalidManifest (ValueError)  a manifest or index that is not valid JSON of its type
    └── RegistryResponseError         any other answer the operation does not allow: an
                                      unexpected status, malformed JSON, a bad Location

Messages name the registry and the image (``HOST/repo:tag``, ``HOST/repo@sha256:…`` or a blob
digest) and say what happened, so they can be shown to an operator as they are.
"""

from __future__ import annotations

__all__ = [
    "DigestMismatch",
    "ImageNotFound",
    "InvalidManifest",
    "InvalidReference",
    "PlatformNotFound",
    "RegistryAuthError",
    "RegistryError",
    "RegistryResponseError",
    "RegistryUnavailable",
    "UnsupportedMediaType",
]


class RegistryError(Exception):
    """Base class of every error raised by ``image_service.oci``."""

    def __init__(self, message: str, *, registry: str | None = None) -> None:
        super().__init__(message)
        self.registry = registry


class InvalidReference(RegistryError, ValueError):
    """A repository name, tag, digest or registry host does not follow the OCI grammar."""


class RegistryUnavailable(RegistryError):
    """The registry could not be reached or kept failing (5xx, 429, timeouts) after retries."""


class RegistryAuthError(RegistryError):
    """The registry refused access even after the bearer-token flow."""


class ImageNotFound(RegistryError):
    """The registry answered 404 for a repository, manifest or blob."""


class PlatformNotFound(ImageNotFound):
    """An image index holds no manifest for the requested platform."""


class DigestMismatch(RegistryError):
    """Downloaded content does not hash to the digest it was requested by."""

    def __init__(
        self, message: str, *, expected: str, actual: str, registry: str | None = None
    ) -> None:
        super().__init__(message, registry=registry)
        self.expected = expected
        self.actual = actual


class UnsupportedMediaType(RegistryError):
    """A manifest media type this client does not understand."""

    def __init__(self, message: str, *, media_type: str, registry: str | None = None) -> None:
        super().__init__(message, registry=registry)
        self.media_type = media_type


class InvalidManifest(RegistryError, ValueError):
    """A manifest or index document is malformed (bad JSON, missing or ill-typed fields)."""


class RegistryResponseError(RegistryError):
    """The registry answered in a way the operation does not allow.

    ``status`` is the HTTP status (``None`` when the body, not the status, was wrong) and
    ``code`` the first OCI error code of the body (e.g. ``MANIFEST_INVALID``) when present.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        registry: str | None = None,
    ) -> None:
        super().__init__(message, registry=registry)
        self.status = status
        self.code = code
