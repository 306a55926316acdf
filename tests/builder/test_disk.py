"""Disk images (reference/talos-assets.md §9) checked with independent tools and real boots.

Expected layouts, sizes, GUIDs and file texts are written out here from the reference tables,
never taken from the code under test. The images are read back with ``sfdisk -J`` (``fdisk -b
4096`` for 4K sectors), mtools at the ESP's offset (``mdir``/``mcopy -i img@@OFFSET``),
``blkid --probe --offset``, ``xfs_db -r`` and ``grub-fstest`` (GRUB's own XFS driver) on the
BOOT partition cut out with ``dd``. Boots run the test release's fixture init under OVMF and
SeaBIOS and read its FIXTURE-* markers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from image_service.versions import Version
from services.builder.errors import BuildFailed, InvalidPath, InvalidProfile
from services.builder.formats.disk import DiskInputs, build_disk_image, plan_layout
from services.builder.formats.gpt import guid_from_label
from services.builder.formats.grub import grub_quote
from services.builder.formats.grubbios import grub_cfg
from services.builder.formats.uki import build_uki, kernel_version, talos_os_release, uki_profiles
from services.builder.talos.cmdline import build_cmdline
from services.builder.talos.meta_adv import AdvError, encode_adv, parse_adv
from services.builder.talos.platforms import Arch
from services.builder.talos.quirks import Bootloader, quirks_for, select_bootloader
from services.builder.talos.secureboot import SecureBootKeys, enrollment_files, sign_efi
from tests.release import Release
from tests.release.markers import FixtureReport, parse_markers
from tests.support.keys import write_secureboot_keys
from tests.support.qemu import Firmware, boot

MIB = 1 << 20
SECTORS_PER_MIB = MIB // 512
REPO = Path(__file__).resolve().parents[2]

# talos-assets.md §9.3, verbatim.
DISK_GUID = "d92d45b3-cde9-8760-be9f-a2a71fac8d11"
PART_GUIDS = {
    "EFI": "bca5174b-0118-8a6a-af0b-2c6e1585acae",
    "BIOS": "a2a02ff5-d88d-8e6e-9c95-26b9b6c80bc3",
    "BOOT": "24c73076-4092-85dd-9d98-686a2dbf6d81",
    "META": "cf04f137-101e-8ec6-9627-fa3f51cdabb8",
    "STATE": "f7f88648-df7c-8acb-b4d2-6f124659d923",
    "EPHEMERAL": "c5e02400-0e5e-80bc-99ec-53b3e45ad6c4",
}
EFI_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
BIOS_TYPE = "21686148-6449-6e6f-744e-656564454649"
LINUX_TYPE = "0fc63daf-8483-4772-8e79-3d69d8477de4"
TYPES = {"EFI": EFI_TYPE, "BIOS": BIOS_TYPE}
LOADER_CONF = "# systemd-boot configuration\n\ntimeout 10\n"  # §9.6
UEFI_STOP = ["FIXTURE-DONE", "Kernel panic", "Access Denied"]


# --- building -----------------------------------------------------------------------------------


def make_inputs(
    release: Release,
    work: Path,
    version: str,
    arch: str = "amd64",
    *,
    files_version: str | None = None,
    platform: str = "metal",
    secureboot: bool = False,
    requested: str | None = None,
    signed_with: SecureBootKeys | None = None,
    **fields: object,
) -> DiskInputs:
    """Inputs as the pipeline prepares them: cmdline for image output, bootloader from
    ``select_bootloader``, the UKI with the image profiles for sd-boot/dual-boot."""
    target = Version.parse(version)
    quirks = quirks_for(target)
    art = release.version(files_version or version).arches[arch]
    cmdline = build_cmdline(
        platform, Arch(arch), target, secureboot=secureboot, iso=False, output_is_image=True
    )
    bootloader = select_bootloader(quirks, arch, secureboot=secureboot, requested=requested)
    work.mkdir(parents=True, exist_ok=True)
    uki = sd_boot = None
    if bootloader is not Bootloader.GRUB:
        uki = work / "uki.efi"
        build_uki(
            art.systemd_stub, art.vmlinuz, art.initramfs, cmdline, talos_os_release(target.tag),
            kernel_version(art.vmlinuz), uki, profiles=uki_profiles(quirks, "image", cmdline),
            secureboot=signed_with,
        )  # fmt: skip
        sd_boot = art.systemd_boot
        if signed_with is not None:
            sd_boot = work / "systemd-boot.signed.efi"
            sign_efi(art.systemd_boot, signed_with, sd_boot)
    inputs = DiskInputs(
        target, Arch(arch), platform, quirks, bootloader, art.vmlinuz, art.initramfs, cmdline,
        uki=uki, systemd_boot=sd_boot, secureboot=secureboot,
    )  # fmt: skip
    return replace(inputs, **fields)  # type: ignore[arg-type]


def build_image(inputs: DiskInputs, work: Path, name: str = "disk.raw") -> Path:
    out = work / name
    build_disk_image(inputs, work / "scratch", out)
    return out


# --- reading back -------------------------------------------------------------------------------


def sfdisk_json(image: Path) -> dict[str, object]:
    out = subprocess.run(["sfdisk", "-J", image], check=True, capture_output=True, text=True)
    table: dict[str, object] = json.loads(out.stdout)["partitiontable"]
    return table


def partitions(image: Path) -> list[dict[str, object]]:
    parts: list[dict[str, object]] = sfdisk_json(image)["partitions"]  # type: ignore[assignment]
    return parts


def offset_of(image: Path, name: str, sector: int = 512) -> int:
    for p in partitions(image) if sector == 512 else fdisk_4k(image):
        if p["name"] == name:
            return int(p["start"]) * sector  # type: ignore[call-overload]
    raise AssertionError(f"no partition {name}")


def fdisk_4k(image: Path) -> list[dict[str, object]]:
    out = subprocess.run(
        ["fdisk", "-b", "4096", "-l", "-o", "Start,Sectors,Type-UUID,UUID,Name", image],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert "Sector size (logical/physical): 4096 bytes" in out
    rows = re.findall(r"^\s*(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$", out, re.M)
    return [
        {"start": int(s), "size": int(n), "type": t, "uuid": u, "name": name}
        for s, n, t, u, name in rows
    ]


def esp_file(image: Path, offset: int, path: str, dest: Path) -> bytes:
    subprocess.run(["mcopy", "-n", "-i", f"{image}@@{offset}", f"::/{path}", dest], check=True)
    return dest.read_bytes()


def cut_partition(image: Path, name: str, dest: Path) -> Path:
    part = next(p for p in partitions(image) if p["name"] == name)
    subprocess.run(
        ["dd", f"if={image}", f"of={dest}", "bs=512", f"skip={part['start']}",
         f"count={part['size']}", "conv=sparse", "status=none"],
        check=True,
    )  # fmt: skip
    return dest


# --- fixtures: images shared by structure and boot tests ----------------------------------------


@pytest.fixture(scope="module")
def dual_boot(test_release: Release, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """metal-amd64.raw for v1.11.3 (dual-boot by default) with one META value."""
    work = tmp_path_factory.mktemp("dual-boot")
    inputs = make_inputs(test_release, work, "v1.11.3", meta=((0x0C, "hello"),))
    assert inputs.bootloader is Bootloader.DUAL_BOOT
    return build_image(inputs, work)


@pytest.fixture(scope="module")
def grub_17(test_release: Release, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """metal-amd64.raw for v1.7.7 (GRUB, with STATE and EPHEMERAL)."""
    work = tmp_path_factory.mktemp("grub-1.7")
    return build_image(make_inputs(test_release, work, "v1.7.7"), work)


# --- pure parts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("label", "guid"), [("talos-image-disk", DISK_GUID), *PART_GUIDS.items()])
def test_guid_from_label(label: str, guid: str) -> None:
    assert str(guid_from_label(label)) == guid


@pytest.mark.parametrize(
    ("platform", "arch", "version", "bootloader", "mib"),
    [  # talos-assets.md §9.1 examples
        ("metal", Arch.AMD64, "1.12.0", Bootloader.DUAL_BOOT, 4247),
        ("metal", Arch.ARM64, "1.12.0", Bootloader.SD_BOOT, 2246),
        ("aws", Arch.AMD64, "1.12.0", Bootloader.DUAL_BOOT, 11193),
        ("metal", Arch.AMD64, "1.9.0", Bootloader.GRUB, 1246),
    ],
)
def test_disk_size(
    platform: str, arch: Arch, version: str, bootloader: Bootloader, mib: int
) -> None:
    base = {"metal": 1246, "aws": 8192}[platform]  # api.md §7.3
    layout = plan_layout(quirks_for(Version.parse(version)), arch, bootloader, base_size_mib=base)
    assert layout.disk_size_mib == mib
    assert layout.disk_size == mib * MIB
    assert select_bootloader(quirks_for(Version.parse(version)), arch, secureboot=False) == (
        bootloader
    )


def test_grub_cfg_matches_reference() -> None:
    # talos-assets.md §9.7, with <quoted cmdline> filled in.
    cmdline = "talos.platform=metal console=tty0"
    expected = (
        'set default="A - Talos v1.9.0"\n\nset timeout=3\n\ninsmod all_video\n\n'
        "terminal_input console\nterminal_output console\n\n"
        'menuentry "A - Talos v1.9.0" {\n  set gfxmode=auto\n  set gfxpayload=text\n'
        f"  linux /A/vmlinuz {cmdline}\n  initrd /A/initramfs.xz\n}}\n"
        'menuentry "Reset Talos installation and return to maintenance mode" {\n'
        "  set gfxmode=auto\n  set gfxpayload=text\n"
        f"  linux /A/vmlinuz {cmdline} talos.experimental.wipe=system:EPHEMERAL,STATE\n"
        "  initrd /A/initramfs.xz\n}\n"
    )
    assert grub_cfg("v1.9.0", cmdline, reset_entry=True) == expected
    without = grub_cfg("v1.9.0", cmdline, reset_entry=False)
    assert without == expected[: expected.index('menuentry "Reset')]
    assert without.endswith("}\n")


def test_grub_quote() -> None:
    # §8.2: \ { } & $ | ; < > " get a backslash, the backslash itself first.
    assert (
        grub_quote('a\\b{c}d&e$f|g;h<i>j"k l=m') == 'a\\\\b\\{c\\}d\\&e\\$f\\|g\\;h\\<i\\>j\\"k l=m'
    )


def test_meta_adv_layout() -> None:
    # §9.8: big-endian magic, records {tag, size, value}, SHA-256 with the field zeroed, twice.
    data = encode_adv([(0x11, "dual-boot"), (0x0C, "hello")])
    assert len(data) == 512 * 1024
    copy = data[: 256 * 1024]
    assert data[256 * 1024 :] == copy
    assert copy[:4] == bytes.fromhex("5a4b3c2d") and copy[-4:] == bytes.fromhex("a5b4c3d2")
    # sorted by key: 0x0c first
    assert copy[4:12] == struct.pack(">II", 0x0C, 5) and copy[12:17] == b"hello"
    assert copy[17:25] == struct.pack(">II", 0x11, 9) and copy[25:34] == b"dual-boot"
    assert copy[34 : len(copy) - 36] == bytes(len(copy) - 36 - 34)
    zeroed = copy[:-36] + bytes(32) + copy[-4:]
    assert copy[-36:-4] == hashlib.sha256(zeroed).digest()
    assert parse_adv(data) == {0x0C: b"hello", 0x11: b"dual-boot"}


def test_meta_adv_second_copy_and_errors() -> None:
    data = bytearray(encode_adv([(0x0A, "x"), (0x0A, "later wins")]))
    data[100] ^= 0xFF  # corrupt the first copy: the second one is used
    assert parse_adv(bytes(data)) == {0x0A: b"later wins"}
    data[256 * 1024 + 100] ^= 0xFF
    with pytest.raises(AdvError, match="no valid ADV copy"):
        parse_adv(bytes(data))
    with pytest.raises(InvalidProfile, match="META key 0x0"):
        encode_adv([(0, "x")])
    with pytest.raises(InvalidProfile, match="more than"):
        encode_adv([(1, "x" * (256 * 1024 - 40 - 27))])
    encode_adv([(1, "x" * (256 * 1024 - 40 - 28))])  # exactly full


# --- layouts (sfdisk -J) ------------------------------------------------------------------------

# (label, MiB or None for "the rest") in order, from talos-assets.md §9.2 and §9.4.
LAYOUTS = {
    "grub-1.7": ("v1.7.7", None, "amd64", False, 1246,
                 [("EFI", 100), ("BIOS", 1), ("BOOT", 1000), ("META", 1), ("STATE", 100),
                  ("EPHEMERAL", None)]),
    "grub-1.9": ("v1.9.0", "v1.7.7", "amd64", False, 1246,
                 [("EFI", 100), ("BIOS", 1), ("BOOT", 1000), ("META", 1)]),
    "dual-boot-1.10": ("v1.10.0", "v1.11.3", "amd64", False, 1246 + 1 + 1000,
                       [("EFI", 1101), ("BIOS", 1), ("BOOT", 1000), ("META", 1)]),
    "dual-boot-1.11": ("v1.11.3", None, "amd64", False, 4247,
                       [("EFI", 2101), ("BIOS", 1), ("BOOT", 2000), ("META", 1)]),
    "sd-boot-arm64-1.11": ("v1.11.3", None, "arm64", False, 2246, [("EFI", 2101), ("META", 1)]),
    "secureboot-amd64-1.11": ("v1.11.3", None, "amd64", True, 2246,
                              [("EFI", 2101), ("META", 1)]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(LAYOUTS))
def test_layout(test_release: Release, tmp_path: Path, case: str) -> None:
    version, files, arch, secureboot, disk_mib, expected = LAYOUTS[case]
    inputs = make_inputs(
        test_release, tmp_path, version, arch, files_version=files, secureboot=secureboot
    )
    image = build_image(inputs, tmp_path)
    assert image.stat().st_size == disk_mib * MIB
    assert image.stat().st_blocks * 512 < 64 * MIB  # sparse
    table = sfdisk_json(image)
    assert table["label"] == "gpt"
    assert str(table["id"]).lower() == DISK_GUID
    assert table["sectorsize"] == 512
    total = disk_mib * SECTORS_PER_MIB
    assert table["firstlba"] == 34 and table["lastlba"] == total - 34
    parts = partitions(image)
    assert [p["name"] for p in parts] == [name for name, _ in expected]
    assert parts[0]["start"] == 2048
    for part, (name, mib) in zip(parts, expected, strict=True):
        start, size = int(part["start"]), int(part["size"])  # type: ignore[call-overload]
        assert start % 2048 == 0, name
        if mib is None:
            assert start + size - 1 == table["lastlba"], name
        else:
            assert size == mib * SECTORS_PER_MIB, name
        assert str(part["type"]).lower() == TYPES.get(name, LINUX_TYPE), name
        assert str(part["uuid"]).lower() == PART_GUIDS[name], name
        assert part.get("attrs") == ("LegacyBIOSBootable" if name == "BIOS" else None), name
    for a, b in itertools.pairwise(parts):
        assert int(b["start"]) >= int(a["start"]) + int(a["size"])  # type: ignore[call-overload]
    out = subprocess.run(["sfdisk", "--verify", image], check=False, capture_output=True, text=True)
    assert out.returncode == 0 and "No errors detected" in out.stdout, out.stdout + out.stderr
    # MBR: one protective 0xEE record from LBA 1, not bootable.
    with image.open("rb") as f:
        mbr = f.read(512)
    assert mbr[510:] == b"\x55\xaa"
    status, ptype, first, count = mbr[446], mbr[450], *struct.unpack_from("<II", mbr, 454)
    assert (status, ptype, first, count) == (0, 0xEE, 1, total - 1)
    assert mbr[462:510] == bytes(48)


# --- partition contents -------------------------------------------------------------------------


def test_dual_boot_esp(test_release: Release, dual_boot: Path, tmp_path: Path) -> None:
    esp = offset_of(dual_boot, "EFI")
    art = test_release.version("v1.11.3").arches["amd64"]
    # §9.6: lowercase "boot" and ".efi"; nothing of GRUB on the ESP.
    assert sorted(mdir_recursive(dual_boot, esp)) == [
        "EFI/Linux/Talos-v1.11.3.efi", "EFI/boot/BOOTX64.efi", "loader/loader.conf"
    ]  # fmt: skip
    assert esp_file(dual_boot, esp, "EFI/boot/BOOTX64.efi", tmp_path / "sdb") == (
        art.systemd_boot.read_bytes()
    )
    uki = esp_file(dual_boot, esp, "EFI/Linux/Talos-v1.11.3.efi", tmp_path / "uki")
    assert uki[:2] == b"MZ" and b"ID=reset-maintenance" in uki
    assert esp_file(dual_boot, esp, "loader/loader.conf", tmp_path / "lc").decode() == LOADER_CONF
    info = subprocess.run(
        ["minfo", "-i", f"{dual_boot}@@{esp}", "::"], check=True, capture_output=True, text=True
    ).stdout
    assert "sector size: 512 bytes" in info
    assert "fat32" in info.lower() or "FAT32" in info
    label = subprocess.run(
        ["mlabel", "-s", "-i", f"{dual_boot}@@{esp}", "::"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "EFI" in label


def mdir_recursive(image: Path, offset: int) -> list[str]:
    """Every file (not directory) on the FAT at ``offset``, as relative paths."""
    out = subprocess.run(
        ["mdir", "-i", f"{image}@@{offset}", "-/", "-b", "::/"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    files = []
    for line in out.split():
        path = line.removeprefix("::/")
        if path and not path.endswith("/"):
            files.append(path)
    return files


def test_grub_esp(grub_17: Path, tmp_path: Path) -> None:
    esp = offset_of(grub_17, "EFI")
    assert sorted(mdir_recursive(grub_17, esp)) == ["EFI/boot/BOOTX64.efi"]
    grub_efi = esp_file(grub_17, esp, "EFI/boot/BOOTX64.efi", tmp_path / "grub.efi")
    assert grub_efi[:2] == b"MZ"
    # the embedded prefix points at BOOT, the third partition (§9.7)
    assert b"(hd0,gpt3)/grub" in grub_efi


def test_arm64_sd_boot_esp(test_release: Release, tmp_path: Path) -> None:
    inputs = make_inputs(test_release, tmp_path, "v1.11.3", "arm64", meta=((0x0C, "x"),))
    image = build_image(inputs, tmp_path)
    esp = offset_of(image, "EFI")
    assert sorted(mdir_recursive(image, esp)) == [
        "EFI/Linux/Talos-v1.11.3.efi", "EFI/boot/BOOTAA64.efi", "loader/loader.conf",
    ]  # fmt: skip
    meta = cut_partition(image, "META", tmp_path / "meta")
    assert parse_adv(meta.read_bytes()) == {0x0C: b"x"}  # no 0x11: not amd64 dual-boot


@pytest.mark.parametrize(
    ("fixture", "version", "features", "absent"),
    [
        ("grub_17", "v1.7.7", {"CRC", "FTYPE", "FINOBT", "SPARSE_INODES", "REFLINK", "INOBTCNT",
                               "BIGTIME"}, {"RMAPBT", "NREXT64"}),  # lts_6.1.conf
        ("dual_boot", "v1.11.3", {"CRC", "FTYPE", "FINOBT", "SPARSE_INODES", "REFLINK",
                                  "INOBTCNT", "BIGTIME", "RMAPBT", "NREXT64"}, set()),  # 6.12
    ],
)  # fmt: skip
def test_boot_partition(
    request: pytest.FixtureRequest,
    test_release: Release,
    tmp_path: Path,
    fixture: str,
    version: str,
    features: set[str],
    absent: set[str],
) -> None:
    image: Path = request.getfixturevalue(fixture)
    art = test_release.version(version).arches["amd64"]
    probe = subprocess.run(
        ["blkid", "--probe", "--offset", str(offset_of(image, "BOOT")), image],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert 'TYPE="xfs"' in probe and 'LABEL="BOOT"' in probe
    assert f'UUID="{PART_GUIDS["BOOT"]}"' in probe
    boot_fs = cut_partition(image, "BOOT", tmp_path / "boot.img")
    db = subprocess.run(
        ["xfs_db", "-r", "-c", "version", "-c", "ls /A", "-c", "ls /grub", boot_fs],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    got = set(db.split("=", 1)[1].split("\n", 1)[0].strip().split(",")) if "=" in db else set()
    assert features <= got and not (absent & got), db
    assert re.search(r"regular .* vmlinuz", db) and re.search(r"regular .* initramfs\.xz", db)
    # GRUB's own XFS driver reads it (the host GRUB is what boots it).
    for path, local in (("/A/vmlinuz", art.vmlinuz), ("/A/initramfs.xz", art.initramfs)):
        subprocess.run(["grub-fstest", boot_fs, "cmp", path, local], check=True)
    cfg = subprocess.run(
        ["grub-fstest", boot_fs, "cat", "/grub/grub.cfg"], check=True, capture_output=True
    ).stdout.decode()
    cmdline = build_cmdline(
        "metal", Arch.AMD64, Version.parse(version), secureboot=False, iso=False,
        output_is_image=True,
    )  # fmt: skip
    assert cfg.startswith(f'set default="A - Talos {version}"\n')
    assert f"  linux /A/vmlinuz {cmdline}\n" in cfg
    assert f"  linux /A/vmlinuz {cmdline} talos.experimental.wipe=system:EPHEMERAL,STATE\n" in cfg


@pytest.mark.parametrize("fixture", ["grub_17", "dual_boot"])
def test_bios_boot_code(request: pytest.FixtureRequest, tmp_path: Path, fixture: str) -> None:
    image: Path = request.getfixturevalue(fixture)
    bios = next(p for p in partitions(image) if p["name"] == "BIOS")
    lba = int(bios["start"])  # type: ignore[call-overload]
    pristine = Path("/usr/lib/grub/i386-pc/boot.img").read_bytes()
    with image.open("rb") as f:
        mbr = f.read(512)
        f.seek(lba * 512)
        core_head = f.read(512)
    # §9.7: boot.img with kernel_sector = L at 0x5C and NOPs at 0x66; the table is kept.
    assert struct.unpack_from("<Q", mbr, 0x5C)[0] == lba
    assert mbr[0x64] == 0xFF and mbr[0x66:0x68] == b"\x90\x90"
    assert mbr[:0x5C] == pristine[:0x5C] and mbr[0x68:446] == pristine[0x68:446]
    assert mbr[450] == 0xEE
    # core.img at the start of BIOS, its first blocklist entry pointing at L + 1.
    core = tmp_path / "core.img"
    subprocess.run(
        ["grub-mkimage", "-O", "i386-pc", "-o", core, "-p", "(hd0,gpt3)/grub", "part_gpt"],
        check=True,
    )
    assert core_head[:0x1F4] == core.read_bytes()[:0x1F4]  # diskboot.img, unpatched
    start, count, segment = struct.unpack_from("<QHH", core_head, 0x1F4)
    assert start == lba + 1 and segment == 0x820 and 100 < count < 2047


def test_meta_partition(dual_boot: Path, grub_17: Path, tmp_path: Path) -> None:
    meta = cut_partition(dual_boot, "META", tmp_path / "meta")
    data = meta.read_bytes()
    assert len(data) == MIB
    # the flavor's value and, for amd64 dual-boot >= 1.10, 0x11 = dual-boot (§9.8)
    assert parse_adv(data) == {0x0C: b"hello", 0x11: b"dual-boot"}
    assert data[512 * 1024 :] == bytes(512 * 1024)
    empty = cut_partition(grub_17, "META", tmp_path / "meta17").read_bytes()
    assert empty == bytes(MIB)


@pytest.mark.parametrize(
    ("version", "disk_mib", "expected", "esp_file_name", "meta"),
    [
        ("v1.11.3", 4247, [("EFI", 2101), ("BIOS", 1), ("BOOT", 2000), ("META", 1)],
         "loader/loader.conf", {0x11: b"dual-boot"}),
        ("v1.7.7", 1246, [("EFI", 100), ("BIOS", 1), ("BOOT", 1000), ("META", 1), ("STATE", 100),
                          ("EPHEMERAL", None)], "EFI/boot/BOOTX64.efi", None),
    ],
)  # fmt: skip
def test_4k_sectors(
    test_release: Release,
    tmp_path: Path,
    version: str,
    disk_mib: int,
    expected: list[tuple[str, int | None]],
    esp_file_name: str,
    meta: dict[int, bytes] | None,
) -> None:
    inputs = make_inputs(test_release, tmp_path, version, sector_size=4096)
    image = build_image(inputs, tmp_path)
    assert image.stat().st_size == disk_mib * MIB
    parts = fdisk_4k(image)
    total = disk_mib * 256
    last_usable = total - 1 - 4 - 1  # 128 entries x 128 bytes = 4 sectors of 4096 bytes
    assert [p["name"] for p in parts] == [name for name, _ in expected]
    for p, (name, mib) in zip(parts, expected, strict=True):
        size = last_usable - int(p["start"]) + 1 if mib is None else mib * 256  # type: ignore[call-overload]
        assert p["size"] == size, name
        assert int(p["start"]) % 256 == 0  # type: ignore[call-overload]
        assert str(p["uuid"]).lower() == PART_GUIDS[name]
        assert str(p["type"]).lower() == TYPES.get(name, LINUX_TYPE)
    assert parts[0]["start"] == 256  # 1 MiB
    esp = offset_of(image, "EFI", 4096)
    info = subprocess.run(
        ["minfo", "-i", f"{image}@@{esp}", "::"], check=True, capture_output=True, text=True
    ).stdout
    assert "sector size: 4096 bytes" in info
    # 100 MiB of 4 KiB sectors is too small for FAT32 (fewer than 65525 clusters): FAT16.
    assert f'disk type="FAT{16 if disk_mib == 1246 else 32}' in info
    assert esp_file_name in mdir_recursive(image, esp)
    probe = subprocess.run(
        ["blkid", "--probe", "--offset", str(offset_of(image, "BOOT", 4096)), image],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert 'TYPE="xfs"' in probe and 'BLOCK_SIZE="4096"' in probe
    with image.open("rb") as f:
        f.seek(offset_of(image, "META", 4096))
        data = f.read(512 * 1024)
    assert (parse_adv(data) if meta else data) == (meta or bytes(512 * 1024))


def test_secureboot_esp_with_enrolment(test_release: Release, tmp_path: Path) -> None:
    keys_files = write_secureboot_keys(tmp_path / "keys")
    keys = SecureBootKeys.load(keys_files.signing_key, keys_files.signing_cert)
    auth = enrollment_files(keys, tmp_path / "auth")
    # 1.14 (HEAD): loader.conf gets secure-boot-enroll and loader/keys/auto (§9.6).
    inputs = make_inputs(
        test_release, tmp_path / "w14", "v1.14.0", files_version="v1.12.0-beta.1",
        secureboot=True, requested="dual-boot", signed_with=keys, enrollment=auth,
        meta=((0x0C, "sb"),),
    )  # fmt: skip
    assert inputs.bootloader is Bootloader.SD_BOOT  # Secure Boot wins over the request (§6)
    image = build_image(inputs, tmp_path / "w14")
    assert [p["name"] for p in partitions(image)] == ["EFI", "META"]
    esp = offset_of(image, "EFI")
    assert sorted(mdir_recursive(image, esp)) == [
        "EFI/Linux/Talos-v1.14.0.efi", "EFI/boot/BOOTX64.efi", "loader/keys/auto/KEK.auth",
        "loader/keys/auto/PK.auth", "loader/keys/auto/db.auth", "loader/loader.conf",
    ]  # fmt: skip
    conf = esp_file(image, esp, "loader/loader.conf", tmp_path / "lc").decode()
    assert conf == LOADER_CONF + "\nsecure-boot-enroll if-safe\n"
    assert esp_file(image, esp, "loader/keys/auto/db.auth", tmp_path / "db") == (
        auth.db.read_bytes()
    )
    sd_boot = esp_file(image, esp, "EFI/boot/BOOTX64.efi", tmp_path / "sdb")
    check = subprocess.run(
        ["sbverify", "--cert", keys_files.signing_cert, tmp_path / "sdb"],
        check=False,
        capture_output=True,
    )
    assert check.returncode == 0 and sd_boot[:2] == b"MZ"
    meta = cut_partition(image, "META", tmp_path / "meta")
    assert parse_adv(meta.read_bytes()) == {0x0C: b"sb"}  # no 0x11 under Secure Boot

    # 1.11: no enrolment in disk images.
    old = make_inputs(test_release, tmp_path / "w11", "v1.11.3", secureboot=True, enrollment=auth)
    image = build_image(old, tmp_path / "w11")
    esp = offset_of(image, "EFI")
    assert not any(p.startswith("loader/keys") for p in mdir_recursive(image, esp))
    assert esp_file(image, esp, "loader/loader.conf", tmp_path / "lc11").decode() == LOADER_CONF


def test_rejected_inputs(test_release: Release, tmp_path: Path) -> None:
    base = make_inputs(test_release, tmp_path, "v1.11.3", "arm64")
    with pytest.raises(InvalidProfile, match='bootloader "dual-boot" is not supported on arm64'):
        build_image(replace(base, bootloader=Bootloader.DUAL_BOOT), tmp_path)
    with pytest.raises(InvalidProfile, match="use sd-boot"):
        build_image(replace(base, secureboot=True, bootloader=Bootloader.GRUB), tmp_path)
    with pytest.raises(InvalidPath, match='invalid platform: "nowhere"'):
        build_image(replace(base, platform="nowhere"), tmp_path)
    with pytest.raises(BuildFailed, match="does not fit"):
        build_image(replace(base, base_size_mib=100), tmp_path)
    with pytest.raises(BuildFailed, match="needs the UKI"):
        build_image(replace(base, uki=None), tmp_path)
    with pytest.raises(InvalidProfile, match="sector size 1024"):
        build_image(replace(base, sector_size=1024), tmp_path)
    if not Path("/usr/lib/grub/arm64-efi").is_dir():
        with pytest.raises(BuildFailed, match="grub-efi-arm64-bin"):
            build_image(replace(base, bootloader=Bootloader.GRUB), tmp_path)


def test_base_size_override(test_release: Release, tmp_path: Path) -> None:
    # Overlays (and tests) give their own base size; the boot partitions are still added.
    inputs = make_inputs(test_release, tmp_path, "v1.7.7", base_size_mib=1300)
    image = build_image(inputs, tmp_path)
    assert image.stat().st_size == 1300 * MIB
    assert partitions(image)[-1]["name"] == "EPHEMERAL"


def test_overlay_offset_and_esp_extra(test_release: Release, tmp_path: Path) -> None:
    extra = tmp_path / "overlay-efi"
    (extra / "EFI" / "vendor").mkdir(parents=True)
    (extra / "EFI" / "vendor" / "firmware.bin").write_bytes(b"fw" * 100)
    (extra / "config.txt").write_text("arm_64bit=1\n")
    blob = b"u-boot!" * 1000

    def install(disk: Path) -> None:  # what an overlay installer does: raw blobs at 32 KiB
        with disk.open("r+b") as f:
            f.seek(32768)
            f.write(blob)

    inputs = make_inputs(
        test_release, tmp_path, "v1.11.3", "arm64", partition_offset_lbas=20480,
        esp_extra=extra, overlay_install=install,
    )  # fmt: skip
    image = build_image(inputs, tmp_path)
    table = sfdisk_json(image)
    assert int(table["firstlba"]) == 2 + 20480 + 32  # type: ignore[call-overload]
    assert partitions(image)[0]["start"] == 22528  # the next 1 MiB boundary
    with image.open("rb") as f:
        f.seek(32768)
        assert f.read(len(blob)) == blob
    esp = offset_of(image, "EFI")
    assert {"EFI/vendor/firmware.bin", "config.txt", "EFI/boot/BOOTAA64.efi"} <= set(
        mdir_recursive(image, esp)
    )


def test_reproducible_outside_boot(test_release: Release, tmp_path: Path) -> None:
    """Everything but BOOT's XFS inode times (xfsprogs 6.1 ignores SOURCE_DATE_EPOCH) is
    byte-identical across builds."""
    images = []
    for name in ("a", "b"):
        inputs = make_inputs(test_release, tmp_path / name, "v1.11.3", meta=((0x0C, "r"),))
        images.append(build_image(inputs, tmp_path / name))
    boot_part = next(p for p in partitions(images[0]) if p["name"] == "BOOT")
    start = int(boot_part["start"]) * 512  # type: ignore[call-overload]
    end = start + int(boot_part["size"]) * 512  # type: ignore[call-overload]
    regions = sorted(set(data_extents(images[0])) | set(data_extents(images[1])))
    with images[0].open("rb") as a, images[1].open("rb") as b:
        for first, last in regions:  # holes read as zeros in both: only data can differ
            for low, high in ((first, min(last, start)), (max(first, end), last)):
                for pos in range(low, high, MIB):
                    a.seek(pos)
                    b.seek(pos)
                    n = min(MIB, high - pos)
                    assert a.read(n) == b.read(n), f"differs near byte {pos}"


def data_extents(path: Path) -> list[tuple[int, int]]:
    """(start, end) of every data extent of a sparse file (SEEK_DATA/SEEK_HOLE)."""
    extents = []
    with path.open("rb") as f:
        size, pos = os.fstat(f.fileno()).st_size, 0
        while pos < size:
            try:
                pos = os.lseek(f.fileno(), pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(f.fileno(), pos, os.SEEK_HOLE)
            extents.append((pos, end))
            pos = end
    return extents


# --- memory and privileges ----------------------------------------------------------------------

_MEASURE = textwrap.dedent(
    """
    import json, pickle, resource, sys, time
    from pathlib import Path
    from services.builder.formats.disk import build_disk_image
    inputs, work, out = pickle.loads(bytes.fromhex(sys.argv[1]))
    start = time.monotonic()
    build_disk_image(inputs, work, out)
    status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
    print(json.dumps({
        "seconds": time.monotonic() - start,
        "self_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "children_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "cap_eff": status["CapEff"].strip(),
    }))
    """
)


def test_memory_bounded_for_large_image(test_release: Release, tmp_path: Path) -> None:
    """aws-amd64.raw for v1.11.3: 11193 MiB. The build runs in a fresh process (with no
    capabilities when the tests run as root: no mounts, loop devices or chown), whose peak
    RSS and its children's are the measurement."""
    inputs = make_inputs(test_release, tmp_path, "v1.11.3", platform="aws")
    out = tmp_path / "aws-amd64.raw"
    arg = pickle.dumps((inputs, tmp_path / "scratch", out)).hex()
    argv = [sys.executable, "-c", _MEASURE, arg]
    if os.geteuid() == 0 and shutil.which("setpriv"):
        argv = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", *argv]
    done = subprocess.run(
        argv, check=True, capture_output=True, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"\naws-amd64.raw {out.stat().st_size / MIB:.0f} MiB "
        f"({out.stat().st_blocks * 512 / MIB:.1f} MiB allocated) in {stats['seconds']:.2f}s: "
        f"peak RSS builder {stats['self_kib'] / 1024:.1f} MiB, "
        f"largest tool {stats['children_kib'] / 1024:.1f} MiB, CapEff {stats['cap_eff']}"
    )
    assert out.stat().st_size == 11193 * MIB
    assert out.stat().st_blocks * 512 < 64 * MIB
    assert stats["self_kib"] < 200 * 1024
    assert stats["children_kib"] < 200 * 1024
    if os.geteuid() == 0 and shutil.which("setpriv"):
        assert stats["cap_eff"] == "0000000000000000"


# --- boots --------------------------------------------------------------------------------------


def disk_drive(image: Path, fmt: str = "raw") -> list[str]:
    return ["-drive", f"file={image},format={fmt},if=virtio,snapshot=on"]


def check_boot(image: Path, tmp_path: Path, firmware: Firmware, version: str, *, grub: bool,
               fmt: str = "raw", drive: list[str] | None = None) -> FixtureReport:  # fmt: skip
    result = boot(
        "amd64", tmp_path, firmware=firmware, extra_args=drive or disk_drive(image, fmt),
        timeout=180, stop_on=UEFI_STOP,
    )  # fmt: skip
    report = parse_markers(result.log)
    print(f"\n{image.name} {fmt} {firmware}: booted in {result.elapsed:.1f}s")
    assert report.boot_ok and report.done, result.describe()
    assert report.firmware == ("BIOS" if firmware is Firmware.BIOS else "UEFI")
    secureboot = firmware is Firmware.UEFI_SECUREBOOT
    cmdline = build_cmdline(
        "metal", Arch.AMD64, Version.parse(version), secureboot=secureboot, iso=False,
        output_is_image=True,
    )  # fmt: skip
    # GRUB's linux command prepends BOOT_IMAGE; sd-stub passes the UKI's main profile as is.
    assert report.cmdline == (f"BOOT_IMAGE=/A/vmlinuz {cmdline}" if grub else cmdline)
    assert report.rootfs == version
    return report


# The dual-boot (v1.11.3) and GRUB (v1.7.7) layouts boot under OVMF and SeaBIOS through /image
# in tests/http/test_disk.py; here: the variants only the builder test reaches.


@pytest.mark.boot
def test_boot_4k_sectors(test_release: Release, tmp_path: Path) -> None:
    """A 4096-byte-sector dual-boot image boots by UEFI from a disk with 4 KiB logical blocks."""
    image = build_image(make_inputs(test_release, tmp_path, "v1.11.3", sector_size=4096), tmp_path)
    drive = [
        "-drive", f"file={image},format=raw,if=none,id=d0,snapshot=on",
        "-device", "virtio-blk-pci,drive=d0,logical_block_size=4096,physical_block_size=4096",
    ]  # fmt: skip
    check_boot(image, tmp_path, Firmware.UEFI, "v1.11.3", grub=False, drive=drive)


@pytest.mark.boot
def test_boot_secureboot_image(test_release: Release, tmp_path: Path) -> None:
    """sd-boot and the UKI signed with the ovmf package's snakeoil key boot with Secure Boot
    enforced from the disk image."""
    key = tmp_path / "snakeoil.key"
    subprocess.run(
        ["openssl", "rsa", "-in", "/usr/share/ovmf/PkKek-1-snakeoil.key", "-passin",
         "pass:snakeoil", "-out", key],
        check=True, capture_output=True,
    )  # fmt: skip
    keys = SecureBootKeys.load(key, Path("/usr/share/ovmf/PkKek-1-snakeoil.pem"))
    inputs = make_inputs(test_release, tmp_path, "v1.11.3", secureboot=True, signed_with=keys)
    image = build_image(inputs, tmp_path)
    report = check_boot(image, tmp_path, Firmware.UEFI_SECUREBOOT, "v1.11.3", grub=False)
    assert report.secureboot == "enabled"
