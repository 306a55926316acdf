"""Errors of the flavor service (the document model's own errors live in
:mod:`image_service.flavor.errors`).

::

    FlavorError                 base of every flavor error (image_service.flavor.errors)
    ├── InvalidFlavor           the document cannot be decoded or is not allowed (→ 400)
    └── FlavorNotFound          no flavor is stored under the requested ID (→ 404)
"""

from __future__ import annotations

from image_service.errors import NotFound
from image_service.flavor.errors import FlavorError

__all__ = ["FlavorNotFound"]


class FlavorNotFound(FlavorError, NotFound):
    """No flavor is stored under the given ID."""
