"""Canonical YAML of a flavor and its ID (``schematic.md`` §4, §5).

``canonical_yaml`` turns a :class:`~image_service.flavor.model.Flavor` into the exact bytes
upstream's ``yaml.Marshal`` produces for the same schematic: fields in struct order, empty values
omitted the way Go's ``omitempty`` does (``customization`` is always present, ``overlay.image`` and
``overlay.name`` always present once ``overlay`` is), then laid out by the go-yaml compatible
emitter. ``flavor_id`` is the lowercase hex sha256 of those bytes.

The emitter itself is exposed as :func:`emit_mapping` (ordered ``(key, value)`` pairs in, YAML
text out) so other documents upstream writes with the same library, such as the virtual
extension's ``manifest.yaml``, come out byte-identical too.
"""

from __future__ import annotations

import hashlib

from image_service.flavor._emitter import EmitKey, EmitValue, OutputTooLarge, emit_mapping
from image_service.flavor.errors import InvalidFlavor
from image_service.flavor.model import Bootloader, Customization, Flavor, Overlay

__all__ = ["EmitKey", "EmitValue", "OutputTooLarge", "canonical_yaml", "emit_mapping", "flavor_id"]


def _overlay(overlay: Overlay) -> dict[EmitKey, EmitValue] | None:
    if not (overlay.image or overlay.name or len(overlay.options)):
        return None
    out: dict[EmitKey, EmitValue] = {"image": overlay.image, "name": overlay.name}
    if len(overlay.options):
        out["options"] = overlay.options
    return out


def _customization(custom: Customization) -> dict[EmitKey, EmitValue]:
    out: dict[EmitKey, EmitValue] = {}
    if custom.embedded_machine_configuration:
        out["embeddedMachineConfiguration"] = custom.embedded_machine_configuration
    if custom.extra_kernel_args:
        out["extraKernelArgs"] = list(custom.extra_kernel_args)
    if custom.meta:
        out["meta"] = [{"key": item.key, "value": item.value} for item in custom.meta]
    if custom.system_extensions:
        out["systemExtensions"] = {"officialExtensions": list(custom.system_extensions)}
    if custom.bootloader is not Bootloader.NONE:
        out["bootloader"] = custom.bootloader.value
    secureboot: dict[EmitKey, EmitValue] = {}
    if custom.secureboot.enroll_keys:
        secureboot["enrollKeys"] = custom.secureboot.enroll_keys
    if custom.secureboot.include_well_known_certificates:
        secureboot["includeWellKnownCertificates"] = True
    if secureboot:
        out["secureboot"] = secureboot
    if custom.disk_image.sector_size:
        out["diskImage"] = {"sectorSize": custom.disk_image.sector_size}
    return out


def canonical_yaml(flavor: Flavor, *, max_bytes: int | None = None) -> bytes:
    """The canonical UTF-8 YAML of ``flavor``; equal flavors always give equal bytes.

    Deeply nested ``overlay.options`` multiply indentation, so a small document can have a
    large canonical form. With ``max_bytes`` (the store's limit), a longer result raises
    :class:`~image_service.flavor.errors.InvalidFlavor` before it is built in full.
    """
    items: list[tuple[EmitKey, EmitValue]] = []
    if flavor.owner:
        items.append(("owner", flavor.owner))
    overlay = _overlay(flavor.overlay)
    if overlay is not None:
        items.append(("overlay", overlay))
    items.append(("customization", _customization(flavor.customization)))
    too_large = InvalidFlavor(f"the canonical form of this flavor is larger than {max_bytes} bytes")
    try:
        canonical = emit_mapping(items, max_chars=max_bytes).encode("utf-8")
    except OutputTooLarge as exc:
        raise too_large from exc
    if max_bytes is not None and len(canonical) > max_bytes:
        raise too_large
    return canonical


def flavor_id(canonical: bytes) -> str:
    """The flavor ID: lowercase hex sha256 of the canonical bytes."""
    return hashlib.sha256(canonical).hexdigest()
