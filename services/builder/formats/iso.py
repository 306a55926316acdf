"""Bootable ISO images (talos-assets.md §8): which kind, the ISO tree, and the tool runs.

**Planning.** :func:`plan_iso` picks the :class:`IsoKind` from the ISO bootloader, which it
selects itself with ``select_bootloader(..., iso=True)`` (§6) so callers cannot forget the ISO
rules: Secure Boot → ``sd-boot`` → :attr:`IsoKind.UEFI`; before 1.10 → ``grub`` →
:attr:`IsoKind.GRUB`; 1.10-1.11 → the arch default, ignoring the flavor (``dual-boot`` →
:attr:`IsoKind.HYBRID` on amd64, ``sd-boot`` on arm64); from 1.12 the flavor's bootloader, else
the default. The caller then prepares what the kind needs (:attr:`IsoKind.uses_grub`: kernel,
initramfs with extensions, the ISO cmdline; :attr:`IsoKind.uses_uki`: systemd-boot and a UKI
built with ``uki_profiles(quirks, "iso", cmdline)``, both signed under Secure Boot, plus
:class:`IsoSecureBoot`) and calls :func:`build_iso`.

**Building.** :func:`build_iso` lays out a scratch tree in ``<work>/iso`` and runs one tool:

* GRUB (§8.2): ``boot/vmlinuz``, ``boot/initramfs.xz``, ``boot/grub/grub.cfg``
  (:func:`services.builder.formats.grub.iso_grub_cfg`), then ``grub-mkrescue --compress=xz``. For
  amd64 targets that still boot UEFI through GRUB (< 1.10) grub-mkrescue detects its platforms in
  :data:`GRUB_LIB` (i386-pc for BIOS, x86_64-efi for UEFI, plus any other installed EFI
  platform, as in upstream's imager); otherwise one platform is pinned with ``--directory``:
  arm64-efi on arm64, i386-pc on amd64 (so a ≥ 1.12 amd64 ISO with the ``grub`` bootloader is
  BIOS-only, as upstream's).
* UEFI-only (§8.3): ``EFI/BOOT/BOOT{X64,AA64}.EFI`` (systemd-boot), ``EFI/Linux/Talos-<v>.efi``
  (the UKI), ``loader/loader.conf`` (:func:`loader_conf`), ``loader/random-seed`` (32 zero
  bytes, read-only in the FAT), and under Secure Boot ``EFI/keys/uki-signing-cert.der`` plus
  ``loader/keys/auto/{PK,KEK,db}.auth``. The same files go into ``efiboot.img``, a FAT32
  image made with ``mkfs.vfat --invariant`` and filled with ``mcopy`` (rootless, no loop
  device), which ``xorriso -as mkisofs`` appends as GPT/MBR partition 2 and El Torito EFI image.
* Hybrid (§8.4): both trees; ``grub-mkrescue --directory=<grub>/i386-pc`` for BIOS with the
  sd-boot ``efiboot.img`` appended as partition 2 for UEFI.

Common options (§8.5), as native xorriso commands after ``--``: ``-volume_date all_file_dates
=<epoch>`` and ``-volume_date uuid <UTC YYYYMMDDhhmmss00>``; for targets ≥ 1.8 ``-volid``
(:func:`volume_id`) and ``-volset-id Talos-<version>``. Every scratch file is touched to the
epoch. Reproducibility: with the same inputs and epoch the ISO is byte-identical. Debian's
grub-mkrescue ignores ``GRUB_FAT_SERIAL_NUMBER`` (a Talos patch; it is still set), so the FAT
serial of the EFI image it makes is patched afterwards to the value that patch would write
(the epoch as u32). The GRUB images grub-mkrescue writes do not depend on the clock.

Deviations from upstream: ``efiboot.img`` is at least as large as FAT32 needs for 65525+2048
clusters (upstream's ~100 MiB UKIs never hit the limit; the image's ``-s`` is chosen as in the
newest imager, which is also why ``loader/random-seed`` is always written); an arm64 ISO of
1.10-1.11 is UEFI-only like later ones (upstream's sizes suggest a hybrid path, §8.1, which the
reference marks unverified); an arm64 GRUB ISO (< 1.10) carries only arm64-efi, while
upstream's imager detects every platform it has. Upstream's optional image cache
(``imagecache/``) is not built.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from services.builder.errors import BuildFailed
from services.builder.formats.grub import iso_grub_cfg
from services.builder.talos.quirks import Bootloader, Quirks, select_bootloader
from services.builder.talos.secureboot import EnrollmentFiles
from services.builder.tools import SOURCE_DATE_EPOCH, check_tools, run

__all__ = [
    "GRUB_LIB",
    "EnrollKeys",
    "IsoInputs",
    "IsoKind",
    "IsoSecureBoot",
    "build_iso",
    "efi_boot_name",
    "iso_label",
    "loader_conf",
    "plan_iso",
    "volume_id",
]

log = logging.getLogger(__name__)

GRUB_LIB = Path("/usr/lib/grub")  # grub-mkrescue's compiled-in platform root
_MIB = 1 << 20
_SECTOR = 512
_BLOCK = 2048  # ISO 9660 logical block
_FAT32_MIN_CLUSTERS = 65525 + 2048  # the newest imager's margin over the FAT32 minimum
_EFI_HEADROOM = 10 * _MIB
_EFIBOOT = "efiboot.img"
_GRUB_PLATFORMS = {"amd64": ("i386-pc", "x86_64-efi"), "arm64": ("arm64-efi",)}
_GRUB_PACKAGES = {
    "i386-pc": "grub-pc-bin",
    "x86_64-efi": "grub-efi-amd64-bin",
    "arm64-efi": "grub-efi-arm64-bin",
}
_VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class IsoKind(StrEnum):
    """Which generator builds the ISO (talos-assets §8.1)."""

    GRUB = "grub"  # GRUB for BIOS and (before 1.10, or on arm64) UEFI
    UEFI = "uefi"  # systemd-boot + UKI only: Secure Boot, arm64 ≥ 1.10, explicit sd-boot
    HYBRID = "hybrid"  # amd64: GRUB for BIOS, systemd-boot + UKI for UEFI

    @property
    def uses_grub(self) -> bool:
        """Needs the kernel, the initramfs and the cmdline (GRUB entries)."""
        return self is not IsoKind.UEFI

    @property
    def uses_uki(self) -> bool:
        """Needs systemd-boot and a UKI."""
        return self is not IsoKind.GRUB


class EnrollKeys(StrEnum):
    """``secure-boot-enroll`` in ``loader.conf`` (the flavor's ``enrollKeys``, §13)."""

    OFF = "off"
    MANUAL = "manual"
    IF_SAFE = "if-safe"  # the default: auto-enrol only in virtual machines
    FORCE = "force"


@dataclass(frozen=True)
class IsoSecureBoot:
    """What a Secure Boot ISO carries besides the signed binaries (talos-assets §13)."""

    enrollment: EnrollmentFiles  # PK/KEK/db .auth, from secureboot.enrollment_files()
    signing_cert_der: bytes = field(repr=False)  # SecureBootKeys.signing_cert_der()


@dataclass(frozen=True)
class IsoInputs:
    """Everything :func:`build_iso` puts on the ISO; which fields are needed depends on ``kind``.

    ``version`` is the target's tag (``v1.11.3``): it names the UKI and the volume label.
    ``cmdline`` is the ISO command line (``build_cmdline(..., iso=True)``) for the GRUB
    entries; the UKI carries its own. Under Secure Boot ``systemd_boot`` and ``uki`` must be
    signed (``sign_efi``; ``build_uki(secureboot=...)``).
    """

    version: str
    arch: str  # "amd64" | "arm64"
    quirks: Quirks
    kind: IsoKind
    cmdline: str = ""
    kernel: Path | None = None
    initramfs: Path | None = None  # with extensions
    systemd_boot: Path | None = None
    uki: Path | None = None
    enroll_keys: EnrollKeys = EnrollKeys.IF_SAFE
    secureboot: IsoSecureBoot | None = None


# --- pure parts ---------------------------------------------------------------------------------


def plan_iso(
    quirks: Quirks, arch: str, *, secureboot: bool, requested: str | None = None
) -> IsoKind:
    """The ISO kind for a target (module docstring); ``requested`` is the flavor's bootloader.

    Raises ``InvalidProfile`` for an unknown bootloader or ``dual-boot`` on arm64.
    """
    bootloader = select_bootloader(
        quirks, arch, secureboot=secureboot, requested=requested, iso=True
    )
    return {
        Bootloader.GRUB: IsoKind.GRUB,
        Bootloader.SD_BOOT: IsoKind.UEFI,
        Bootloader.DUAL_BOOT: IsoKind.HYBRID,
    }[bootloader]


def iso_label(version: str) -> str:
    """The volume set ID, ``Talos-<version>`` (never with a Secure Boot marker)."""
    return f"Talos-{version}"


def volume_id(label: str) -> str:
    """Upstream's ``VolumeID``: uppercase, ``-_.`` → ``_``, other characters dropped, ≤ 32."""
    out = []
    for char in label.upper():
        if char in "-_.":
            out.append("_")
        elif ("A" <= char <= "Z") or ("0" <= char <= "9"):
            out.append(char)
    return "".join(out)[:32]


def loader_conf(enroll: EnrollKeys) -> str:
    """The ISO's ``loader/loader.conf``."""
    return f"# systemd-boot configuration\n\ntimeout 10\n\nsecure-boot-enroll {enroll}\n"


def efi_boot_name(arch: str) -> str:
    """The removable-media loader name systemd-boot is installed as."""
    return "BOOTAA64.EFI" if arch == "arm64" else "BOOTX64.EFI"


def _sdboot_for_uefi(quirks: Quirks) -> bool:
    """Whether the target boots UEFI through systemd-boot (≥ 1.10) rather than GRUB."""
    return quirks.default_bootloader("amd64") is not Bootloader.GRUB


def _fat32_clusters(sectors: int, per_cluster: int) -> int:
    """A lower bound of mkfs.fat's FAT32 cluster count (32 reserved sectors, two FATs)."""
    fat = -(-((sectors - 32) // per_cluster + 2) * 4 // _SECTOR)
    return (sectors - 32 - 2 * fat) // per_cluster


def _efiboot_geometry(payload: int) -> tuple[int, int]:
    """``(bytes, sectors per cluster)`` of ``efiboot.img`` for ``payload`` bytes of files."""
    size = _EFI_HEADROOM + payload
    while _fat32_clusters(size // _SECTOR, 1) <= _FAT32_MIN_CLUSTERS:
        size += _MIB
    spc = next(s for s in (8, 4, 2, 1) if _fat32_clusters(size // _SECTOR, s) > _FAT32_MIN_CLUSTERS)
    return size, spc


def _is_signed(path: Path) -> bool:
    """Whether a PE image has an Authenticode certificate table (data directory 4)."""
    with path.open("rb") as f:
        head = f.read(4096)
    try:
        if head[:2] != b"MZ":
            return False
        (lfanew,) = struct.unpack_from("<I", head, 0x3C)
        opt = lfanew + 24
        (magic,) = struct.unpack_from("<H", head, opt)
        count_at, dirs = (opt + 108, opt + 112) if magic == 0x20B else (opt + 92, opt + 96)
        (count,) = struct.unpack_from("<I", head, count_at)
        if count <= 4:
            return False
        _, size = struct.unpack_from("<II", head, dirs + 8 * 4)
    except struct.error:
        return False
    return bool(size > 0)


# --- validation ---------------------------------------------------------------------------------


def _require(value: Path | None, what: str, inputs: IsoInputs) -> Path:
    if value is None:
        raise BuildFailed(f"a {inputs.kind} ISO needs the {what}; the caller did not pass it")
    if not value.is_file():
        raise BuildFailed(f"the {what} {value} for the ISO is missing")
    return value


def _validate(inputs: IsoInputs) -> None:
    if inputs.arch not in _GRUB_PLATFORMS:
        raise BuildFailed(f"ISOs are built for amd64 and arm64, not {inputs.arch!r}")
    if not _VERSION_RE.fullmatch(inputs.version):
        raise BuildFailed(f"{inputs.version!r} cannot name the ISO's UKI and volume")
    if inputs.kind is IsoKind.HYBRID and inputs.arch != "amd64":
        raise BuildFailed("hybrid (dual-boot) ISOs exist for amd64 only")
    if inputs.secureboot is not None and inputs.kind is not IsoKind.UEFI:
        raise BuildFailed(f"Secure Boot ISOs are UEFI-only, not {inputs.kind}")
    if inputs.kind.uses_grub:
        _require(inputs.kernel, "kernel", inputs)
        _require(inputs.initramfs, "initramfs", inputs)
        if not inputs.cmdline.strip():
            raise BuildFailed("a GRUB ISO needs the kernel command line")
    if inputs.kind.uses_uki:
        if not inputs.quirks.supports_uki:
            raise BuildFailed(f"Talos {inputs.version} has no UKI, so no sd-boot ISO")
        binaries = {
            "systemd-boot": _require(inputs.systemd_boot, "systemd-boot binary", inputs),
            "UKI": _require(inputs.uki, "UKI", inputs),
        }
        if inputs.secureboot is not None:
            for what, path in binaries.items():
                if not _is_signed(path):
                    raise BuildFailed(f"the {what} {path} of a Secure Boot ISO is not signed")


def _tools(kind: IsoKind) -> list[str]:
    tools = ["xorriso"]
    if kind.uses_grub:
        tools += ["grub-mkrescue", "mformat", "mcopy"]  # grub-mkrescue makes a FAT image
    if kind.uses_uki:
        tools += ["mkfs.vfat", "mcopy", "mattrib"]
    return tools


# --- the scratch tree ---------------------------------------------------------------------------


def _put(tree: Path, rel: str, content: Path | bytes | str) -> None:
    dest = tree / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, Path):
        shutil.copyfile(content, dest)
    elif isinstance(content, bytes):
        dest.write_bytes(content)
    else:
        dest.write_text(content, encoding="utf-8")


def _touch_tree(root: Path, epoch: int) -> None:
    for path in [*root.rglob("*"), root]:
        os.utime(path, (epoch, epoch), follow_symlinks=False)


def _grub_tree(inputs: IsoInputs, tree: Path) -> None:
    assert inputs.kernel is not None and inputs.initramfs is not None
    _put(tree, "boot/vmlinuz", inputs.kernel)
    _put(tree, "boot/initramfs.xz", inputs.initramfs)
    _put(tree, "boot/grub/grub.cfg", iso_grub_cfg(inputs.cmdline, inputs.quirks))


def _uefi_tree(inputs: IsoInputs, tree: Path, epoch: int, cancel: threading.Event | None) -> Path:
    """Write the sd-boot files into ``tree`` and into ``tree/efiboot.img``; return the image."""
    assert inputs.systemd_boot is not None and inputs.uki is not None
    _put(tree, f"EFI/BOOT/{efi_boot_name(inputs.arch)}", inputs.systemd_boot)
    _put(tree, f"EFI/Linux/Talos-{inputs.version}.efi", inputs.uki)
    _put(tree, "loader/loader.conf", loader_conf(inputs.enroll_keys))
    _put(tree, "loader/random-seed", bytes(32))
    if inputs.secureboot is not None:
        auth = inputs.secureboot.enrollment
        _put(tree, "EFI/keys/uki-signing-cert.der", inputs.secureboot.signing_cert_der)
        for name, path in (("PK", auth.pk), ("KEK", auth.kek), ("db", auth.db)):
            _put(tree, f"loader/keys/auto/{name}.auth", path)
    _touch_tree(tree, epoch)

    payload = sum(-(-p.stat().st_size // _MIB) * _MIB for p in (inputs.systemd_boot, inputs.uki))
    size, per_cluster = _efiboot_geometry(payload)
    image = tree / _EFIBOOT
    with image.open("wb") as f:
        f.truncate(size)
    argvs: list[list[str | os.PathLike[str]]] = [
        ["mkfs.vfat", "-F", "32", "-n", "EFI", "--invariant", "-s", str(per_cluster), image],
        ["mcopy", "-s", "-p", "-Q", "-m", "-i", image, tree / "EFI", tree / "loader", "::"],
        ["mattrib", "-i", image, "+r", "::/loader/random-seed"],
    ]
    for argv in argvs:
        run(argv, cancel=cancel, source_date_epoch=epoch)
    log.debug("efiboot.img: %d MiB, %d sectors per cluster", size // _MIB, per_cluster)
    return image


# --- the generators -----------------------------------------------------------------------------


def _grub_dir(grub_dirs: Mapping[str, Path], platform: str) -> Path:
    directory = grub_dirs.get(platform, GRUB_LIB / platform)
    if not (directory / "moddep.lst").is_file():
        raise BuildFailed(
            f"GRUB's {platform} modules are not in {directory}; install the Debian package "
            f"{_GRUB_PACKAGES[platform]}"
            + (" (an arm64 package: unpack it with dpkg-deb -x and configure its "
               "usr/lib/grub/arm64-efi)" if platform == "arm64-efi" else "")
        )  # fmt: skip
    return directory


def _append_efiboot(image: Path) -> list[str]:
    """xorriso (mkisofs) options: ``image`` as partition 2 and as the El Torito EFI image."""
    return [
        "-e", "--interval:appended_partition_2:all::",
        "-append_partition", "2", "0xef", str(image),
    ]  # fmt: skip


_USB_OPTIONS = [
    "-partition_cyl_align", "all",
    "-partition_offset", "16",  # the partitions are usable when the ISO is written to a disk
    "-iso_mbr_part_type", "0x83",
    "-no-emul-boot",
]  # fmt: skip


def _generator(
    inputs: IsoInputs,
    tree: Path,
    efiboot: Path | None,
    out: Path,
    grub_dirs: Mapping[str, Path],
) -> list[str | os.PathLike[str]]:
    """The tool's argv up to and including ``--`` (after which native xorriso commands go)."""
    mkrescue: list[str | os.PathLike[str]] = [
        "grub-mkrescue", "--compress=xz", f"--output={out}", "--verbose",
    ]  # fmt: skip
    if inputs.kind is IsoKind.GRUB:
        if inputs.arch == "arm64":
            mkrescue.append(f"--directory={_grub_dir(grub_dirs, 'arm64-efi')}")
        elif _sdboot_for_uefi(inputs.quirks):
            mkrescue.append(f"--directory={_grub_dir(grub_dirs, 'i386-pc')}")
        else:  # grub-mkrescue detects the platforms under its own compiled-in root
            for platform in _GRUB_PLATFORMS["amd64"]:
                _grub_dir({}, platform)
        return [*mkrescue, tree, "-iso-level", "3", "--"]
    assert efiboot is not None
    if inputs.kind is IsoKind.HYBRID:
        return [
            *mkrescue, f"--directory={_grub_dir(grub_dirs, 'i386-pc')}",
            "-m", _EFIBOOT, "-iso-level", "3", tree,
            "-eltorito-alt-boot", *_append_efiboot(efiboot), "-appended_part_as_gpt",
            *_USB_OPTIONS, "--",
        ]  # fmt: skip
    return [
        "xorriso", "-as", "mkisofs", *_append_efiboot(efiboot), *_USB_OPTIONS,
        "-m", _EFIBOOT, "-iso-level", "3", "-o", out, tree, "--",
    ]  # fmt: skip


def _common_commands(inputs: IsoInputs, epoch: int) -> list[str]:
    """Native xorriso commands: fixed dates, and the volume label for targets ≥ 1.8."""
    stamp = datetime.fromtimestamp(epoch, UTC).strftime("%Y%m%d%H%M%S") + "00"
    commands = [
        "-volume_date", "all_file_dates", f"={epoch}",
        "-volume_date", "uuid", stamp,
    ]  # fmt: skip
    if inputs.quirks.iso_volume_label:
        label = iso_label(inputs.version)
        commands += ["-volid", volume_id(label), "-volset-id", label]
    return commands


def _grub_efi_image(inputs: IsoInputs) -> bool:
    """Whether grub-mkrescue makes a UEFI image (``/efi.img``) for this GRUB ISO."""
    return inputs.arch == "arm64" or not _sdboot_for_uefi(inputs.quirks)


def _fix_grub_efi_serial(iso: Path, epoch: int, cancel: threading.Event | None) -> None:
    """Give grub-mkrescue's ``/efi.img`` the FAT serial ``GRUB_FAT_SERIAL_NUMBER`` would."""
    found = run(
        ["xorriso", "-indev", iso, "-find", "/efi.img", "-exec", "report_lba", "--"],
        cancel=cancel,
    ).stdout.decode(errors="replace")
    m = re.search(r"File data lba:\s*\d+\s*,\s*(\d+)\s*,", found)
    if m is None:
        raise BuildFailed(f"{iso}: grub-mkrescue wrote no /efi.img")
    offset = int(m.group(1)) * _BLOCK
    with iso.open("r+b") as f:
        f.seek(offset)
        boot = f.read(_SECTOR)
        if len(boot) < _SECTOR or boot[510:512] != b"\x55\xaa":
            raise BuildFailed(f"{iso}: /efi.img does not start with a FAT boot sector")
        (fat16_size,) = struct.unpack_from("<H", boot, 0x16)
        serial_at = 0x43 if fat16_size == 0 else 0x27  # FAT32 / FAT12-16 BS_VolID
        if boot[serial_at - 1] != 0x29:
            raise BuildFailed(f"{iso}: /efi.img has no extended FAT boot signature")
        f.seek(offset + serial_at)
        f.write(struct.pack("<I", epoch & 0xFFFFFFFF))


def build_iso(
    inputs: IsoInputs,
    work: Path,
    out: Path,
    *,
    grub_dirs: Mapping[str, Path] | None = None,
    cancel: threading.Event | None = None,
    source_date_epoch: int = SOURCE_DATE_EPOCH,
) -> None:
    """Build the ISO described by ``inputs`` at ``out`` (module docstring).

    ``work`` is a private scratch directory (``<work>/iso`` is replaced); ``grub_dirs`` maps a
    GRUB platform (``i386-pc``, ``arm64-efi``) to its module directory when it is not under
    :data:`GRUB_LIB` (Debian packages arm64-efi for arm64 hosts only). Raises
    ``BuildFailed`` (``ToolError`` for a failing tool); ``out`` is removed on failure.
    """
    _validate(inputs)
    check_tools(_tools(inputs.kind))
    epoch = source_date_epoch
    tree = work / "iso"
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    if inputs.kind.uses_grub:
        _grub_tree(inputs, tree)
    efiboot = _uefi_tree(inputs, tree, epoch, cancel) if inputs.kind.uses_uki else None
    _touch_tree(tree, epoch)

    argv = [
        *_generator(inputs, tree, efiboot, out, grub_dirs or {}),
        *_common_commands(inputs, epoch),
    ]
    env = {"GRUB_FAT_SERIAL_NUMBER": f"{epoch & 0xFFFFFFFF:x}"}
    out.unlink(missing_ok=True)
    log.debug("building a %s ISO of Talos %s (%s) at %s", inputs.kind, inputs.version,
              inputs.arch, out)  # fmt: skip
    try:
        run(argv, env=env, cancel=cancel, source_date_epoch=epoch)
        if inputs.kind is IsoKind.GRUB and _grub_efi_image(inputs):
            _fix_grub_efi_serial(out, epoch, cancel)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
