"""GRUB for disk images, without grub-install or root (talos-assets.md §9.7).

The ``grub`` and ``dual-boot`` layouts boot GRUB from the host's GRUB packages:

* :func:`grub_cfg` renders ``grub/grub.cfg`` of the BOOT partition: entry ``A - Talos <version>``
  loading ``/A/vmlinuz`` and ``/A/initramfs.xz``, plus the reset entry when the target has one
  (§5.8). Entries are indented with two spaces; :func:`grub_quote` backslash-escapes the
  cmdline like upstream (§8.2).
* :func:`mkimage_bios_core` and :func:`mkimage_efi` run ``grub-mkimage`` with every module
  embedded and the prefix ``(hd0,gpt3)/grub`` — BOOT is the third partition in both layouts.
* :func:`build_boot_partition` makes the BOOT partition file: XFS (label BOOT, UUID from the
  label) filled by ``mkfs.xfs -p <protofile>`` — no mount — with ``A/vmlinuz``,
  ``A/initramfs.xz`` and ``grub/grub.cfg``, owned by root, ``DETERMINISTIC_SEED=1`` (§9.5).
* :func:`embed_bios` installs the BIOS core like upstream's ``PatchBlocklistsForDiskImage``:
  with *L* the BIOS partition's first LBA, ``boot.img`` gets *L* as its kernel sector (0x5C),
  0xFF as boot drive ("the drive the BIOS booted", 0x64) and NOPs over the drive check (0x66);
  ``core.img``'s first blocklist entry (0x1F4, which grub-mkimage fills with the sector count)
  gets *L* + 1. ``core.img`` goes to the start of the BIOS partition and ``boot.img[0:446]``
  to the start of the disk, keeping the protective MBR's partition record.

**XFS profile.** Upstream passes ``-c options=/usr/share/xfsprogs/mkfs/lts_<kernel>.conf``
by target (§9.5). Debian's xfsprogs lacks the newer files (and its own ``lts_6.1.conf`` is
rejected by its mkfs.xfs), so the profiles' feature settings are kept here as data and written
to a config file (:func:`xfs_config`), minus options the host's mkfs.xfs does not know (an
unknown ``=0`` is the default anyway; an unknown ``=1`` is dropped with a warning). BOOT is read
by the host's GRUB, not by Talos' newer one, so the incompat features ``exchange``, ``parent``
and ``metadir``, which GRUB ≤ 2.12 cannot read, are always off. The ``concurrency`` options of
1.14 are not passed.

The sector numbers are in the disk's sectors; BIOS booting a 4096-byte-sector disk is not
something firmware does, so 4K images are patched the same way and only booted by UEFI.
"""

from __future__ import annotations

import logging
import os
import re
import struct
from functools import cache
from pathlib import Path

from services.builder.errors import BuildFailed
from services.builder.formats.gpt import guid_from_label
from services.builder.formats.grub import grub_quote
from services.builder.tools import run

__all__ = [
    "BIOS_CORE_MODULES",
    "GRUB_DIR",
    "GRUB_MODULES",
    "GRUB_PREFIX",
    "build_boot_partition",
    "embed_bios",
    "grub_cfg",
    "mkimage_bios_core",
    "mkimage_efi",
    "xfs_config",
]

log = logging.getLogger(__name__)

GRUB_DIR = Path("/usr/lib/grub")
GRUB_PREFIX = "(hd0,gpt3)/grub"
GRUB_MODULES = (
    "part_gpt", "ext2", "fat", "xfs", "normal", "configfile", "linux", "boot", "search",
    "search_fs_uuid", "search_fs_file", "ls", "cat", "echo", "test", "help", "reboot", "halt",
    "all_video",
)  # fmt: skip
BIOS_CORE_MODULES = (*GRUB_MODULES, "biosdisk", "part_msdos")
_EFI_TARGETS = {"amd64": "x86_64-efi", "arm64": "arm64-efi"}
_PACKAGES = {
    "i386-pc": "grub-pc-bin",
    "x86_64-efi": "grub-efi-amd64-bin",
    "arm64-efi": "grub-efi-arm64-bin",
}
_BOOT_IMG_CODE = 446
_KERNEL_SECTOR = 0x5C
_BOOT_DRIVE = 0x64
_DRIVE_CHECK = 0x66
_BLOCKLIST = 0x1F4
_RESET_TITLE = "Reset Talos installation and return to maintenance mode"
_RESET_ARG = "talos.experimental.wipe=system:EPHEMERAL,STATE"


def _entry(title: str, cmdline: str) -> str:
    return (
        f'menuentry "{title}" {{\n'
        "  set gfxmode=auto\n"
        "  set gfxpayload=text\n"
        f"  linux /A/vmlinuz {grub_quote(cmdline)}\n"
        "  initrd /A/initramfs.xz\n"
        "}\n"
    )


def grub_cfg(version: str, cmdline: str, *, reset_entry: bool) -> str:
    """``grub.cfg`` of a fresh image for Talos ``version`` (a tag such as ``v1.9.0``)."""
    title = f"A - Talos {version}"
    text = (
        f'set default="{title}"\n\n'
        "set timeout=3\n\n"
        "insmod all_video\n\n"
        "terminal_input console\n"
        "terminal_output console\n\n"
    ) + _entry(title, cmdline)
    if reset_entry:
        text += _entry(_RESET_TITLE, f"{cmdline} {_RESET_ARG}")
    return text


def _platform_dir(platform: str) -> Path:
    directory = GRUB_DIR / platform
    if not (directory / "moddep.lst").is_file():
        raise BuildFailed(
            f"GRUB modules for {platform} are missing ({directory}), which disk images need; "
            f"install the Debian package {_PACKAGES[platform]}"
        )
    return directory


def mkimage_bios_core(out: Path) -> Path:
    """``core.img`` for i386-pc BIOS boot, every module embedded."""
    directory = _platform_dir("i386-pc")
    run(
        [
            "grub-mkimage", "--directory", directory, "--format", "i386-pc", "--output", out,
            "--prefix", GRUB_PREFIX, *BIOS_CORE_MODULES,
        ]
    )  # fmt: skip
    return out


def mkimage_efi(arch: str, out: Path) -> Path:
    """The GRUB EFI binary of the ``grub`` layout (xz-compressed, every module embedded)."""
    target = _EFI_TARGETS.get(arch)
    if target is None:
        raise BuildFailed(f"no GRUB EFI target for architecture {arch}")
    directory = _platform_dir(target)
    run(
        [
            "grub-mkimage", "--directory", directory, "--format", target, "--output", out,
            "--prefix", GRUB_PREFIX, "--compression", "xz", *GRUB_MODULES,
        ]
    )  # fmt: skip
    return out


# Feature settings of xfsprogs' mkfs/lts_<kernel>.conf profiles (section -> option -> value).
_XFS_PROFILES: dict[str, dict[str, dict[str, int]]] = {
    "lts_6.1.conf": {
        "metadata": {"bigtime": 1, "crc": 1, "finobt": 1, "inobtcount": 1, "reflink": 1,
                     "rmapbt": 0},
        "inode": {"sparse": 1, "nrext64": 0, "exchange": 0},
    },
    "lts_6.6.conf": {
        "metadata": {"bigtime": 1, "crc": 1, "finobt": 1, "inobtcount": 1, "metadir": 0,
                     "reflink": 1, "rmapbt": 1},
        "inode": {"sparse": 1, "nrext64": 1, "exchange": 0},
        "naming": {"parent": 0},
    },
    "lts_6.12.conf": {
        "metadata": {"bigtime": 1, "crc": 1, "finobt": 1, "inobtcount": 1, "metadir": 0,
                     "reflink": 1, "rmapbt": 1, "autofsck": 0},
        "inode": {"sparse": 1, "nrext64": 1, "exchange": 0},
        "naming": {"parent": 0},
    },
    "lts_6.18.conf": {
        "metadata": {"bigtime": 1, "crc": 1, "finobt": 1, "inobtcount": 1, "metadir": 0,
                     "reflink": 1, "rmapbt": 1},
        "inode": {"sparse": 1, "nrext64": 1, "exchange": 1},
        "naming": {"parent": 1},
    },
}  # fmt: skip
_GRUB_UNREADABLE = frozenset({"exchange", "parent", "metadir"})


@cache
def _mkfs_xfs_options() -> frozenset[str]:
    """The sub-option names the host's mkfs.xfs lists in its usage text."""
    usage = run(["mkfs.xfs"], check=False).stderr
    return frozenset(re.findall(r"([a-z][a-z0-9_-]*)=", usage))


def xfs_config(name: str) -> str:
    """The mkfs.xfs config file for profile ``name``, as the host's GRUB and mkfs.xfs allow."""
    profile = _XFS_PROFILES.get(name)
    if profile is None:
        raise BuildFailed(f"unknown XFS profile {name!r}")
    known = _mkfs_xfs_options()
    lines = []
    for section, options in profile.items():
        kept = []
        for option, wanted in options.items():
            value = 0 if option in _GRUB_UNREADABLE else wanted
            if option in known:
                kept.append(f"{option}={value}")
            elif value:
                log.warning("mkfs.xfs on this host lacks %s=1 of %s; BOOT is built without it",
                            option, name)  # fmt: skip
        if kept:
            lines += [f"[{section}]", *kept, ""]
    return "\n".join(lines)


def build_boot_partition(
    part: Path,
    *,
    kernel: Path,
    initramfs: Path,
    cfg: str,
    xfs_profile: str,
    sector_size: int,
    work: Path,
) -> None:
    """Make the XFS BOOT filesystem in the (sized) file ``part``: ``A/vmlinuz``,
    ``A/initramfs.xz`` and ``grub/grub.cfg`` with the text ``cfg``. The protofile names the
    sources relatively, through symlinks in ``work/boot-tree``, so no path needs quoting."""
    src = work / "boot-tree"
    src.mkdir(parents=True, exist_ok=True)
    (src / "grub.cfg").write_text(cfg)
    for name, target in (("vmlinuz", kernel), ("initramfs.xz", initramfs)):
        (src / name).unlink(missing_ok=True)
        (src / name).symlink_to(target.resolve())
    proto = work / "boot.proto"
    proto.write_text(
        "boot\n0 0\nd--755 0 0\n"
        "A d--755 0 0\nvmlinuz ---644 0 0 vmlinuz\ninitramfs.xz ---644 0 0 initramfs.xz\n$\n"
        "grub d--755 0 0\ngrub.cfg ---644 0 0 grub.cfg\n$\n$\n"
    )
    config = work / xfs_profile
    config.write_text(xfs_config(xfs_profile))
    argv: list[str | os.PathLike[str]] = [
        "mkfs.xfs", "-q", "-n", "ftype=1", "-c", f"options={config}", "-f", "-L", "BOOT",
    ]  # fmt: skip
    if sector_size != 512:
        argv += ["-s", f"size={sector_size}"]
    argv += ["-p", proto, "-m", f"uuid={guid_from_label('BOOT')}", part]
    run(argv, cwd=src, env={"DETERMINISTIC_SEED": "1"})


def embed_bios(disk: Path, core: Path, bios_lba: int, bios_size: int, sector_size: int) -> None:
    """Install ``boot.img`` and ``core`` into ``disk`` for a BIOS partition at ``bios_lba``
    of ``bios_size`` bytes (module docstring). Raises ``BuildFailed`` if core.img does not fit
    or does not look like grub-mkimage's i386-pc output."""
    boot = bytearray((_platform_dir("i386-pc") / "boot.img").read_bytes())
    if len(boot) != 512 or boot[510:512] != b"\x55\xaa":
        raise BuildFailed("the host's GRUB boot.img is not a 512-byte boot sector")
    image = bytearray(core.read_bytes())
    if len(image) > bios_size:
        raise BuildFailed(
            f"GRUB core.img is {len(image)} bytes, larger than the BIOS partition ({bios_size})"
        )
    _start, count, segment = struct.unpack_from("<QHH", image, _BLOCKLIST)
    if segment != 0x820 or (count + 1) * 512 < len(image):
        raise BuildFailed(
            f"unexpected blocklist in GRUB core.img ({count} sectors at {segment:#x}); "
            "is it grub-mkimage i386-pc output?"
        )
    struct.pack_into("<Q", boot, _KERNEL_SECTOR, bios_lba)
    boot[_BOOT_DRIVE] = 0xFF
    boot[_DRIVE_CHECK : _DRIVE_CHECK + 2] = b"\x90\x90"
    struct.pack_into("<Q", image, _BLOCKLIST, bios_lba + 1)
    fd = os.open(disk, os.O_WRONLY)
    try:
        os.pwrite(fd, bytes(image), bios_lba * sector_size)
        os.pwrite(fd, bytes(boot[:_BOOT_IMG_CODE]), 0)
    finally:
        os.close(fd)
