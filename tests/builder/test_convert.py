"""Disk image outputs (reference/talos-assets.md §10) checked with the tools that consume them.

qcow2 and VHD are read back with ``qemu-img info -f qcow2|vpc`` and compared with the raw image
by ``qemu-img compare``; the VHD footer is parsed by hand (cookie, fixed type, size). The OVA is
opened with ``tarfile`` (member order, digests in ``disk.mf``, the OVF's fields) and its VMDK
compared with the raw image. Compressed outputs are decompressed with the stock tools. The qcow2
and VHD conversions boot under OVMF.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from services.builder.formats.convert import compress, qemu_options, write_output
from services.builder.talos.paths import Compression, DiskFormat
from services.builder.tools import SOURCE_DATE_EPOCH
from tests.builder.test_disk import (
    MIB,
    build_image,
    check_boot,
    make_inputs,
    partitions,
    sfdisk_json,
)
from tests.release import Release
from tests.support.qemu import Firmware

DISK_MIB = 4247  # metal amd64 v1.11.3, dual-boot (§9.1)
OVF_NS = {
    "ovf": "http://schemas.dmtf.org/ovf/envelope/1",
    "rasd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData",
    "vssd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData",
}


@pytest.fixture(scope="module")
def raw_image(test_release: Release, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("raw")
    return build_image(make_inputs(test_release, work, "v1.11.3"), work)


def sparse_copy(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "--sparse=always", src, dst], check=True)
    return dst


def qemu_info(image: Path, fmt: str) -> dict[str, object]:
    out = subprocess.run(
        ["qemu-img", "info", "-f", fmt, "--output=json", image],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    info: dict[str, object] = json.loads(out)
    return info


def qemu_same(raw: Path, other: Path, fmt: str) -> None:
    subprocess.run(["qemu-img", "compare", "-q", "-f", "raw", "-F", fmt, raw, other], check=True)


def convert(raw: Path, tmp_path: Path, fmt: DiskFormat, options: str, name: str) -> Path:
    out = tmp_path / name
    write_output(
        sparse_copy(raw, tmp_path / "input.raw"), fmt, Compression.NONE, out, options=options,
        disk_size=raw.stat().st_size, work=tmp_path,
    )  # fmt: skip
    assert not (tmp_path / "input.raw").exists()
    return out


# --- formats ------------------------------------------------------------------------------------


def test_qcow2(raw_image: Path, tmp_path: Path) -> None:
    out = convert(raw_image, tmp_path, DiskFormat.QCOW2, "cluster_size=8k", "disk.qcow2")
    info = qemu_info(out, "qcow2")
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == DISK_MIB * MIB
    assert info["cluster-size"] == 8192
    assert out.stat().st_size < 64 * MIB
    qemu_same(raw_image, out, "qcow2")


def test_fixed_vhd(raw_image: Path, tmp_path: Path) -> None:
    out = convert(raw_image, tmp_path, DiskFormat.VHD, "subformat=fixed,force_size", "disk.vhd")
    info = qemu_info(out, "vpc")
    assert info["format"] == "vpc"
    assert info["virtual-size"] == DISK_MIB * MIB  # force_size: no CHS rounding
    # A fixed VHD is the raw data plus a 512-byte footer (cookie "conectix", type 2 = fixed).
    assert out.stat().st_size == DISK_MIB * MIB + 512
    with out.open("rb") as f:
        f.seek(-512, os.SEEK_END)
        footer = f.read()
    assert footer[:8] == b"conectix"
    assert int.from_bytes(footer[60:64], "big") == 2
    assert int.from_bytes(footer[48:56], "big") == DISK_MIB * MIB
    assert out.stat().st_blocks * 512 < 64 * MIB  # still sparse
    qemu_same(raw_image, out, "vpc")


def test_ova(raw_image: Path, tmp_path: Path) -> None:
    out = convert(raw_image, tmp_path, DiskFormat.OVA, "", "vmware-amd64.ova")
    with tarfile.open(out) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["disk.ovf", "disk.mf", "disk.vmdk"]
        assert all(m.uid == 0 and m.gid == 0 for m in members)
        data = {}
        for m in members[:2]:
            f = tar.extractfile(m)
            assert f is not None
            data[m.name] = f.read()
        tar.extract(members[2], tmp_path / "x", filter="data")
    vmdk = tmp_path / "x" / "disk.vmdk"
    digests = {
        "disk.ovf": hashlib.sha256(data["disk.ovf"]).hexdigest(),
        "disk.vmdk": hashlib.sha256(vmdk.read_bytes()).hexdigest(),
    }
    assert data["disk.mf"].decode() == (
        f"SHA256(disk.vmdk)= {digests['disk.vmdk']}\nSHA256(disk.ovf)= {digests['disk.ovf']}\n"
    )
    root = ET.fromstring(data["disk.ovf"])
    file_ref = root.find("ovf:References/ovf:File", OVF_NS)
    disk = root.find("ovf:DiskSection/ovf:Disk", OVF_NS)
    assert file_ref is not None and disk is not None
    q = "{" + OVF_NS["ovf"] + "}"
    assert file_ref.get(q + "href") == "disk.vmdk"
    assert file_ref.get(q + "size") == str(members[2].size)
    assert disk.get(q + "capacity") == str(DISK_MIB)
    assert disk.get(q + "capacityAllocationUnits") == "byte * 2^20"
    assert "streamOptimized" in (disk.get(q + "format") or "")
    hw = root.find("ovf:VirtualSystem/ovf:VirtualHardwareSection", OVF_NS)
    assert hw is not None
    assert hw.findtext("ovf:System/vssd:VirtualSystemType", namespaces=OVF_NS) == "vmx-15"
    items = {
        i.findtext("rasd:ResourceType", namespaces=OVF_NS): i
        for i in hw.findall("ovf:Item", OVF_NS)
    }
    assert items["3"].findtext("rasd:VirtualQuantity", namespaces=OVF_NS) == "2"  # vCPUs
    assert items["4"].findtext("rasd:VirtualQuantity", namespaces=OVF_NS) == "2048"  # MB
    assert items["10"].findtext("rasd:ResourceSubType", namespaces=OVF_NS) == "VmxNet3"
    prop = root.find("ovf:VirtualSystem/ovf:ProductSection/ovf:Property", OVF_NS)
    assert prop is not None and prop.get(q + "key") == "talos.config"
    info = qemu_info(vmdk, "vmdk")
    assert info["virtual-size"] == DISK_MIB * MIB
    specific = info["format-specific"]
    assert isinstance(specific, dict) and specific["data"]["create-type"] == "streamOptimized"
    qemu_same(raw_image, vmdk, "vmdk")


def test_qemu_options() -> None:
    assert qemu_options("subformat=fixed,force_size") == "subformat=fixed,force_size=on"
    assert qemu_options("cluster_size=8k") == "cluster_size=8k"
    assert qemu_options("") == ""


# --- compressors --------------------------------------------------------------------------------


def sparse_sample(path: Path) -> str:
    """A 64 MiB sparse file with a few MiB of data; returns its SHA-256."""
    with path.open("wb") as f:
        f.truncate(64 * MIB)
        for i, at in enumerate((0, 5 * MIB, 63 * MIB)):
            f.seek(at)
            f.write(hashlib.sha256(bytes([i])).digest() * 20000)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("compression", "decompress", "magic"),
    [
        (Compression.ZST, ["zstd", "-dc"], bytes.fromhex("28b52ffd")),
        (Compression.XZ, ["xz", "-dc"], b"\xfd7zXZ\x00"),
        (Compression.GZ, ["gzip", "-dc"], b"\x1f\x8b\x08"),
    ],
)
def test_compressors(
    tmp_path: Path, compression: Compression, decompress: list[str], magic: bytes
) -> None:
    src = tmp_path / "disk.raw"
    digest = sparse_sample(src)
    out = tmp_path / f"disk.raw{compression.suffix}"
    compress(src, compression, out, work=tmp_path)
    assert not src.exists()
    blob = out.read_bytes()
    assert blob.startswith(magic)
    if compression is Compression.GZ:  # --no-time / -n: no name, mtime 0
        assert blob[3] == 0 and blob[4:8] == bytes(4)
    plain = subprocess.run([*decompress, out], check=True, capture_output=True).stdout
    assert hashlib.sha256(plain).hexdigest() == digest


def test_gcp_tar_gz(test_release: Release, tmp_path: Path) -> None:
    inputs = make_inputs(test_release, tmp_path, "v1.11.3", platform="gcp",
                         compression=Compression.TAR_GZ)  # fmt: skip
    out = build_image(inputs, tmp_path, "gcp-amd64.raw.tar.gz")
    blob = out.read_bytes()
    assert blob[:3] == b"\x1f\x8b\x08" and blob[4:8] == bytes(4)
    assert len(blob) < 64 * MIB
    with tarfile.open(out, "r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["disk.raw"]
    member = members[0]
    assert member.size == 11193 * MIB  # 8192 + 1000 + 1 + 2000 (§9.1)
    assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
    assert member.mtime == SOURCE_DATE_EPOCH
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(["tar", "-xzf", out, "-C", dest], check=True)
    restored = dest / "disk.raw"
    assert restored.stat().st_blocks * 512 < 64 * MIB  # --sparse kept the holes
    assert [p["name"] for p in partitions(restored)] == ["EFI", "BIOS", "BOOT", "META"]


@pytest.mark.parametrize("compression", [Compression.XZ, Compression.ZST])
def test_metal_compressed(test_release: Release, tmp_path: Path, compression: Compression) -> None:
    """metal-amd64.raw.xz (v1.7 default) and .raw.zst (≥ 1.8 default) for v1.7.7, 1246 MiB."""
    inputs = make_inputs(test_release, tmp_path, "v1.7.7", compression=compression)
    out = build_image(inputs, tmp_path, f"metal-amd64.raw{compression.suffix}")
    assert out.stat().st_size < 64 * MIB
    tool = "xz" if compression is Compression.XZ else "zstd"
    restored = tmp_path / "restored.raw"
    with subprocess.Popen([tool, "-dc", out], stdout=subprocess.PIPE) as unpack:
        subprocess.run(["cp", "--sparse=always", "/dev/stdin", restored], stdin=unpack.stdout,
                       check=True)  # fmt: skip
    assert unpack.returncode == 0
    assert restored.stat().st_size == 1246 * MIB
    assert [p["name"] for p in partitions(restored)] == [
        "EFI", "BIOS", "BOOT", "META", "STATE", "EPHEMERAL"
    ]  # fmt: skip
    assert str(sfdisk_json(restored)["id"]).lower() == "d92d45b3-cde9-8760-be9f-a2a71fac8d11"


def test_failed_output_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "disk.raw"
    src.write_bytes(b"not a disk")
    out = tmp_path / "disk.qcow2"
    with pytest.raises(Exception, match="qemu-img"):
        write_output(src, DiskFormat.QCOW2, Compression.NONE, out, options="nonsense=1",
                     disk_size=10, work=tmp_path)  # fmt: skip
    assert not out.exists()


# --- boots --------------------------------------------------------------------------------------


@pytest.mark.boot
@pytest.mark.parametrize(("fmt", "qemu_format"), [(DiskFormat.QCOW2, "qcow2"),
                                                 (DiskFormat.VHD, "vpc")])  # fmt: skip
def test_boot_converted(
    test_release: Release, tmp_path: Path, fmt: DiskFormat, qemu_format: str
) -> None:
    inputs = make_inputs(test_release, tmp_path, "v1.11.3", disk_format=fmt)
    image = build_image(inputs, tmp_path, f"metal-amd64.{fmt.value}")
    assert qemu_info(image, qemu_format)["virtual-size"] == DISK_MIB * MIB
    check_boot(image, tmp_path, Firmware.UEFI, "v1.11.3", grub=False, fmt=qemu_format)
    shutil.rmtree(tmp_path / "scratch", ignore_errors=True)
