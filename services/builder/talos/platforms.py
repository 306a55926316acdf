"""The platform table: every Talos platform the factory builds for, as data.

One :class:`Platform` row per platform joins what the sources scatter over several tables:
the arches, boot methods, Secure Boot offer, minimum Talos version and default download suffix
the UI uses (api.md §8.1), the platform kernel arguments (talos-assets.md §5.3) and the disk
defaults the imager's built-in profile supplies (api.md §7.3, talos-assets.md §11: base size,
disk format and its options).

Kernel arguments are rows tried in order; the first whose arch (``None``: any) and quirk flag
(the name of a boolean :class:`~services.builder.talos.quirks.Quirks` field, ``None``: always) match
wins. That is how the two version-dependent cases stay data: metal amd64 has ``console=ttyS0``
before 1.8, and AWS takes ``nvme_core.io_timeout`` over from the defaults in 1.14.

The arch, boot-method, Secure Boot and minimum-version columns describe what the UI offers;
the builder does not refuse other combinations, because upstream builds them too.
Refresh the table from the Talos machinery package per release.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from image_service.versions import Version
from services.builder.talos.quirks import Quirks

__all__ = [
    "DEFAULT_DISK_MIB",
    "MIN_DISK_MIB",
    "PLATFORMS",
    "Arch",
    "BootMethod",
    "DiskFormat",
    "KernelArgs",
    "Platform",
    "get_platform",
]

# The imager's "min" and "default" raw disk sizes; platforms without a profile get the default.
MIN_DISK_MIB = 1246
DEFAULT_DISK_MIB = 8192
_QCOW2_OPTIONS = "cluster_size=8k"


class Arch(StrEnum):
    AMD64 = "amd64"
    ARM64 = "arm64"


class DiskFormat(StrEnum):
    """Disk image formats; the value is also the file-name suffix (``.vhd`` is qemu's ``vpc``)."""

    RAW = "raw"
    QCOW2 = "qcow2"
    VHD = "vhd"
    OVA = "ova"


class BootMethod(StrEnum):
    DISK_IMAGE = "disk-image"
    ISO = "iso"
    PXE = "pxe"


@dataclass(frozen=True)
class KernelArgs:
    """One candidate set of platform kernel arguments (applied with ``SetAll``)."""

    args: tuple[str, ...]
    arch: Arch | None = None
    when: str | None = None


@dataclass(frozen=True)
class Platform:
    name: str
    arches: tuple[Arch, ...]
    boot_methods: frozenset[BootMethod]
    kernel_args: tuple[KernelArgs, ...]
    default_disk_suffix: str | None = None
    secureboot: bool = False
    min_version: Version | None = None
    disk_size_mib: int = DEFAULT_DISK_MIB
    disk_format: DiskFormat | None = None
    disk_format_options: str = ""

    def kernel_args_for(self, arch: Arch, quirks: Quirks) -> tuple[str, ...]:
        """The platform kernel arguments for an arch and target version (talos-assets §5.3)."""
        for row in self.kernel_args:
            if (row.arch is None or row.arch == arch) and (
                row.when is None or getattr(quirks, row.when)
            ):
                return row.args
        return ()

    def disk_options(self, disk_format: DiskFormat) -> str:
        """``qemu-img -o`` options for converting this platform's raw image to ``disk_format``.

        Upstream gives every qcow2 ``cluster_size=8k`` and then lets the platform profile's
        options replace them whatever the requested format, so ``azure-amd64.qcow2`` got vhd
        options and failed. Here the profile's options apply only to the profile's own format.
        """
        if disk_format == self.disk_format and self.disk_format_options:
            return self.disk_format_options
        return _QCOW2_OPTIONS if disk_format is DiskFormat.QCOW2 else ""

    def offered_for(self, version: Version) -> bool:
        """Whether the UI offers this platform for ``version`` (its minimum Talos version)."""
        return self.min_version is None or version >= self.min_version


_BOTH = (Arch.AMD64, Arch.ARM64)
_AMD64 = (Arch.AMD64,)
_DISK = frozenset({BootMethod.DISK_IMAGE})
_DISK_ISO = frozenset({BootMethod.DISK_IMAGE, BootMethod.ISO})
_ALL_BOOT = frozenset(BootMethod)
_CLOUD = (KernelArgs(("console=tty1", "console=ttyS0", "net.ifnames=0")),)
_CLOUD_NO_DASHBOARD = (
    KernelArgs(("console=tty1", "console=ttyS0", "net.ifnames=0", "talos.dashboard.disabled=1")),
)
_THREE_CONSOLES = (KernelArgs(("console=ttyS0", "console=tty0", "console=tty1", "net.ifnames=0")),)
_IFNAMES_ONLY = (KernelArgs(("net.ifnames=0",)),)


def _v(text: str) -> Version:
    return Version.parse(text)


_ROWS = (
    Platform(
        "metal",
        _BOTH,
        _ALL_BOOT,
        (
            KernelArgs(("console=ttyS0", "console=tty0"), Arch.AMD64, "metal_amd64_console_ttys0"),
            KernelArgs(("console=tty0",), Arch.AMD64),
            KernelArgs(("console=ttyAMA0", "console=tty0"), Arch.ARM64),
        ),
        "raw.zst",
        secureboot=True,
        disk_size_mib=MIN_DISK_MIB,
        disk_format=DiskFormat.RAW,
    ),
    Platform(
        "aws",
        _BOTH,
        _DISK,
        (
            KernelArgs(
                (
                    "console=tty1",
                    "console=ttyS0",
                    "net.ifnames=0",
                    "nvme_core.io_timeout=4294967295",
                ),
                when="nvme_io_timeout_aws_only",
            ),
            *_CLOUD,
        ),
        "raw.xz",
        disk_format=DiskFormat.RAW,
    ),
    Platform(
        "gcp",
        _BOTH,
        _DISK,
        (
            KernelArgs(
                (
                    "console=ttyS0",
                    "net.ifnames=0",
                    "talos.dashboard.disabled=1",
                    "sysctl.kernel.kexec_load_disabled=1",
                )
            ),
        ),
        "raw.tar.gz",
        disk_format=DiskFormat.RAW,
    ),
    Platform(
        "equinixMetal",
        _BOTH,
        frozenset({BootMethod.PXE}),
        (
            KernelArgs(("console=ttyS1,115200n8",), Arch.AMD64),
            KernelArgs(("console=ttyAMA0,115200",), Arch.ARM64),
        ),
    ),
    Platform(
        "azure",
        _BOTH,
        _DISK,
        (
            KernelArgs(
                (
                    "console=ttyS0,115200n8",
                    "earlyprintk=ttyS0,115200",
                    "rootdelay=300",
                    "net.ifnames=0",
                    "talos.dashboard.disabled=1",
                    "sysctl.kernel.kexec_load_disabled=1",
                )
            ),
        ),
        "vhd.xz",
        secureboot=True,
        disk_format=DiskFormat.VHD,
        disk_format_options="subformat=fixed,force_size",
    ),
    Platform("digital-ocean", _AMD64, _DISK, _THREE_CONSOLES, "raw.gz", disk_format=DiskFormat.RAW),
    Platform(
        "nocloud",
        _BOTH,
        _ALL_BOOT,
        _CLOUD,
        "raw.xz",
        secureboot=True,
        disk_size_mib=MIN_DISK_MIB,
        disk_format=DiskFormat.RAW,
    ),
    Platform(
        "openstack",
        _BOTH,
        _ALL_BOOT,
        _CLOUD,
        "raw.xz",
        disk_size_mib=MIN_DISK_MIB,
        disk_format=DiskFormat.RAW,
    ),
    Platform(
        "vmware",
        _BOTH,
        _DISK_ISO,
        (
            KernelArgs(
                (
                    "talos.config=guestinfo",
                    "console=tty0",
                    "console=ttyS0",
                    "earlyprintk=ttyS0,115200",
                    "net.ifnames=0",
                ),
                Arch.AMD64,
            ),
            KernelArgs(
                ("talos.config=guestinfo", "console=tty0", "console=ttyAMA0", "net.ifnames=0"),
                Arch.ARM64,
            ),
        ),
        "ova",
        disk_format=DiskFormat.OVA,
    ),
    Platform(
        "akamai",
        _AMD64,
        _DISK,
        _THREE_CONSOLES,
        "raw.gz",
        min_version=_v("1.7.0"),
        disk_size_mib=MIN_DISK_MIB,
        disk_format=DiskFormat.RAW,
    ),
    Platform(
        "cloudstack",
        _BOTH,
        _DISK,
        _CLOUD,
        "raw.gz",
        secureboot=True,
        min_version=_v("1.8.0-alpha.2"),
        disk_format=DiskFormat.RAW,
    ),
    Platform(
        "hcloud",
        _AMD64,
        _DISK,
        _CLOUD,
        "raw.xz",
        disk_size_mib=MIN_DISK_MIB,
        disk_format=DiskFormat.RAW,
    ),
    Platform(
        "oracle",
        _BOTH,
        _DISK,
        _CLOUD_NO_DASHBOARD,
        "qcow2",
        disk_format=DiskFormat.QCOW2,
        disk_format_options=_QCOW2_OPTIONS,
    ),
    Platform("upcloud", _AMD64, _DISK, _IFNAMES_ONLY, "raw.xz", disk_format=DiskFormat.RAW),
    Platform(
        "vultr",
        _AMD64,
        frozenset({BootMethod.ISO, BootMethod.PXE}),
        _IFNAMES_ONLY,
        disk_format=DiskFormat.RAW,
    ),
    Platform(
        "exoscale",
        _BOTH,
        _DISK,
        _CLOUD,
        "qcow2",
        min_version=_v("1.3.0"),
        disk_size_mib=10240,
        disk_format=DiskFormat.QCOW2,
        disk_format_options=_QCOW2_OPTIONS,
    ),
    Platform(
        "opennebula",
        _BOTH,
        _DISK_ISO,
        _CLOUD,
        "raw.zst",
        min_version=_v("1.7.0"),
        disk_size_mib=MIN_DISK_MIB,
        disk_format=DiskFormat.RAW,
    ),
    Platform(
        "scaleway",
        _BOTH,
        _DISK_ISO,
        _CLOUD_NO_DASHBOARD,
        "raw.zst",
        disk_size_mib=MIN_DISK_MIB,
        disk_format=DiskFormat.RAW,
    ),
    # Talos HEAD (1.14); arches and minimum version are (unverified).
    Platform(
        "alibabacloud",
        _BOTH,
        _DISK,
        _CLOUD,
        "qcow2",
        min_version=_v("1.14.0-alpha.0"),
        disk_size_mib=MIN_DISK_MIB,
        disk_format=DiskFormat.QCOW2,
        disk_format_options=_QCOW2_OPTIONS,
    ),
)


def _check(rows: tuple[Platform, ...]) -> Mapping[str, Platform]:
    flags = {f.name for f in dataclasses.fields(Quirks) if f.type in (bool, "bool")}
    for platform in rows:
        for row in platform.kernel_args:
            if row.when is not None and row.when not in flags:
                raise RuntimeError(f"{platform.name}: {row.when!r} is not a boolean quirk")
    table = {platform.name: platform for platform in rows}
    if len(table) != len(rows):
        raise RuntimeError("platform table has duplicate names")
    return MappingProxyType(table)


PLATFORMS: Mapping[str, Platform] = _check(_ROWS)


def get_platform(name: str) -> Platform | None:
    """The platform called ``name`` (case-sensitive, as Talos spells it), or ``None``."""
    return PLATFORMS.get(name)
