"""Errors of the flavor package.

::

    FlavorError                 base of everything raised here
    ├── InvalidFlavor           the document cannot be decoded or is not allowed (→ 400)
    └── FlavorNotFound          no flavor is stored under the requested ID (→ 404)

The message of ``InvalidFlavor`` is the text clients see; it keeps upstream's wording (for
example ``EOF`` for an empty body, ``yaml: construct errors: line 1: field something not found in
type schematic.Schematic`` for an unknown field).
"""

from __future__ import annotations

from image_service.errors import InvalidInput, NotFound, ServiceError

__all__ = ["FlavorError", "FlavorNotFound", "InvalidFlavor"]


class FlavorError(ServiceError):
    """Base class of the flavor package's errors."""


class InvalidFlavor(FlavorError, InvalidInput):
    """The flavor document is malformed or uses a feature that is not allowed."""


class FlavorNotFound(FlavorError, NotFound):
    """No flavor is stored under the given ID."""
