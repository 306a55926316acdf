"""Errors of the builder package, and the quoting that keeps their texts equal to upstream's.

::

    BuildError                          base; anything not below is a bug-class 500
    ├── InvalidPath                     the asset path does not follow the grammar     (→ 400)
    ├── InvalidProfile                  the schematic cannot be applied to the asset   (→ 400)
    ├── InvalidExtension (extract)      an extension image is malformed or hostile     (→ 400)
    ├── KindNotBuilt                    valid asset kind this service does not build   (→ 501)
    ├── BuildOverloaded                 too many builds queued; retry later            (→ 503)
    └── BuildFailed                     a build step failed; details are in the log    (→ 500)
        ├── ToolError (tools)           an external tool failed: tool, exit code, stderr tail
        ├── MissingTools (tools)        required tools are not installed (names the packages)
        ├── PeError (pe)                a PE/COFF input (stub, kernel) is unusable
        └── SecureBootKeyError          a configured key or certificate cannot be used

``InvalidPath`` and ``InvalidProfile`` also derive from ``InvalidInput``, ``KindNotBuilt`` from
``Unsupported`` and ``BuildOverloaded`` from ``Overloaded`` (``image_service.errors``), so each
transport's one error table maps them without knowing this package.

The two invalid-input classes carry upstream's full wrapped text, because clients and upstream's
tests grep for it: ``error parsing profile from path: invalid architecture: "foo"`` and
``error enhancing profile from schematic: secure boot is disabled``. Build them from the *detail*
(the part after the prefix); the prefix is added here. Inputs are quoted with :func:`go_quote`,
which reproduces Go's ``%q``. The constructors on ``InvalidProfile`` hold the known enhancement
texts in one place.
"""

from __future__ import annotations

from typing import ClassVar

from image_service.errors import InvalidInput, Overloaded, ServiceError, Unsupported, go_quote
from image_service.versions import Version

__all__ = [
    "BuildError",
    "BuildFailed",
    "BuildOverloaded",
    "InvalidPath",
    "InvalidProfile",
    "KindNotBuilt",
    "go_quote",
]


class BuildError(ServiceError):
    """Base class of the builder package's errors."""


class _Prefixed(BuildError):
    """An error whose client-visible text is a fixed prefix plus a detail."""

    prefix: ClassVar[str] = ""

    def __init__(self, detail: str) -> None:
        super().__init__(self.prefix + detail)
        self.detail = detail


class InvalidPath(_Prefixed, InvalidInput):
    """The requested asset path does not follow the path grammar (api.md §7)."""

    prefix = "error parsing profile from path: "


class InvalidProfile(_Prefixed, InvalidInput):
    """The schematic cannot be applied to the requested asset (api.md §6.5)."""

    prefix = "error enhancing profile from schematic: "

    @classmethod
    def secureboot_disabled(cls) -> InvalidProfile:
        return cls("secure boot is disabled")

    @classmethod
    def overlay_unsupported(cls, version: Version) -> InvalidProfile:
        return cls(f"overlay is not supported for Talos version {version.tag}")

    @classmethod
    def embedded_config_unsupported(cls, version: Version) -> InvalidProfile:
        return cls(f"embedding configuration is not supported for Talos version {version.tag}")

    @classmethod
    def extension_unavailable(cls, name: str, version: Version) -> InvalidProfile:
        return cls(
            f"official extension {go_quote(name)} is not available for Talos version {version.tag}"
        )

    @classmethod
    def overlay_unavailable(cls, name: str, version: Version) -> InvalidProfile:
        # Upstream prints the empty lookup result here (api.md §15.13); we name the overlay.
        return cls(
            f"official overlay {go_quote(name)} is not available for Talos version {version.tag}"
        )

    @classmethod
    def bootloader_unsupported(cls, bootloader: str, arch: str) -> InvalidProfile:
        return cls(f"bootloader {go_quote(bootloader)} is not supported on {arch}")


class KindNotBuilt(BuildError, Unsupported):
    """The asset kind is valid, but this service does not build it (yet)."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"building {kind} assets is not supported by this image service yet")
        self.kind = kind


class BuildOverloaded(BuildError, Overloaded):
    """The build queue is full; the client should retry later."""

    def __init__(self) -> None:
        super().__init__("too many builds are queued; retry later")


class BuildFailed(BuildError):
    """A build step failed. The message is for logs; clients get a generic 500."""
