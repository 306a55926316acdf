"""Every behaviour of the builder that depends on the target Talos version, as one table.

Like Talos' ``pkg/machinery/imager/quirks``, only the target's major.minor.patch counts
(``v1.10.0-alpha.1`` behaves as 1.10.0), and a version that cannot be parsed counts as the
newest: ``quirks_for(None)`` — pass ``Version.parse_tolerant(text)`` for text — evaluates every
row as if the version were infinitely new.

``_ROWS`` is the table: ``(field, since, value)`` means "from core version ``since`` on, the
field has ``value``". Each field has a row at ``ALWAYS`` (its value for the oldest targets) and
one row per change. ``quirks_for`` picks, per field, the row with the newest ``since`` not
after the target and builds a frozen :class:`Quirks`. Code asks ``quirks.initramfs_compression``
and never compares versions itself. Sources are talos-assets.md §15 (consolidated table) and
the sections it points to; ``select_bootloader`` is talos-assets.md §6.

Upstream's ``UseSDBootForUEFI`` answers *false* for an unparsable version (the other gates
answer "latest"); we treat unparsable versions uniformly as the newest. Behaviour that depends
on the imager's code rather than the target (rootless disk builds, ``loader/random-seed`` on
ISOs, the OVA tool) is not a quirk here: image-service always behaves like the newest imager.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any, cast

from image_service.versions import Version
from services.builder.errors import InvalidProfile

__all__ = [
    "ALWAYS",
    "Bootloader",
    "Compressor",
    "Quirks",
    "quirks_for",
    "select_bootloader",
]

Core = tuple[int, int, int]
ALWAYS: Core = (0, 0, 0)
_LATEST: Core = (2**31, 0, 0)


class Bootloader(StrEnum):
    """Boot loaders a disk image or ISO can carry (profile values; ``none`` means "default")."""

    GRUB = "grub"
    SD_BOOT = "sd-boot"
    DUAL_BOOT = "dual-boot"


class Compressor(StrEnum):
    """Compression of initramfs sections and extension squashfs images."""

    XZ = "xz"
    ZSTD = "zstd"


@dataclass(frozen=True)
class Quirks:
    """Target-version-dependent behaviour; build it with :func:`quirks_for`."""

    # -- initramfs and extensions (talos-assets §4) --
    initramfs_compression: Compressor
    initramfs_compressor_argv: tuple[str, ...]
    squashfs_compression_args: tuple[str, ...]
    squashfs_selinux_labels: bool
    firmware_path: str
    kernel_modules_path: str
    # -- kernel command line (§5.3, §5.4, §13) --
    metal_amd64_console_ttys0: bool
    iso_halt_if_installed: bool
    init_on_alloc: bool
    nvme_io_timeout_aws_only: bool
    ima_args: bool
    selinux: bool
    module_sig_enforce: bool
    proc_mem_force_override: bool
    secureboot_lockdown: bool
    compress_meta: bool
    # -- schematic features (api.md §6.5, §12) --
    supports_overlays: bool
    schematic_extra_info: bool
    embedded_config: bool
    # -- UKI, Secure Boot, installers (§7, §12) --
    supports_uki: bool
    supports_secureboot: bool
    uki_profiles: bool
    unified_installer: bool
    installer_base_repository: str
    bakes_extra_kernel_args: bool
    # -- bootloaders and ISOs (§6, §8) --
    default_bootloader_amd64: Bootloader
    default_bootloader_arm64: Bootloader
    iso_honours_bootloader: bool
    iso_always_hybrid: bool
    iso_volume_label: bool
    grub_reset_entry: bool
    # -- disk images (§9) --
    boot_partition_mib: int
    data_partitions_in_image: bool
    bootloader_meta_key: bool
    xfs_mkfs_config: str
    xfs_concurrency: bool
    disk_image_secureboot_enroll: bool

    GRUB_EFI_PARTITION_MIB = 100
    BIOS_PARTITION_MIB = 1

    @property
    def uki_efi_partition_mib(self) -> int:
        """EFI size in the UKI layouts (sd-boot, dual-boot): the old EFI + BIOS + BOOT sizes."""
        return self.GRUB_EFI_PARTITION_MIB + self.BIOS_PARTITION_MIB + self.boot_partition_mib

    def default_bootloader(self, arch: str) -> Bootloader:
        """The bootloader used when neither Secure Boot nor the schematic chooses one."""
        return self.default_bootloader_arm64 if arch == "arm64" else self.default_bootloader_amd64


_XZ_CPIO = ("xz", "-v", "-C", "crc32", "-0", "-e", "-T", "0", "-z", "--quiet")
_ZSTD_CPIO = ("zstd", "-T0", "-18", "-c", "--quiet")

# (field, since, value): from core version `since` on, `field` has `value`.
_ROWS: tuple[tuple[str, Core, object], ...] = (
    ("initramfs_compression", ALWAYS, Compressor.XZ),
    ("initramfs_compression", (1, 8, 0), Compressor.ZSTD),
    ("initramfs_compressor_argv", ALWAYS, _XZ_CPIO),
    ("initramfs_compressor_argv", (1, 8, 0), _ZSTD_CPIO),
    ("squashfs_compression_args", ALWAYS, ("-comp", "xz", "-Xdict-size", "100%")),
    ("squashfs_compression_args", (1, 8, 0), ("-comp", "zstd", "-Xcompression-level", "18")),
    ("squashfs_selinux_labels", ALWAYS, False),
    ("squashfs_selinux_labels", (1, 13, 0), True),
    ("firmware_path", ALWAYS, "/lib/firmware"),
    ("firmware_path", (1, 10, 0), "/usr/lib/firmware"),
    ("kernel_modules_path", ALWAYS, "/lib/modules"),
    ("kernel_modules_path", (1, 10, 0), "/usr/lib/modules"),
    ("metal_amd64_console_ttys0", ALWAYS, True),
    ("metal_amd64_console_ttys0", (1, 8, 0), False),
    ("iso_halt_if_installed", ALWAYS, False),
    ("iso_halt_if_installed", (1, 8, 0), True),
    ("init_on_alloc", ALWAYS, True),
    ("init_on_alloc", (1, 14, 0), False),
    ("nvme_io_timeout_aws_only", ALWAYS, False),
    ("nvme_io_timeout_aws_only", (1, 14, 0), True),
    # Upstream: "<= 1.10.99"; every real 1.10 patch release is below 1.11.0.
    ("ima_args", ALWAYS, True),
    ("ima_args", (1, 11, 0), False),
    ("selinux", ALWAYS, False),
    ("selinux", (1, 10, 0), True),
    ("module_sig_enforce", ALWAYS, False),
    ("module_sig_enforce", (1, 12, 0), True),
    ("proc_mem_force_override", ALWAYS, False),
    ("proc_mem_force_override", (1, 13, 0), True),
    ("secureboot_lockdown", ALWAYS, True),
    ("secureboot_lockdown", (1, 14, 0), False),
    ("compress_meta", ALWAYS, False),
    ("compress_meta", (1, 6, 3), True),
    ("supports_overlays", ALWAYS, False),
    ("supports_overlays", (1, 7, 0), True),
    ("schematic_extra_info", ALWAYS, False),
    ("schematic_extra_info", (1, 7, 0), True),
    ("embedded_config", ALWAYS, False),
    ("embedded_config", (1, 12, 0), True),
    ("supports_uki", ALWAYS, False),
    ("supports_uki", (1, 5, 0), True),
    ("supports_secureboot", ALWAYS, False),
    ("supports_secureboot", (1, 5, 0), True),
    ("uki_profiles", ALWAYS, False),
    ("uki_profiles", (1, 10, 0), True),
    ("unified_installer", ALWAYS, False),
    ("unified_installer", (1, 10, 0), True),
    ("installer_base_repository", ALWAYS, "installer"),
    ("installer_base_repository", (1, 10, 0), "installer-base"),
    # Secure Boot installers and UKIs carry the extra kernel args on every version.
    ("bakes_extra_kernel_args", ALWAYS, False),
    ("bakes_extra_kernel_args", (1, 10, 0), True),
    ("default_bootloader_amd64", ALWAYS, Bootloader.GRUB),
    ("default_bootloader_amd64", (1, 10, 0), Bootloader.DUAL_BOOT),
    ("default_bootloader_arm64", ALWAYS, Bootloader.GRUB),
    ("default_bootloader_arm64", (1, 10, 0), Bootloader.SD_BOOT),
    ("iso_honours_bootloader", ALWAYS, False),
    ("iso_honours_bootloader", (1, 12, 0), True),
    ("iso_always_hybrid", ALWAYS, False),
    ("iso_always_hybrid", (1, 10, 0), True),
    ("iso_always_hybrid", (1, 12, 0), False),
    ("iso_volume_label", ALWAYS, False),
    ("iso_volume_label", (1, 8, 0), True),
    ("grub_reset_entry", ALWAYS, False),
    ("grub_reset_entry", (1, 4, 0), True),
    ("boot_partition_mib", ALWAYS, 1000),
    ("boot_partition_mib", (1, 11, 0), 2000),
    ("data_partitions_in_image", ALWAYS, True),
    ("data_partitions_in_image", (1, 8, 0), False),
    ("bootloader_meta_key", ALWAYS, False),
    ("bootloader_meta_key", (1, 10, 0), True),
    ("xfs_mkfs_config", ALWAYS, "lts_6.1.conf"),
    ("xfs_mkfs_config", (1, 8, 0), "lts_6.6.conf"),
    ("xfs_mkfs_config", (1, 10, 0), "lts_6.12.conf"),
    ("xfs_mkfs_config", (1, 13, 0), "lts_6.18.conf"),
    ("xfs_concurrency", ALWAYS, False),
    ("xfs_concurrency", (1, 14, 0), True),
    ("disk_image_secureboot_enroll", ALWAYS, False),
    ("disk_image_secureboot_enroll", (1, 14, 0), True),
)


def _index(
    rows: tuple[tuple[str, Core, object], ...],
) -> Mapping[str, tuple[tuple[Core, object], ...]]:
    """Group the rows by field, newest first, and check the table against :class:`Quirks`."""
    fields = {f.name for f in dataclasses.fields(Quirks)}
    grouped: dict[str, list[tuple[Core, object]]] = {}
    for name, since, value in rows:
        if name not in fields:
            raise RuntimeError(f"quirks table names unknown field {name!r}")
        grouped.setdefault(name, []).append((since, value))
    for name in fields:
        steps = grouped.get(name, [])
        sinces = [since for since, _ in steps]
        if ALWAYS not in sinces or len(set(sinces)) != len(sinces):
            raise RuntimeError(f"quirks field {name!r} needs one ALWAYS row and distinct versions")
    return {
        name: tuple(sorted(steps, key=lambda s: s[0], reverse=True))
        for name, steps in grouped.items()
    }


_TABLE = _index(_ROWS)


@cache
def _quirks_for_core(core: Core) -> Quirks:
    values = {
        name: next(v for since, v in steps if since <= core) for name, steps in _TABLE.items()
    }
    return Quirks(**cast("dict[str, Any]", values))


def quirks_for(version: Version | None) -> Quirks:
    """The quirks of a target version; ``None`` (an unparsable version) means the newest."""
    return _quirks_for_core(_LATEST if version is None else version.core)


def select_bootloader(
    quirks: Quirks,
    arch: str,
    *,
    secureboot: bool,
    requested: str | None = None,
    iso: bool = False,
) -> Bootloader:
    """The bootloader of a disk image or ISO (talos-assets §6), top-down.

    Secure Boot always uses sd-boot. Otherwise an explicit choice wins (``None``, ``""`` and
    ``"none"`` mean no choice; ISOs ignore it before 1.12); ``dual-boot`` is rejected on arm64.
    Otherwise the version's default for the arch applies.

    Raises ``InvalidProfile`` for an unknown bootloader name or dual-boot on arm64.
    """
    if secureboot:
        return Bootloader.SD_BOOT
    if requested and requested != "none" and (quirks.iso_honours_bootloader or not iso):
        try:
            chosen = Bootloader(requested)
        except ValueError:
            raise InvalidProfile.bootloader_unsupported(requested, arch) from None
        if chosen is Bootloader.DUAL_BOOT and arch == "arm64":
            raise InvalidProfile.bootloader_unsupported(requested, arch)
        return chosen
    return quirks.default_bootloader(arch)
