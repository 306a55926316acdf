"""The asset path grammar (reference/api.md §7), the platform table (§8.1, §7.3), error texts."""

from __future__ import annotations

import pytest

from image_service.errors import InvalidInput, Overloaded, Unsupported
from image_service.versions import Version
from services.builder.errors import (
    BuildError,
    BuildFailed,
    BuildOverloaded,
    InvalidPath,
    InvalidProfile,
    KindNotBuilt,
    go_quote,
)
from services.builder.talos.paths import (
    Arch,
    AssetKind,
    AssetRequest,
    Compression,
    DiskFormat,
    parse_path,
)
from services.builder.talos.platforms import PLATFORMS, BootMethod, get_platform

K = AssetKind
AMD, ARM = Arch.AMD64, Arch.ARM64
NONE = Compression.NONE

# api.md §7.4, every row: path → (kind, platform, arch, secure boot, disk format, compression).
WORKED_EXAMPLES = [
    ("kernel-amd64", K.KERNEL, "metal", AMD, False, None, NONE),
    ("kernel-x86_64", K.KERNEL, "metal", AMD, False, None, NONE),
    ("cmdline-metal-arm64", K.CMDLINE, "metal", ARM, False, None, NONE),
    ("cmdline-aws-amd64-secureboot", K.CMDLINE, "aws", AMD, True, None, NONE),
    ("initramfs-arm64.xz", K.INITRAMFS, "metal", ARM, False, None, NONE),
    ("metal-amd64.iso", K.ISO, "metal", AMD, False, None, NONE),
    ("metal-amd64-secureboot.iso", K.ISO, "metal", AMD, True, None, NONE),
    ("metal-amd64-secureboot-uki.efi", K.UKI, "metal", AMD, True, None, NONE),
    ("metal-arm64-uki.efi", K.UKI, "metal", ARM, False, None, NONE),
    ("installer-amd64.tar", K.INSTALLER, "metal", AMD, False, None, NONE),
    ("installer-arm64-secureboot.tar", K.INSTALLER, "metal", ARM, True, None, NONE),
    ("metal-installer-amd64.tar", K.INSTALLER, "metal", AMD, False, None, NONE),
    ("digital-ocean-installer-amd64.tar", K.INSTALLER, "digital-ocean", AMD, False, None, NONE),
    ("metal-amd64.raw.zst", K.IMAGE, "metal", AMD, False, DiskFormat.RAW, Compression.ZST),
    ("metal-arm64.raw.xz", K.IMAGE, "metal", ARM, False, DiskFormat.RAW, Compression.XZ),
    ("metal-amd64-secureboot.raw.xz", K.IMAGE, "metal", AMD, True, DiskFormat.RAW, Compression.XZ),
    ("aws-amd64.raw.xz", K.IMAGE, "aws", AMD, False, DiskFormat.RAW, Compression.XZ),
    ("gcp-amd64.raw.tar.gz", K.IMAGE, "gcp", AMD, False, DiskFormat.RAW, Compression.TAR_GZ),
    (
        "digital-ocean-amd64.raw.gz",
        K.IMAGE,
        "digital-ocean",
        AMD,
        False,
        DiskFormat.RAW,
        Compression.GZ,
    ),
    ("azure-amd64.vhd.xz", K.IMAGE, "azure", AMD, False, DiskFormat.VHD, Compression.XZ),
    ("openstack-arm64.qcow2", K.IMAGE, "openstack", ARM, False, DiskFormat.QCOW2, NONE),
    ("vmware-amd64.ova", K.IMAGE, "vmware", AMD, False, DiskFormat.OVA, NONE),
]


@pytest.mark.parametrize(
    ("path", "kind", "platform", "arch", "secureboot", "disk_format", "compression"),
    WORKED_EXAMPLES,
    ids=[row[0] for row in WORKED_EXAMPLES],
)
def test_worked_examples(
    path: str,
    kind: AssetKind,
    platform: str,
    arch: Arch,
    secureboot: bool,
    disk_format: DiskFormat | None,
    compression: Compression,
) -> None:
    assert parse_path(path) == AssetRequest(
        kind, platform, arch, secureboot, disk_format, compression
    )


PREFIX = "error parsing profile from path: "


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        # api.md §7.4 failing paths, §6.3 and §7.2.
        ("metal-amd64.xz", 'invalid profile path: "metal-amd64"'),
        ("initramfs-amd64", 'invalid profile path: "initramfs-amd64"'),
        ("cmdline-metal", 'invalid platform-arch: "metal"'),
        ("kernel-riscv64", 'invalid architecture: "riscv64"'),
        ("metal-amd64.img", 'invalid profile path: "metal-amd64.img"'),
        ("metal-rpi_generic-arm64.raw.xz", 'invalid architecture: "rpi_generic-arm64"'),
        ("kernel-foo", 'invalid architecture: "foo"'),
        # The suffix lands inside the arch for kernel and initramfs (§7.5).
        ("kernel-amd64-secureboot", 'invalid architecture: "amd64-secureboot"'),
        ("initramfs-amd64-secureboot.xz", 'invalid architecture: "amd64-secureboot"'),
        ("installer-riscv64.tar", 'invalid architecture: "riscv64"'),
        ("metal-installer-riscv64-secureboot.tar", 'invalid architecture: "riscv64"'),
        ("metal.iso", 'invalid platform-arch: "metal"'),
        ("metal-secureboot.iso", 'invalid platform-arch: "metal"'),
        ("-uki.efi", 'invalid platform-arch: ""'),
        ("", 'invalid profile path: ""'),
        ("metal-amd64.vmdk", 'invalid profile path: "metal-amd64.vmdk"'),
        ("metal-amd64.raw.bz2", 'invalid profile path: "metal-amd64.raw.bz2"'),
        # Compression comes off first, then the format must be right before it.
        ("metal-amd64.zst.raw", 'invalid architecture: "amd64.zst"'),
        ("digital-ocean.raw.gz", 'invalid architecture: "ocean"'),
        ("aws-amd64-Secureboot.raw.xz", 'invalid architecture: "amd64-Secureboot"'),
        # Go %q quoting of the offending input.
        ('kernel-"x\\', 'invalid architecture: "\\"x\\\\"'),
        ("kernel-\t\x7f", 'invalid architecture: "\\t\\x7f"'),
        ("kernel-é", 'invalid architecture: "é"'),
    ],
)
def test_invalid_paths(path: str, detail: str) -> None:
    with pytest.raises(InvalidPath) as caught:
        parse_path(path)
    assert str(caught.value) == PREFIX + detail
    assert caught.value.detail == detail
    assert isinstance(caught.value, InvalidInput)


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        # Improvement over upstream (api.md §15.4): unknown platforms fail at parse time...
        ("foo-amd64.iso", 'invalid platform: "foo"'),
        ("cmdline-foo-arm64", 'invalid platform: "foo"'),
        ("foo-amd64-secureboot-uki.efi", 'invalid platform: "foo"'),
        ("foo-installer-amd64.tar", 'invalid platform: "foo"'),
        ("digital-amd64.raw.gz", 'invalid platform: "digital"'),
        ("Metal-amd64.raw.xz", 'invalid platform: "Metal"'),
        ("-installer-amd64.tar", 'invalid platform: ""'),
        ("-amd64.raw.xz", 'invalid platform: ""'),
        # ...but only after the arch, so upstream's own texts win where upstream fails too.
        ("foo-riscv64.iso", 'invalid architecture: "riscv64"'),
        ("foo-bar-installer-amd64.tar", 'invalid architecture: "bar-amd64"'),
    ],
)
def test_platform_is_validated_after_the_arch(path: str, detail: str) -> None:
    with pytest.raises(InvalidPath) as caught:
        parse_path(path)
    assert str(caught.value) == PREFIX + detail


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("kernel-x86_64", "kernel-amd64"),
        ("kernel-i386", "kernel-amd64"),
        ("initramfs-x86_64.xz", "initramfs-amd64.xz"),
        ("cmdline-metal-i386", "cmdline-metal-amd64"),
        ("metal-x86_64.iso", "metal-amd64.iso"),
        ("metal-i386-secureboot-uki.efi", "metal-amd64-secureboot-uki.efi"),
        ("installer-x86_64-secureboot.tar", "installer-amd64-secureboot.tar"),
        ("metal-installer-i386.tar", "installer-amd64.tar"),
        ("aws-installer-x86_64.tar", "aws-installer-amd64.tar"),
        ("digital-ocean-x86_64.raw.gz", "digital-ocean-amd64.raw.gz"),
        ("nocloud-i386-secureboot.raw.zst", "nocloud-amd64-secureboot.raw.zst"),
    ],
)
def test_arch_aliases_normalise_to_amd64(path: str, canonical: str) -> None:
    request = parse_path(path)
    assert request.arch is Arch.AMD64
    assert request.canonical_path == canonical


@pytest.mark.parametrize("path", [row[0] for row in WORKED_EXAMPLES if "x86_64" not in row[0]])
def test_canonical_path_round_trips(path: str) -> None:
    request = parse_path(path)
    expected = "installer-amd64.tar" if path == "metal-installer-amd64.tar" else path
    assert request.canonical_path == expected
    assert parse_path(request.canonical_path) == request


def test_platform_installer_for_other_platforms_keeps_platform() -> None:
    request = parse_path("aws-installer-arm64-secureboot.tar")
    assert request == AssetRequest(K.INSTALLER, "aws", ARM, secureboot=True)


def test_any_compression_with_any_format() -> None:
    # The output format always comes from the path (api.md §7.3).
    assert parse_path("aws-amd64.raw.zst").compression is Compression.ZST
    assert parse_path("azure-amd64.vhd").compression is Compression.NONE
    assert parse_path("vmware-arm64.ova.gz").disk_format is DiskFormat.OVA
    assert parse_path("metal-amd64.qcow2.tar.gz").compression is Compression.TAR_GZ


def test_initramfs_without_xz_falls_through_to_disk_rule() -> None:
    # "initramfs-<platform>-<arch>.raw" is a (weird, but upstream-valid) disk image path.
    with pytest.raises(InvalidPath, match='invalid platform: "initramfs"'):
        parse_path("initramfs-amd64.raw")


def test_every_table_platform_parses() -> None:
    for name in PLATFORMS:
        assert parse_path(f"{name}-arm64.raw.xz").platform == name


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("foo", '"foo"'),
        ('a"b\\c', '"a\\"b\\\\c"'),
        ("\n\r\t\a\b\f\v", '"\\n\\r\\t\\a\\b\\f\\v"'),
        ("\x00\x1b", '"\\x00\\x1b"'),
        ("\u00a0\u200b", '"\\u00a0\\u200b"'),
        ("\U000e0001", '"\\U000e0001"'),
        ("日本", '"日本"'),
        ("\udcff", '"\\xff"'),
    ],
)
def test_go_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted


# --- platform table ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "size_mib", "options"),
    [
        # api.md §7.3 / talos-assets.md §11.
        ("metal", 1246, {DiskFormat.QCOW2: "cluster_size=8k"}),
        ("nocloud", 1246, {}),
        ("hcloud", 1246, {}),
        ("opennebula", 1246, {}),
        ("openstack", 1246, {DiskFormat.QCOW2: "cluster_size=8k"}),
        ("scaleway", 1246, {}),
        ("akamai", 1246, {}),
        ("alibabacloud", 1246, {DiskFormat.QCOW2: "cluster_size=8k"}),
        ("exoscale", 10240, {DiskFormat.QCOW2: "cluster_size=8k"}),
        ("oracle", 8192, {DiskFormat.QCOW2: "cluster_size=8k"}),
        ("azure", 8192, {DiskFormat.VHD: "subformat=fixed,force_size"}),
        ("aws", 8192, {DiskFormat.VHD: ""}),
        ("gcp", 8192, {}),
        ("digital-ocean", 8192, {}),
        ("vmware", 8192, {DiskFormat.OVA: ""}),
        ("equinixMetal", 8192, {}),
        ("vultr", 8192, {}),
    ],
)
def test_disk_defaults(platform: str, size_mib: int, options: dict[DiskFormat, str]) -> None:
    spec = get_platform(platform)
    assert spec is not None
    assert spec.disk_size_mib == size_mib
    for disk_format in DiskFormat:
        expected = options.get(
            disk_format, "cluster_size=8k" if disk_format is DiskFormat.QCOW2 else ""
        )
        assert spec.disk_options(disk_format) == expected


def test_azure_vhd_options_do_not_leak_into_other_formats() -> None:
    azure = get_platform("azure")
    assert azure is not None
    assert azure.disk_options(DiskFormat.QCOW2) == "cluster_size=8k"
    assert azure.disk_options(DiskFormat.RAW) == ""


def test_platform_table_ui_columns() -> None:
    # api.md §8.1.
    assert set(PLATFORMS) == {
        "metal", "aws", "gcp", "equinixMetal", "azure", "digital-ocean", "nocloud",
        "openstack", "vmware", "akamai", "cloudstack", "hcloud", "oracle", "upcloud",
        "vultr", "exoscale", "opennebula", "scaleway", "alibabacloud",
    }  # fmt: skip
    suffixes = {name: spec.default_disk_suffix for name, spec in PLATFORMS.items()}
    assert suffixes["metal"] == "raw.zst"
    assert suffixes["gcp"] == "raw.tar.gz"
    assert suffixes["azure"] == "vhd.xz"
    assert suffixes["vmware"] == "ova"
    assert suffixes["equinixMetal"] is None
    assert suffixes["vultr"] is None
    secureboot = {name for name, spec in PLATFORMS.items() if spec.secureboot}
    assert secureboot == {"metal", "azure", "nocloud", "cloudstack"}
    amd64_only = {name for name, spec in PLATFORMS.items() if spec.arches == (Arch.AMD64,)}
    assert amd64_only == {"digital-ocean", "akamai", "hcloud", "upcloud", "vultr"}
    assert PLATFORMS["equinixMetal"].boot_methods == {BootMethod.PXE}
    assert PLATFORMS["metal"].boot_methods == set(BootMethod)


@pytest.mark.parametrize(
    ("platform", "version", "offered"),
    [
        ("akamai", "1.6.7", False),
        ("akamai", "1.7.0", True),
        ("cloudstack", "1.8.0-alpha.1", False),
        ("cloudstack", "1.8.0-alpha.2", True),
        ("exoscale", "1.2.9", False),
        ("exoscale", "1.3.0", True),
        ("metal", "1.2.0", True),
    ],
)
def test_minimum_versions(platform: str, version: str, offered: bool) -> None:
    spec = get_platform(platform)
    assert spec is not None
    assert spec.offered_for(Version.parse(version)) is offered


# --- error texts and hierarchy (api.md §2.3, §2.4) ---------------------------------------


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (InvalidProfile.secureboot_disabled(),
         "error enhancing profile from schematic: secure boot is disabled"),
        (InvalidProfile.overlay_unsupported(Version.parse("1.6.7")),
         "error enhancing profile from schematic: overlay is not supported for Talos version "
         "v1.6.7"),
        (InvalidProfile.embedded_config_unsupported(Version.parse("v1.11.3")),
         "error enhancing profile from schematic: embedding configuration is not supported for "
         "Talos version v1.11.3"),
        (InvalidProfile.extension_unavailable("siderolabs/foo", Version.parse("1.12.0-beta.1")),
         'error enhancing profile from schematic: official extension "siderolabs/foo" is not '
         "available for Talos version v1.12.0-beta.1"),
        # Upstream prints an empty struct here (api.md §15.13); we name the overlay.
        (InvalidProfile.overlay_unavailable("rpi_9", Version.parse("1.11.3")),
         'error enhancing profile from schematic: official overlay "rpi_9" is not available for '
         "Talos version v1.11.3"),
    ],
)  # fmt: skip
def test_invalid_profile_texts(error: InvalidProfile, text: str) -> None:
    assert str(error) == text
    assert isinstance(error, InvalidInput)
    assert isinstance(error, BuildError)


def test_other_errors_map_by_category() -> None:
    not_built = KindNotBuilt("iso")
    assert isinstance(not_built, Unsupported)
    assert "iso" in str(not_built)
    assert not_built.kind == "iso"
    assert isinstance(BuildOverloaded(), Overloaded)
    failed = BuildFailed("mkfs.xfs exited with 1")
    assert isinstance(failed, BuildError)
    assert not isinstance(failed, InvalidInput | Unsupported | Overloaded)
