"""Errors of the catalog package.

::

    CatalogError                    base
    ├── InvalidVersionText          the version in the request is not semver       (→ 400)
    ├── VersionNotAvailable         well-formed but not offered                    (→ 404)
    └── CatalogUnavailable          the release registry cannot be read             (→ 503)

``VersionNotAvailable`` keeps upstream's text, ``version <semver> is not available``;
``CatalogUnavailable`` names the registry and the image that could not be read.
"""

from __future__ import annotations

from image_service.errors import InvalidInput, NotFound, ServiceError, Unavailable

__all__ = ["CatalogError", "CatalogUnavailable", "InvalidVersionText", "VersionNotAvailable"]


class CatalogError(ServiceError):
    """Base class of the catalog package's errors."""


class InvalidVersionText(CatalogError, InvalidInput):
    """The requested version is not a semantic version."""


class VersionNotAvailable(CatalogError, NotFound):
    """The version is not among the offered versions."""


class CatalogUnavailable(CatalogError, Unavailable):
    """The release images could not be read from the registry."""
