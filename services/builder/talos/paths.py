"""The asset path grammar of ``/image/<schematic>/<version>/<path>`` (api.md §7).

:func:`parse_path` turns the last URL segment into an :class:`AssetRequest`, trying upstream's
rules in upstream's order (first match wins)::

    kernel-<arch>                               kernel      (platform metal)
    cmdline-<platform>-<arch>[-secureboot]      cmdline
    initramfs-<arch>.xz                         initramfs   (platform metal; no .xz: rule 8)
    <platform>-<arch>[-secureboot].iso          iso
    <platform>-<arch>[-secureboot]-uki.efi      uki
    installer-<arch>[-secureboot].tar           installer   (platform metal)
    <platform>-installer-<arch>[-secureboot].tar installer
    <platform>-<arch>[-secureboot].<disk format>[<compression>]   image (disk)

Normalisations: the iPXE arch names ``x86_64`` and ``i386`` mean amd64; ``digital-ocean`` is
the one platform with a dash; compression suffixes are tried as ``.tar.gz``, ``.gz``, ``.xz``,
``.zst`` and disk formats as ``.raw``, ``.qcow2``, ``.vhd``, ``.ova``.

Errors are :class:`~services.builder.errors.InvalidPath` with upstream's texts
(``error parsing profile from path: invalid architecture: "foo"``, ``… invalid platform-arch:
"metal"``, ``… invalid profile path: "metal-amd64"``). One deliberate improvement (api.md
§15.4): upstream accepts any platform name and fails late inside the imager with a 500; here a
name missing from the platform table is ``… invalid platform: "<name>"``. It is checked after
the arch, so every path upstream rejects is rejected with upstream's text.

:attr:`AssetRequest.canonical_path` renders the request back (``kernel-x86_64`` becomes
``kernel-amd64``); parsing it gives the same request.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from services.builder.errors import InvalidPath, go_quote
from services.builder.talos.platforms import PLATFORMS, Arch, DiskFormat

__all__ = [
    "Arch",
    "AssetKind",
    "AssetRequest",
    "Compression",
    "DiskFormat",
    "parse_path",
]

_METAL = "metal"
_SECUREBOOT = "-secureboot"
_ARCH_ALIASES = {"amd64": Arch.AMD64, "arm64": Arch.ARM64, "x86_64": Arch.AMD64, "i386": Arch.AMD64}


class AssetKind(StrEnum):
    """What an asset path asks for (the imager's output kinds; ``image`` is a disk image)."""

    KERNEL = "kernel"
    CMDLINE = "cmdline"
    INITRAMFS = "initramfs"
    ISO = "iso"
    UKI = "uki"
    INSTALLER = "installer"
    IMAGE = "image"


class Compression(StrEnum):
    """Compression of a disk image download; the value is the file-name suffix (or ``none``)."""

    NONE = "none"
    TAR_GZ = ".tar.gz"
    GZ = ".gz"
    XZ = ".xz"
    ZST = ".zst"

    @property
    def suffix(self) -> str:
        return "" if self is Compression.NONE else self.value


# Upstream's order; ".tar.gz" must be tried before ".gz".
_COMPRESSIONS = (Compression.TAR_GZ, Compression.GZ, Compression.XZ, Compression.ZST)
_DISK_FORMATS = (DiskFormat.RAW, DiskFormat.QCOW2, DiskFormat.VHD, DiskFormat.OVA)


@dataclass(frozen=True)
class AssetRequest:
    """A parsed asset path. ``disk_format`` is set exactly for disk images."""

    kind: AssetKind
    platform: str
    arch: Arch
    secureboot: bool = False
    disk_format: DiskFormat | None = None
    compression: Compression = Compression.NONE

    @property
    def canonical_path(self) -> str:
        """The path in normalised form (amd64 for its aliases, the short installer form)."""
        target = f"{self.platform}-{self.arch}{_SECUREBOOT if self.secureboot else ''}"
        match self.kind:
            case AssetKind.KERNEL:
                return f"kernel-{self.arch}"
            case AssetKind.INITRAMFS:
                return f"initramfs-{self.arch}.xz"
            case AssetKind.CMDLINE:
                return f"cmdline-{target}"
            case AssetKind.ISO:
                return f"{target}.iso"
            case AssetKind.UKI:
                return f"{target}-uki.efi"
            case AssetKind.INSTALLER:
                prefix = "" if self.platform == _METAL else f"{self.platform}-"
                return f"{prefix}installer-{self.arch}{_SECUREBOOT if self.secureboot else ''}.tar"
            case AssetKind.IMAGE:
                return f"{target}.{self.disk_format}{self.compression.suffix}"


def _cut_prefix(text: str, prefix: str) -> str | None:
    return text[len(prefix) :] if text.startswith(prefix) else None


def _cut_suffix(text: str, suffix: str) -> str | None:
    return text[: -len(suffix)] if text.endswith(suffix) else None


def _parse_arch(text: str) -> Arch:
    arch = _ARCH_ALIASES.get(text)
    if arch is None:
        raise InvalidPath(f"invalid architecture: {go_quote(text)}")
    return arch


def _parse_secureboot_arch(text: str) -> tuple[Arch, bool]:
    rest = _cut_suffix(text, _SECUREBOOT)
    return (_parse_arch(text), False) if rest is None else (_parse_arch(rest), True)


def _parse_platform_arch(text: str) -> tuple[str, Arch, bool]:
    """``<platform>-<arch>[-secureboot]`` (api.md §7.2), then the platform-table check."""
    rest = _cut_suffix(text, _SECUREBOOT)
    secureboot = rest is not None
    if rest is None:
        rest = text
    platform, dash, remainder = rest.partition("-")
    if not dash:
        raise InvalidPath(f"invalid platform-arch: {go_quote(rest)}")
    if platform == "digital" and remainder.startswith("ocean-"):
        platform, remainder = "digital-ocean", remainder[len("ocean-") :]
    arch = _parse_arch(remainder)
    if platform not in PLATFORMS:
        raise InvalidPath(f"invalid platform: {go_quote(platform)}")
    return platform, arch, secureboot


def _platform_asset(kind: AssetKind, text: str) -> AssetRequest:
    platform, arch, secureboot = _parse_platform_arch(text)
    return AssetRequest(kind, platform, arch, secureboot)


def _parse_disk_image(path: str) -> AssetRequest:
    compression = Compression.NONE
    for candidate in _COMPRESSIONS:
        if (rest := _cut_suffix(path, candidate.value)) is not None:
            path, compression = rest, candidate
            break
    for disk_format in _DISK_FORMATS:
        if (rest := _cut_suffix(path, f".{disk_format.value}")) is not None:
            platform, arch, secureboot = _parse_platform_arch(rest)
            return AssetRequest(
                AssetKind.IMAGE, platform, arch, secureboot, disk_format, compression
            )
    raise InvalidPath(f"invalid profile path: {go_quote(path)}")


def parse_path(path: str) -> AssetRequest:
    """Parse an asset path (the last segment of ``/image/...``) into an :class:`AssetRequest`.

    Raises ``InvalidPath`` with upstream's message for paths upstream rejects, and with
    ``invalid platform: "<name>"`` for platforms missing from the platform table.
    """
    if (rest := _cut_prefix(path, "kernel-")) is not None:
        return AssetRequest(AssetKind.KERNEL, _METAL, _parse_arch(rest))
    if (rest := _cut_prefix(path, "cmdline-")) is not None:
        return _platform_asset(AssetKind.CMDLINE, rest)
    if (rest := _cut_prefix(path, "initramfs-")) is not None and (
        arch_text := _cut_suffix(rest, ".xz")
    ) is not None:
        return AssetRequest(AssetKind.INITRAMFS, _METAL, _parse_arch(arch_text))
    if (rest := _cut_suffix(path, ".iso")) is not None:
        return _platform_asset(AssetKind.ISO, rest)
    if (rest := _cut_suffix(path, "-uki.efi")) is not None:
        return _platform_asset(AssetKind.UKI, rest)
    if (rest := _cut_prefix(path, "installer-")) is not None and (
        arch_text := _cut_suffix(rest, ".tar")
    ) is not None:
        arch, secureboot = _parse_secureboot_arch(arch_text)
        return AssetRequest(AssetKind.INSTALLER, _METAL, arch, secureboot)
    if "-installer-" in path and (stem := _cut_suffix(path, ".tar")) is not None:
        # Recombined as <platform>-<arch>[-secureboot] so digital-ocean parses as usual.
        platform, _, arch_text = stem.partition("-installer-")
        return _platform_asset(AssetKind.INSTALLER, f"{platform}-{arch_text}")
    return _parse_disk_image(path)
