"""The cloud platforms the wizard offers, with upstream's labels, descriptions and docs pages.

This is presentation data of the web UI (upstream keeps the same table in its frontend): the
builder's own platform table decides what can be built; this one decides what a person is
shown. ``disk_image`` is the asset the final page links for the platform (``None`` for
platforms booted by ISO or PXE only), ``docs`` the path under the Talos docs of a version.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CLOUD_PLATFORMS", "CloudPlatform", "cloud_platform"]


@dataclass(frozen=True)
class CloudPlatform:
    name: str
    label: str
    description: str
    archs: tuple[str, ...]
    docs: str
    disk_image: str | None  # file suffix of the platform's disk image
    boot: tuple[str, ...] = ("disk-image",)
    min_version: tuple[int, int] = (0, 0)


_BOTH = ("amd64", "arm64")
_AMD64 = ("amd64",)

CLOUD_PLATFORMS: tuple[CloudPlatform, ...] = (
    CloudPlatform(
        "aws",
        "Amazon Web Services (AWS)",
        "Runs on AWS VMs booted from an AMI",
        _BOTH,
        "talos-guides/install/cloud-platforms/aws/",
        "raw.xz",
    ),
    CloudPlatform(
        "gcp",
        "Google Cloud (GCP)",
        "Runs on Google Cloud VMs booted from a disk image",
        _BOTH,
        "talos-guides/install/cloud-platforms/gcp/",
        "raw.tar.gz",
    ),
    CloudPlatform(
        "equinixMetal",
        "Equinix Metal",
        "Runs on Equinix Metal bare-metal servers",
        _BOTH,
        "talos-guides/install/bare-metal-platforms/equinix-metal/",
        None,
        ("pxe",),
    ),
    CloudPlatform(
        "azure",
        "Microsoft Azure",
        "Runs on Microsoft Azure Linux Virtual Machines",
        _BOTH,
        "talos-guides/install/cloud-platforms/azure/",
        "vhd.xz",
    ),
    CloudPlatform(
        "digital-ocean",
        "Digital Ocean",
        "Runs on Digital Ocean droplets",
        _AMD64,
        "talos-guides/install/cloud-platforms/digitalocean/",
        "raw.gz",
    ),
    CloudPlatform(
        "openstack",
        "OpenStack",
        "Runs on OpenStack virtual machines",
        _BOTH,
        "talos-guides/install/cloud-platforms/openstack/",
        "raw.xz",
        ("disk-image", "iso", "pxe"),
    ),
    CloudPlatform(
        "vmware",
        "VMWare",
        "Runs on VMWare ESXi virtual machines",
        _AMD64,
        "talos-guides/install/virtualized-platforms/vmware/",
        "ova",
        ("disk-image", "iso"),
    ),
    CloudPlatform(
        "akamai",
        "Akamai",
        "Runs on Akamai Cloud (Linode) virtual machines",
        _AMD64,
        "talos-guides/install/cloud-platforms/akamai/",
        "raw.gz",
        min_version=(1, 7),
    ),
    CloudPlatform(
        "hcloud",
        "Hetzner",
        "Runs on Hetzner virtual machines",
        _AMD64,
        "talos-guides/install/cloud-platforms/hetzner/",
        "raw.xz",
    ),
    CloudPlatform(
        "nocloud",
        "Nocloud",
        "Runs on various hypervisors supporting 'nocloud' metadata (Proxmox, Oxide Computer, etc.)",
        _BOTH,
        "talos-guides/install/cloud-platforms/nocloud/",
        "raw.xz",
        ("disk-image", "iso", "pxe"),
    ),
    CloudPlatform(
        "oracle",
        "Oracle Cloud",
        "Runs on Oracle Cloud virtual machines",
        _BOTH,
        "talos-guides/install/cloud-platforms/oracle/",
        "raw.xz",
    ),
    CloudPlatform(
        "upcloud",
        "UpCloud",
        "Runs on UpCloud virtual machines",
        _AMD64,
        "talos-guides/install/cloud-platforms/ucloud/",
        "raw.xz",
    ),
    CloudPlatform(
        "vultr",
        "Vultr",
        "Runs on Vultr Cloud Compute virtual machines",
        _AMD64,
        "talos-guides/install/cloud-platforms/vultr/",
        None,
        ("iso", "pxe"),
    ),
)

_BY_NAME = {p.name: p for p in CLOUD_PLATFORMS}


def cloud_platform(name: str) -> CloudPlatform | None:
    return _BY_NAME.get(name)
