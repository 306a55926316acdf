"""The version-quirks table (reference/talos-assets.md §15) and bootloader selection (§6)."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from image_service.errors import InvalidInput
from image_service.versions import Version
from services.builder.errors import InvalidProfile
from services.builder.talos.quirks import (
    Bootloader,
    Compressor,
    Quirks,
    quirks_for,
    select_bootloader,
)


def q(version: str | None) -> Quirks:
    return quirks_for(None if version is None else Version.parse(version))


# (field, version, expected) at the versions either side of each gate; None means "latest".
GATES: list[tuple[str, str | None, object]] = [
    ("grub_reset_entry", "1.3.5", False),
    ("grub_reset_entry", "1.4.0", True),
    ("supports_uki", "1.4.8", False),
    ("supports_uki", "1.5.0", True),
    ("supports_secureboot", "1.4.8", False),
    ("supports_secureboot", "1.5.0-alpha.0", True),
    ("compress_meta", "1.6.2", False),
    ("compress_meta", "1.6.3", True),
    ("compress_meta", "1.7.7", True),
    ("supports_overlays", "1.6.7", False),
    ("supports_overlays", "1.7.0-alpha.1", True),
    ("supports_overlays", "1.7.7", True),
    ("schematic_extra_info", "1.6.7", False),
    ("schematic_extra_info", "1.7.7", True),
    ("initramfs_compression", "1.7.7", Compressor.XZ),
    ("initramfs_compression", "1.8.0", Compressor.ZSTD),
    ("initramfs_compressor_argv", "1.7.7",
     ("xz", "-v", "-C", "crc32", "-0", "-e", "-T", "0", "-z", "--quiet")),
    ("initramfs_compressor_argv", "1.8.0", ("zstd", "-T0", "-18", "-c", "--quiet")),
    ("squashfs_compression_args", "1.7.7", ("-comp", "xz", "-Xdict-size", "100%")),
    ("squashfs_compression_args", "1.8.0", ("-comp", "zstd", "-Xcompression-level", "18")),
    ("squashfs_selinux_labels", "1.12.0-beta.1", False),
    ("squashfs_selinux_labels", "1.13.0", True),
    ("metal_amd64_console_ttys0", "1.7.7", True),
    ("metal_amd64_console_ttys0", "1.8.0", False),
    ("metal_amd64_console_ttys0", None, False),
    ("iso_halt_if_installed", "1.7.7", False),
    ("iso_halt_if_installed", "1.8.0-alpha.0", True),
    ("iso_volume_label", "1.7.7", False),
    ("iso_volume_label", "1.8.0", True),
    ("data_partitions_in_image", "1.7.7", True),
    ("data_partitions_in_image", "1.8.0", False),
    ("firmware_path", "1.9.5", "/lib/firmware"),
    ("firmware_path", "1.10.0-alpha.1", "/usr/lib/firmware"),
    ("kernel_modules_path", "1.9.5", "/lib/modules"),
    ("kernel_modules_path", "1.10.0", "/usr/lib/modules"),
    ("unified_installer", "1.9.5", False),
    ("unified_installer", "1.10.0-alpha.1", True),
    ("installer_base_repository", "1.9.5", "installer"),
    ("installer_base_repository", "1.11.3", "installer-base"),
    ("uki_profiles", "1.9.5", False),
    ("uki_profiles", "1.10.0", True),
    ("bakes_extra_kernel_args", "1.9.5", False),
    ("bakes_extra_kernel_args", "1.10.0-alpha.1", True),
    ("selinux", "1.9.5", False),
    ("selinux", "1.10.0-alpha.1", True),
    ("bootloader_meta_key", "1.9.5", False),
    ("bootloader_meta_key", "1.10.0", True),
    ("default_bootloader_amd64", "1.9.5", Bootloader.GRUB),
    ("default_bootloader_amd64", "1.10.0-alpha.1", Bootloader.DUAL_BOOT),
    ("default_bootloader_arm64", "1.9.5", Bootloader.GRUB),
    ("default_bootloader_arm64", "1.10.0", Bootloader.SD_BOOT),
    ("ima_args", "1.10.7", True),
    ("ima_args", "1.11.0-alpha.0", False),
    ("ima_args", "1.11.3", False),
    ("ima_args", None, False),
    ("iso_always_hybrid", "1.9.5", False),
    ("iso_always_hybrid", "1.10.0", True),
    ("iso_always_hybrid", "1.11.3", True),
    ("iso_always_hybrid", "1.12.0-beta.1", False),
    ("iso_honours_bootloader", "1.11.3", False),
    ("iso_honours_bootloader", "1.12.0-beta.1", True),
    ("boot_partition_mib", "1.10.7", 1000),
    ("boot_partition_mib", "1.11.0", 2000),
    ("module_sig_enforce", "1.11.3", False),
    ("module_sig_enforce", "1.12.0-beta.1", True),
    ("embedded_config", "1.11.3", False),
    ("embedded_config", "1.12.0-alpha.2", True),
    ("proc_mem_force_override", "1.12.5", False),
    ("proc_mem_force_override", "1.13.0", True),
    ("xfs_mkfs_config", "1.7.7", "lts_6.1.conf"),
    ("xfs_mkfs_config", "1.8.0", "lts_6.6.conf"),
    ("xfs_mkfs_config", "1.9.5", "lts_6.6.conf"),
    ("xfs_mkfs_config", "1.10.0-alpha.1", "lts_6.12.conf"),
    ("xfs_mkfs_config", "1.12.0-beta.1", "lts_6.12.conf"),
    ("xfs_mkfs_config", "1.13.9", "lts_6.18.conf"),
    ("init_on_alloc", "1.13.9", True),
    ("init_on_alloc", "1.14.0-alpha.0", False),
    ("nvme_io_timeout_aws_only", "1.13.9", False),
    ("nvme_io_timeout_aws_only", "1.14.0", True),
    ("secureboot_lockdown", "1.13.9", True),
    ("secureboot_lockdown", "1.14.0-alpha.1", False),
    ("xfs_concurrency", "1.13.9", False),
    ("xfs_concurrency", "1.14.0", True),
    ("disk_image_secureboot_enroll", "1.13.9", False),
    ("disk_image_secureboot_enroll", "1.14.0", True),
]  # fmt: skip


@pytest.mark.parametrize(("field", "version", "expected"), GATES)
def test_gates(field: str, version: str | None, expected: object) -> None:
    assert getattr(q(version), field) == expected


def test_every_field_has_a_gate_test() -> None:
    tested = {field for field, _, _ in GATES}
    assert tested == {f.name for f in dataclasses.fields(Quirks)}


@pytest.mark.parametrize("version", ["1.7.7", "1.11.3", "1.12.0-beta.1"])
def test_test_release_versions(version: str) -> None:
    quirks = q(version)
    expected = {
        "1.7.7": (Compressor.XZ, True, False, False, "/lib/firmware"),
        "1.11.3": (Compressor.ZSTD, False, True, False, "/usr/lib/firmware"),
        "1.12.0-beta.1": (Compressor.ZSTD, False, True, True, "/usr/lib/firmware"),
    }[version]
    assert (
        quirks.initramfs_compression,
        quirks.ima_args,
        quirks.selinux,
        quirks.module_sig_enforce,
        quirks.firmware_path,
    ) == expected


def test_only_the_core_version_counts() -> None:
    assert q("1.10.0-alpha.1") == q("1.10.0") == q("1.10.0+build.7")
    assert q("1.10.0-alpha.1") != q("1.9.99")


def test_unparsable_version_is_the_latest() -> None:
    latest = quirks_for(Version.parse_tolerant("latest"))
    assert latest == q(None) == q("99.0.0")
    assert latest.supports_uki and latest.embedded_config and not latest.ima_args


def test_field_types_match_annotations() -> None:
    hints = typing.get_type_hints(Quirks)
    for version in ("1.2.0", "1.7.7", "1.10.0", "1.14.0", None):
        quirks = q(version)
        for field in dataclasses.fields(Quirks):
            value = getattr(quirks, field.name)
            origin = typing.get_origin(hints[field.name]) or hints[field.name]
            assert isinstance(value, origin), (field.name, version)
            if origin is tuple:
                assert all(isinstance(item, str) for item in value)


@pytest.mark.parametrize(("version", "efi"), [("1.10.7", 1101), ("1.11.3", 2101)])
def test_uki_efi_partition(version: str, efi: int) -> None:
    assert q(version).uki_efi_partition_mib == efi


# --- bootloader selection (talos-assets §6) -----------------------------------------------


@pytest.mark.parametrize(
    ("version", "arch", "secureboot", "requested", "iso", "expected"),
    [
        ("1.9.5", "amd64", False, None, False, Bootloader.GRUB),
        ("1.9.5", "arm64", False, None, False, Bootloader.GRUB),
        ("1.9.5", "amd64", True, None, False, Bootloader.SD_BOOT),
        ("1.11.3", "amd64", False, None, False, Bootloader.DUAL_BOOT),
        ("1.11.3", "arm64", False, None, False, Bootloader.SD_BOOT),
        ("1.11.3", "amd64", False, "none", False, Bootloader.DUAL_BOOT),
        ("1.11.3", "amd64", False, "", False, Bootloader.DUAL_BOOT),
        ("1.11.3", "amd64", False, "grub", False, Bootloader.GRUB),
        ("1.11.3", "arm64", False, "grub", False, Bootloader.GRUB),
        ("1.11.3", "amd64", True, "grub", False, Bootloader.SD_BOOT),
        ("1.11.3", "amd64", True, "dual-boot", False, Bootloader.SD_BOOT),
        # ISOs honour the schematic only from 1.12.
        ("1.11.3", "amd64", False, "grub", True, Bootloader.DUAL_BOOT),
        ("1.12.0-beta.1", "amd64", False, "grub", True, Bootloader.GRUB),
        ("1.12.0-beta.1", "amd64", False, "sd-boot", True, Bootloader.SD_BOOT),
        ("1.12.0-beta.1", "arm64", False, None, True, Bootloader.SD_BOOT),
        ("1.7.7", "amd64", False, "sd-boot", False, Bootloader.SD_BOOT),
    ],
)
def test_select_bootloader(
    version: str,
    arch: str,
    secureboot: bool,
    requested: str | None,
    iso: bool,
    expected: Bootloader,
) -> None:
    chosen = select_bootloader(
        q(version), arch, secureboot=secureboot, requested=requested, iso=iso
    )
    assert chosen is expected


@pytest.mark.parametrize(
    ("requested", "message"),
    [
        ("dual-boot", 'bootloader "dual-boot" is not supported on arm64'),
        ("lilo", 'bootloader "lilo" is not supported on arm64'),
    ],
)
def test_select_bootloader_rejects(requested: str, message: str) -> None:
    with pytest.raises(InvalidProfile) as caught:
        select_bootloader(q("1.11.3"), "arm64", secureboot=False, requested=requested)
    assert str(caught.value) == "error enhancing profile from schematic: " + message
    assert isinstance(caught.value, InvalidInput)
