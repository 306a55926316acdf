"""Errors of the flavor document model.

::

    FlavorError                 base of every flavor error (the flavor service adds FlavorNotFound)
    └── InvalidFlavor           the document cannot be decoded or is not allowed (→ 400)

The message of ``InvalidFlavor`` is the text clients see; it keeps upstream's wording (for
example ``EOF`` for an empty body, ``yaml: construct errors: line 1: field something not found in
type schematic.Schematic`` for an unknown field).
"""

from __future__ import annotations

from image_service.errors import InvalidInput, ServiceError

__all__ = ["FlavorError", "InvalidFlavor"]


class FlavorError(ServiceError):
    """Base class of the flavor errors, of the model and of the flavor service."""


class InvalidFlavor(FlavorError, InvalidInput):
    """The flavor document is malformed or uses a feature that is not allowed."""
