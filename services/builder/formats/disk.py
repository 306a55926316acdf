"""Disk images: layout planning and the rootless build (talos-assets.md §9).

**Plan** (pure, :func:`plan_layout`): the partitions by bootloader and target version (§9.4),
each labelled like upstream, with upstream's type GUID and a unique GUID from the label::

    grub        EFI 100 MiB vfat · BIOS 1 MiB · BOOT 1000/2000 MiB xfs · META 1 MiB
    sd-boot     EFI 1101/2101 MiB vfat · META 1 MiB
    dual-boot   EFI 1101/2101 MiB vfat · BIOS 1 MiB · BOOT 1000/2000 MiB xfs · META 1 MiB
    target < 1.8 adds STATE 100 MiB and EPHEMERAL (the rest), both unformatted

and the disk size (§9.1): the platform profile's base size (1246 MiB "min", 8192 MiB
"default", ...) plus ``BOOT - 1000 MiB``, plus BIOS and BOOT again for dual-boot. The META
values (§9.8) are the flavor's, plus key 0x11 = ``dual-boot`` on amd64 dual-boot images of
targets ≥ 1.10 without Secure Boot.

**Build** (:func:`build_disk_image`), like imager ≥ 1.13 — each partition made as its own
file, without root, loop devices or mounts, then copied into the image at its offset:

1. the raw image is a sparse file (``truncate``); an overlay hook may write blobs into it;
2. EFI: ``mkfs.vfat -F 32 -n EFI --invariant [-S 4096]`` (FAT16 for the one ESP too small for
   FAT32: 100 MiB with 4096-byte sectors), files added with ``mmd``/``mcopy``
   (mtools stamps them with ``SOURCE_DATE_EPOCH``). sd-boot and dual-boot get sd-boot as
   ``EFI/boot/BOOT<X64|AA64>.efi``, the UKI as ``EFI/Linux/Talos-<version>.efi`` and
   ``loader/loader.conf`` (§9.6; Secure Boot ≥ 1.14 adds ``secure-boot-enroll`` and
   ``loader/keys/auto/*.auth``); grub gets GRUB's EFI binary there instead (§9.7);
3. BOOT: ``mkfs.xfs -p <protofile>`` holding ``A/vmlinuz``, ``A/initramfs.xz`` and
   ``grub/grub.cfg``, label BOOT, UUID from the label, ``DETERMINISTIC_SEED=1``;
4. BIOS (amd64 grub and dual-boot): GRUB's core.img and boot.img (:mod:`.grubbios`);
5. META: the ADV (:mod:`.meta_adv`) when there are values;
6. the GPT (:mod:`.gpt`), written last, as upstream does after an overlay installer ran;
7. conversion and compression (:mod:`.convert`).

Partition files are copied by data extent (``SEEK_DATA``/``SEEK_HOLE``) in 1 MiB chunks, and
all-zero chunks are skipped, so the image stays sparse and memory stays bounded.
The XFS feature profile of BOOT is described in :mod:`.grubbios`.
"""

from __future__ import annotations

import errno
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from image_service.versions import Version
from services.builder.errors import BuildFailed, InvalidPath, InvalidProfile, go_quote
from services.builder.formats.convert import write_output
from services.builder.formats.gpt import (
    BIOS_BOOT,
    EFI_SYSTEM,
    LEGACY_BIOS_BOOTABLE,
    LINUX_FILESYSTEM,
    Partition,
    PlacedPartition,
    geometry,
    guid_from_label,
    place,
    write_gpt,
)
from services.builder.formats.grubbios import (
    build_boot_partition,
    embed_bios,
    grub_cfg,
    mkimage_bios_core,
    mkimage_efi,
)
from services.builder.talos.meta_adv import DISK_IMAGE_BOOTLOADER_KEY, encode_adv
from services.builder.talos.paths import Compression, DiskFormat
from services.builder.talos.platforms import Arch, get_platform
from services.builder.talos.quirks import Bootloader, Quirks
from services.builder.talos.secureboot import EnrollmentFiles
from services.builder.tools import check_tools, run

__all__ = [
    "DISK_GUID_LABEL",
    "ENROLL_MODES",
    "DiskInputs",
    "DiskLayout",
    "Filesystem",
    "PartitionSpec",
    "build_disk_image",
    "build_raw_image",
    "copy_into",
    "disk_size_mib",
    "image_meta",
    "loader_conf",
    "plan_layout",
]

log = logging.getLogger(__name__)

DISK_GUID_LABEL = "talos-image-disk"
ENROLL_MODES = ("off", "manual", "if-safe", "force")
_MIB = 1 << 20
_CHUNK = 1 << 20
_ZERO = bytes(_CHUNK)
_EFI_NAMES = {Arch.AMD64: "BOOTX64.efi", Arch.ARM64: "BOOTAA64.efi"}
_VHD_OPTIONS = "subformat=fixed,force_size"
_LOADER_CONF = "# systemd-boot configuration\n\ntimeout 10\n"
_FAT32_MIN_SECTORS = 65525 + 4096  # clusters of one sector, plus FATs and reserved sectors


class Filesystem(StrEnum):
    """What a partition holds in a fresh image."""

    VFAT = "vfat"
    XFS = "xfs"
    BIOS = "bios"  # GRUB's core.img (amd64), else zeros
    META = "meta"  # the ADV, or zeros
    NONE = "none"  # left unformatted (STATE, EPHEMERAL before 1.8)


_TYPES = {Filesystem.VFAT: EFI_SYSTEM, Filesystem.BIOS: BIOS_BOOT}


@dataclass(frozen=True)
class PartitionSpec:
    label: str
    size_mib: int | None  # None: the rest of the disk
    filesystem: Filesystem

    @property
    def type_guid(self) -> uuid.UUID:
        return _TYPES.get(self.filesystem, LINUX_FILESYSTEM)

    def partition(self) -> Partition:
        return Partition(
            self.label,
            None if self.size_mib is None else self.size_mib * _MIB,
            self.type_guid,
            guid_from_label(self.label),
            LEGACY_BIOS_BOOTABLE if self.filesystem is Filesystem.BIOS else 0,
        )


@dataclass(frozen=True)
class DiskLayout:
    bootloader: Bootloader
    disk_size_mib: int
    sector_size: int
    partitions: tuple[PartitionSpec, ...]
    meta: tuple[tuple[int, str], ...]  # what META receives, sorted by key

    @property
    def disk_size(self) -> int:
        return self.disk_size_mib * _MIB


def disk_size_mib(base_mib: int, quirks: Quirks, bootloader: Bootloader) -> int:
    """§9.1: the profile size, plus BOOT - 1000 MiB, plus BIOS + BOOT for dual-boot."""
    size = base_mib + quirks.boot_partition_mib - 1000
    if bootloader is Bootloader.DUAL_BOOT:
        size += Quirks.BIOS_PARTITION_MIB + quirks.boot_partition_mib
    return size


def image_meta(
    quirks: Quirks,
    arch: Arch,
    bootloader: Bootloader,
    *,
    secureboot: bool,
    meta: Sequence[tuple[int, str]] = (),
) -> tuple[tuple[int, str], ...]:
    """The META partition's values, sorted by key; a later value for a key wins (§9.8)."""
    values = dict(meta)
    if (
        arch is Arch.AMD64
        and not secureboot
        and quirks.bootloader_meta_key
        and bootloader is Bootloader.DUAL_BOOT
    ):
        values[DISK_IMAGE_BOOTLOADER_KEY] = Bootloader.DUAL_BOOT.value
    return tuple(sorted(values.items()))


def plan_layout(
    quirks: Quirks,
    arch: Arch,
    bootloader: Bootloader,
    *,
    base_size_mib: int,
    secureboot: bool = False,
    sector_size: int = 512,
    meta: Sequence[tuple[int, str]] = (),
) -> DiskLayout:
    """The partitions, disk size and META values of an image (module docstring).

    Raises ``InvalidProfile`` for dual-boot on arm64 or Secure Boot without sd-boot.
    """
    if bootloader is Bootloader.DUAL_BOOT and arch is Arch.ARM64:
        raise InvalidProfile.bootloader_unsupported(bootloader.value, arch.value)
    if secureboot and bootloader is not Bootloader.SD_BOOT:
        raise InvalidProfile(f"secure boot disk images use sd-boot, not {bootloader.value}")
    if sector_size not in (512, 4096):
        raise InvalidProfile(f"disk sector size {sector_size} is not supported (512 or 4096)")
    boot = quirks.boot_partition_mib
    bios = PartitionSpec("BIOS", Quirks.BIOS_PARTITION_MIB, Filesystem.BIOS)
    boot_part = PartitionSpec("BOOT", boot, Filesystem.XFS)
    meta_part = PartitionSpec("META", 1, Filesystem.META)
    uki_efi = PartitionSpec("EFI", quirks.uki_efi_partition_mib, Filesystem.VFAT)
    parts: tuple[PartitionSpec, ...]
    match bootloader:
        case Bootloader.GRUB:
            grub_efi = PartitionSpec("EFI", Quirks.GRUB_EFI_PARTITION_MIB, Filesystem.VFAT)
            parts = (grub_efi, bios, boot_part, meta_part)
        case Bootloader.SD_BOOT:
            parts = (uki_efi, meta_part)
        case Bootloader.DUAL_BOOT:
            parts = (uki_efi, bios, boot_part, meta_part)
    if quirks.data_partitions_in_image:
        parts += (
            PartitionSpec("STATE", 100, Filesystem.NONE),
            PartitionSpec("EPHEMERAL", None, Filesystem.NONE),
        )
    return DiskLayout(
        bootloader,
        disk_size_mib(base_size_mib, quirks, bootloader),
        sector_size,
        parts,
        image_meta(quirks, arch, bootloader, secureboot=secureboot, meta=meta),
    )


def loader_conf(quirks: Quirks, *, secureboot: bool, enroll_mode: str) -> str:
    """sd-boot's ``loader/loader.conf`` on the ESP (§9.6)."""
    if secureboot and quirks.disk_image_secureboot_enroll:
        return f"{_LOADER_CONF}\nsecure-boot-enroll {enroll_mode}\n"
    return _LOADER_CONF


@dataclass(frozen=True)
class DiskInputs:
    """Everything one disk image is built from; see :func:`build_disk_image`.

    The caller prepares: ``bootloader`` from ``select_bootloader(quirks, arch,
    secureboot=..., requested=<schematic bootloader>)`` (Secure Boot forces sd-boot);
    ``cmdline`` from ``build_cmdline(..., output_is_image=True)``, so META stays off it;
    ``initramfs`` with the flavor's extensions; for sd-boot and dual-boot the ``uki`` built
    with ``uki_profiles(quirks, "image", cmdline)`` and ``systemd_boot`` (both signed under
    Secure Boot); for Secure Boot targets ≥ 1.14 with ``enroll_mode`` other than ``off``,
    ``enrollment`` from ``secureboot.enrollment_files``. ``meta`` is the flavor's META values;
    key 0x11 is added here when upstream adds it.

    ``base_size_mib`` replaces the platform profile's base size (an overlay profile's size,
    or a test's); the boot partitions are still added on top. ``partition_offset_lbas`` is an
    overlay's ``partitionOptions.offset`` (LBAs skipped before the primary entry array);
    ``esp_extra`` a directory merged into the ESP (the overlay's ``boot/EFI``);
    ``overlay_install`` is called with the fresh, empty raw image before anything is written,
    to run an overlay installer that writes raw blobs (u-boot) into it.
    """

    version: Version
    arch: Arch
    platform: str
    quirks: Quirks
    bootloader: Bootloader  # from select_bootloader(quirks, arch, secureboot=..., requested=...)
    kernel: Path
    initramfs: Path  # with extensions
    cmdline: str  # build_cmdline(..., output_is_image=True): no META token
    disk_format: DiskFormat = DiskFormat.RAW
    compression: Compression = Compression.NONE
    sector_size: int = 512  # the flavor's diskImage.sectorSize
    meta: tuple[tuple[int, str], ...] = ()  # the flavor's META values
    uki: Path | None = None  # sd-boot, dual-boot: uki_profiles(quirks, "image", cmdline)
    systemd_boot: Path | None = None  # sd-boot, dual-boot (signed for Secure Boot)
    secureboot: bool = False
    enroll_mode: str = "if-safe"  # sdBootEnrollKeys
    enrollment: EnrollmentFiles | None = None  # Secure Boot ≥ 1.14 with enroll_mode ≠ off
    base_size_mib: int | None = None  # None: the platform profile's; overlays and tests only
    format_options: str | None = None  # None: the platform's qemu-img options
    partition_offset_lbas: int = 0  # an overlay's partitionOptions.offset
    esp_extra: Path | None = None  # a directory merged into the ESP (overlay boot/EFI)
    overlay_install: Callable[[Path], None] | None = field(default=None, compare=False)


def _layout(inputs: DiskInputs) -> DiskLayout:
    platform = get_platform(inputs.platform)
    if platform is None:
        raise InvalidPath(f"invalid platform: {go_quote(inputs.platform)}")
    if inputs.bootloader is not Bootloader.GRUB and (
        inputs.uki is None or inputs.systemd_boot is None
    ):
        raise BuildFailed(f"a {inputs.bootloader} disk image needs the UKI and systemd-boot")
    if inputs.enroll_mode not in ENROLL_MODES:
        raise InvalidProfile(f"unknown Secure Boot enrolment mode {go_quote(inputs.enroll_mode)}")
    return plan_layout(
        inputs.quirks,
        inputs.arch,
        inputs.bootloader,
        base_size_mib=inputs.base_size_mib or platform.disk_size_mib,
        secureboot=inputs.secureboot,
        sector_size=inputs.sector_size,
        meta=inputs.meta,
    )


# --- partition contents -------------------------------------------------------------------------


def copy_into(src: Path, disk_fd: int, offset: int) -> None:
    """Copy the file ``src`` into the open ``disk_fd`` at ``offset``, data extents only and
    skipping all-zero chunks, so holes stay holes; memory use is one 1 MiB buffer."""
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with src.open("rb", buffering=0) as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                pos = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole is left
                    break
                raise
            end = os.lseek(fd, pos, os.SEEK_HOLE)
            while pos < end:
                n = os.preadv(fd, [view[: min(_CHUNK, end - pos)]], pos)
                if n <= 0:
                    raise BuildFailed(f"{src} shrank while it was copied into the disk image")
                if buf[:n] != _ZERO[:n] if n < _CHUNK else buf != _ZERO:
                    os.pwrite(disk_fd, view[:n], offset + pos)
                pos += n


def _sparse_file(path: Path, size: int) -> Path:
    path.unlink(missing_ok=True)
    with path.open("wb") as f:
        f.truncate(size)
    return path


def _esp_files(inputs: DiskInputs, layout: DiskLayout, work: Path) -> list[tuple[str, Path]]:
    """(ESP path, source file) for every file the ESP gets, overlay files first."""
    files: list[tuple[str, Path]] = []
    if inputs.esp_extra is not None:
        for src in sorted(p for p in inputs.esp_extra.rglob("*") if p.is_file()):
            files.append((src.relative_to(inputs.esp_extra).as_posix(), src))
    loader = f"EFI/boot/{_EFI_NAMES[inputs.arch]}"
    if layout.bootloader is Bootloader.GRUB:
        return [*files, (loader, mkimage_efi(inputs.arch.value, work / "grub-efi.img"))]
    assert inputs.uki is not None and inputs.systemd_boot is not None  # checked by _layout
    conf = work / "loader.conf"
    conf.write_text(
        loader_conf(inputs.quirks, secureboot=inputs.secureboot, enroll_mode=inputs.enroll_mode)
    )
    files += [
        (loader, inputs.systemd_boot),
        (f"EFI/Linux/Talos-{inputs.version.tag}.efi", inputs.uki),
        ("loader/loader.conf", conf),
    ]
    if (
        inputs.secureboot
        and inputs.quirks.disk_image_secureboot_enroll
        and inputs.enroll_mode != "off"
    ):
        if inputs.enrollment is None:
            raise BuildFailed("Secure Boot disk images need the PK, KEK and db .auth files")
        for var, path in (
            ("PK", inputs.enrollment.pk),
            ("KEK", inputs.enrollment.kek),
            ("db", inputs.enrollment.db),
        ):
            files.append((f"loader/keys/auto/{var}.auth", path))
    return files


def _build_vfat(part: Path, sector_size: int, files: Sequence[tuple[str, Path]]) -> None:
    # FAT32 needs 65525 clusters: a 100 MiB ESP of 4096-byte sectors has 25600 sectors, and
    # mtools cannot write the undersized FAT32 mkfs.vfat makes of it; that one gets FAT16.
    bits = "32" if part.stat().st_size // sector_size >= _FAT32_MIN_SECTORS else "16"
    argv: list[str | os.PathLike[str]] = ["mkfs.vfat", "-F", bits, "-n", "EFI", "--invariant"]
    if sector_size != 512:
        argv += ["-S", str(sector_size)]
    run([*argv, part])
    dirs = sorted(
        {"/".join(d.split("/")[:i]) for d, _ in files for i in range(1, d.count("/") + 1)}
    )
    if dirs:
        run(["mmd", "-i", part, *(f"::/{d}" for d in dirs)])
    for dest, src in files:
        run(["mcopy", "-D", "o", "-i", part, src, f"::/{dest}"])


def _required_tools(layout: DiskLayout) -> list[str]:
    tools = ["mkfs.vfat", "mmd", "mcopy"]
    if layout.bootloader is not Bootloader.SD_BOOT:
        tools += ["mkfs.xfs", "grub-mkimage"]
    return tools


def _fill(placed: PlacedPartition, inputs: DiskInputs, layout: DiskLayout, raw: Path,
          work: Path) -> None:  # fmt: skip
    spec = next(s for s in layout.partitions if s.label == placed.partition.name)
    part = work / f"part-{spec.label}.img"
    match spec.filesystem:
        case Filesystem.VFAT:
            _build_vfat(_sparse_file(part, placed.size), inputs.sector_size,
                        _esp_files(inputs, layout, work))  # fmt: skip
        case Filesystem.XFS:
            build_boot_partition(
                _sparse_file(part, placed.size),
                kernel=inputs.kernel,
                initramfs=inputs.initramfs,
                cfg=grub_cfg(
                    inputs.version.tag,
                    inputs.cmdline,
                    reset_entry=inputs.quirks.grub_reset_entry,
                ),
                xfs_profile=inputs.quirks.xfs_mkfs_config,
                sector_size=inputs.sector_size,
                work=work,
            )
        case Filesystem.BIOS:
            if inputs.arch is Arch.AMD64:
                core = mkimage_bios_core(work / "core.img")
                embed_bios(raw, core, placed.first_lba, placed.size, placed.sector_size)
            return
        case Filesystem.META:
            if layout.meta:
                fd = os.open(raw, os.O_WRONLY)
                try:
                    os.pwrite(fd, encode_adv(layout.meta), placed.offset)
                finally:
                    os.close(fd)
            return
        case Filesystem.NONE:
            return
    fd = os.open(raw, os.O_WRONLY)
    try:
        copy_into(part, fd, placed.offset)
    finally:
        os.close(fd)
        part.unlink()


def build_raw_image(inputs: DiskInputs, work: Path) -> tuple[Path, DiskLayout]:
    """Build the raw image ``work/disk.raw`` (steps 1-6 of the module docstring)."""
    layout = _layout(inputs)
    check_tools(_required_tools(layout))
    work.mkdir(parents=True, exist_ok=True)
    raw = _sparse_file(work / "disk.raw", layout.disk_size)
    if inputs.overlay_install is not None:
        inputs.overlay_install(raw)
    geo = geometry(layout.disk_size, layout.sector_size, skip_lbas=inputs.partition_offset_lbas)
    placed = place(geo, [spec.partition() for spec in layout.partitions])
    for part in placed:
        _fill(part, inputs, layout, raw, work)
    write_gpt(raw, geo, placed, guid_from_label(DISK_GUID_LABEL))
    log.info("disk image %s: %s, %d MiB, %s", raw, layout.bootloader, layout.disk_size_mib,
             " ".join(f"{p.partition.name}@{p.first_lba}" for p in placed))  # fmt: skip
    return raw, layout


def build_disk_image(inputs: DiskInputs, work: Path, out: Path) -> None:
    """Build the disk image of ``inputs`` and write the download (converted and compressed
    as ``inputs.disk_format`` and ``inputs.compression`` ask) to ``out``.

    ``work`` is a private scratch directory (it needs the disk size in apparent, not
    allocated, space). Raises ``InvalidProfile``/``InvalidPath`` for inputs that cannot make
    an image, ``BuildFailed`` (``ToolError``, ``MissingTools``) when a step fails.
    """
    raw, layout = build_raw_image(inputs, work)
    platform = get_platform(inputs.platform)
    assert platform is not None  # checked by build_raw_image
    options = inputs.format_options
    if options is None:
        options = platform.disk_options(inputs.disk_format)
        if not options and inputs.disk_format is DiskFormat.VHD:
            options = _VHD_OPTIONS
    write_output(
        raw,
        inputs.disk_format,
        inputs.compression,
        out,
        options=options,
        disk_size=layout.disk_size,
        work=work,
    )
