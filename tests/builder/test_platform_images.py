"""Every platform of the reference table has a disk image: its default path parses, and the
planner lays the disk out (api.md §8.1 default suffixes, §7.3 sizes)."""

from __future__ import annotations

import pytest

from image_service.versions import Version
from services.builder.formats.disk import plan_layout
from services.builder.talos.paths import AssetKind, parse_path
from services.builder.talos.platforms import PLATFORMS
from services.builder.talos.quirks import quirks_for, select_bootloader

# Default disk path suffixes from reference/api.md §8.1 (platforms with a disk image).
DEFAULT_SUFFIXES = {
    "metal": "raw.zst",
    "aws": "raw.xz",
    "gcp": "raw.tar.gz",
    "azure": "vhd.xz",
    "digital-ocean": "raw.gz",
    "nocloud": "raw.xz",
    "openstack": "raw.xz",
    "vmware": "ova",
    "akamai": "raw.gz",
    "cloudstack": "raw.gz",
    "hcloud": "raw.xz",
    "oracle": "qcow2",
    "upcloud": "raw.xz",
    "exoscale": "qcow2",
    "opennebula": "raw.zst",
    "scaleway": "raw.zst",
}
# Base sizes from §7.3: "min" 1246 MiB, exoscale 10 GiB, everything else 8192 MiB.
BASE_MIB = {
    "metal": 1246,
    "akamai": 1246,
    "hcloud": 1246,
    "nocloud": 1246,
    "opennebula": 1246,
    "openstack": 1246,
    "scaleway": 1246,
    "exoscale": 10240,
}


@pytest.mark.parametrize(("platform", "suffix"), sorted(DEFAULT_SUFFIXES.items()))
def test_default_disk_image_is_planned(platform: str, suffix: str) -> None:
    assert PLATFORMS[platform].default_disk_suffix == suffix
    request = parse_path(f"{platform}-amd64.{suffix}")
    assert request.kind is AssetKind.IMAGE
    assert request.platform == platform
    base = BASE_MIB.get(platform, 8192)
    assert PLATFORMS[platform].disk_size_mib == base
    quirks = quirks_for(Version.parse("v1.11.3"))
    bootloader = select_bootloader(quirks, "amd64", secureboot=False)
    layout = plan_layout(quirks, request.arch, bootloader, base_size_mib=base)
    assert [p.label for p in layout.partitions] == ["EFI", "BIOS", "BOOT", "META"]
    # the boot partitions are added on top of the platform's base size (talos-assets §9.1)
    assert layout.disk_size_mib > base
