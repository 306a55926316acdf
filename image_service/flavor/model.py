"""The flavor (upstream: schematic) document as immutable values.

A :class:`Flavor` is what :func:`image_service.flavor.decode.decode_flavor` returns and what
:func:`image_service.flavor.canonical.canonical_yaml` serialises; its ID is the sha256 of those
canonical bytes. The classes mirror upstream's Go structs field for field (``schematic.md``
§2.1), with Python names; empty values mean "not set", exactly like Go's zero values, so
``Flavor()`` is the empty flavor.

``overlay.options`` is the one free-form part. Its values are

* scalars: ``str``, ``int`` (within int64/uint64), ``float``, ``bool``, ``None`` and
  :class:`Timestamp` (an unquoted YAML timestamp, kept as its RFC 3339 text);
* sequences: ``tuple`` of values;
* mappings: :class:`OptionMap`, whose entries are kept in go-yaml's key order.

Python considers ``1 == 1.0 == True``; YAML and the canonical bytes do not, so :class:`OptionMap`
compares and hashes by a type-strict form, and keys that differ only in type stay distinct.
Floats are compared by their bit pattern (``-0.0`` differs from ``0.0``; NaN equals NaN).

Everything here is pure: no I/O, no YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeAlias

from image_service.flavor._keysort import sorted_keys

__all__ = [
    "Bootloader",
    "Customization",
    "DiskImage",
    "Flavor",
    "MetaValue",
    "OptionKey",
    "OptionMap",
    "OptionValue",
    "Overlay",
    "SecureBoot",
    "Timestamp",
    "option_identity",
]

_MAX_UINT64 = (1 << 64) - 1
_MIN_INT64 = -(1 << 63)


class Bootloader(StrEnum):
    """``customization.bootloader``; ``NONE`` (the zero value) means "imager default"."""

    NONE = "none"
    DUAL_BOOT = "dual-boot"
    SD_BOOT = "sd-boot"
    GRUB = "grub"


@dataclass(frozen=True)
class Timestamp:
    """An unquoted YAML timestamp inside ``overlay.options``.

    ``text`` is Go's ``time.RFC3339Nano`` rendering (``2024-01-02T00:00:00Z``), which is what
    upstream writes back; the decoder produces it, the emitter writes it verbatim.
    """

    text: str


OptionKey: TypeAlias = str | int | float | bool | Timestamp | None


def option_identity(value: object) -> tuple[object, ...]:
    """A form of an option value whose ``==`` and hash respect YAML types (``1`` is not ``1.0``)."""
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, Timestamp):
        return ("timestamp", value.text)
    if isinstance(value, tuple):
        return ("seq", tuple(option_identity(item) for item in value))
    if isinstance(value, OptionMap):
        return ("map", tuple((option_identity(k), option_identity(v)) for k, v in value.entries))
    raise TypeError(f"unsupported overlay option value of type {type(value).__name__}")


def _check_value(value: object, *, key: bool = False) -> None:
    """Refuse what YAML options cannot hold; nested maps were checked when they were built."""
    if isinstance(value, tuple) and not key:
        for item in value:
            _check_value(item)
    elif isinstance(value, int) and not isinstance(value, bool):
        if not _MIN_INT64 <= value <= _MAX_UINT64:
            raise ValueError(f"overlay option integer {value} is outside the int64/uint64 range")
    elif not (
        value is None
        or isinstance(value, str | float | bool | Timestamp)
        or (isinstance(value, OptionMap) and not key)
    ):
        kind = "key" if key else "value"
        raise TypeError(f"unsupported overlay option {kind} of type {type(value).__name__}")


@dataclass(frozen=True, eq=False)
class OptionMap:
    """A mapping inside ``overlay.options``; entries are sorted into go-yaml's key order."""

    entries: tuple[tuple[OptionKey, OptionValue], ...] = ()

    def __post_init__(self) -> None:
        seen: dict[tuple[object, ...], OptionKey] = {}
        values: dict[tuple[object, ...], OptionValue] = {}
        for key, value in self.entries:
            _check_value(key, key=True)
            _check_value(value)
            strict = option_identity(key)
            if strict in seen:
                raise ValueError(f"duplicate overlay option key {key!r}")
            seen[strict] = key
            values[strict] = value
        ordered = sorted_keys(seen.values())
        object.__setattr__(self, "entries", tuple((k, values[option_identity(k)]) for k in ordered))

    @classmethod
    def of(cls, mapping: dict[str, OptionValue]) -> OptionMap:
        """Convenience constructor from a ``dict`` with string keys."""
        return cls(tuple(mapping.items()))

    def __len__(self) -> int:
        return len(self.entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OptionMap):
            return NotImplemented
        return option_identity(self) == option_identity(other)

    def __hash__(self) -> int:
        return hash(option_identity(self))


OptionValue: TypeAlias = (
    str | int | float | bool | Timestamp | tuple["OptionValue", ...] | OptionMap | None
)


@dataclass(frozen=True)
class Overlay:
    """``overlay``: a board overlay, looked up by ``name``; ``image`` is informational."""

    image: str = ""
    name: str = ""
    options: OptionMap = field(default_factory=OptionMap)

    def __post_init__(self) -> None:
        # Upstream's field is map[string]any: top-level option keys are always strings.
        for key, _ in self.options.entries:
            if not isinstance(key, str):
                raise TypeError(f"overlay.options keys must be strings, got {key!r}")


@dataclass(frozen=True)
class MetaValue:
    """One ``customization.meta`` item: a Talos META key (0-255) and its string value."""

    key: int
    value: str

    def __post_init__(self) -> None:
        if isinstance(self.key, bool) or not 0 <= self.key <= 255:
            raise ValueError(f"META key must be an integer in 0..255, got {self.key!r}")


@dataclass(frozen=True)
class SecureBoot:
    """``customization.secureboot``."""

    enroll_keys: str = ""
    include_well_known_certificates: bool = False


@dataclass(frozen=True)
class DiskImage:
    """``customization.diskImage``; ``sector_size`` 0 means "imager default" (512)."""

    sector_size: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.sector_size, bool) or not 0 <= self.sector_size <= _MAX_UINT64:
            raise ValueError(f"sector size must be an unsigned integer, got {self.sector_size!r}")


@dataclass(frozen=True)
class Customization:
    """``customization``: everything that changes the built assets."""

    embedded_machine_configuration: str = ""
    extra_kernel_args: tuple[str, ...] = ()
    meta: tuple[MetaValue, ...] = ()
    system_extensions: tuple[str, ...] = ()
    """``systemExtensions.officialExtensions``, in the order given (order changes the ID)."""
    bootloader: Bootloader = Bootloader.NONE
    secureboot: SecureBoot = field(default_factory=SecureBoot)
    disk_image: DiskImage = field(default_factory=DiskImage)


@dataclass(frozen=True)
class Flavor:
    """A whole flavor document. ``owner`` is Enterprise-only (rejected by the community decoder)."""

    owner: str = ""
    overlay: Overlay = field(default_factory=Overlay)
    customization: Customization = field(default_factory=Customization)
