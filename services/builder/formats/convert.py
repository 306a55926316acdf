"""Disk image outputs: format conversions, then compressors (talos-assets.md §10).

:func:`write_output` turns the finished raw image into the requested download, streaming
throughout — the image is never read into memory, and sparse files stay sparse:

* **raw** is moved (``cp --sparse=always`` when ``out`` is on another filesystem);
* **qcow2** / **vhd**: ``qemu-img convert -f raw -O qcow2|vpc -o <options>``; qemu-img skips
  zero clusters, so the output is sparse. ``-o`` comes from the platform (``cluster_size=8k``,
  ``subformat=fixed,force_size``); a bare flag such as ``force_size`` is passed as
  ``force_size=on``, the spelling current qemu requires;
* **ova**: a stream-optimised VMDK from ``qemu-img convert -O vmdk -o compat6,
  subformat=streamOptimized,adapter_type=lsilogic`` (``vmdk-convert``, which imager ≥ 1.11 uses,
  has no Debian package; this is imager 1.9's command), ``disk.ovf`` from this module's
  template (vmx-15, 2 vCPUs, 2048 MB, a VmxNet3 NIC, the ``talos.config`` guestinfo property,
  capacity = disk size in MiB), ``disk.mf`` with ``SHA256(<file>)= <hex>`` lines, and
  ``tar -cf`` of ``disk.ovf disk.mf disk.vmdk`` in that order.

Then the compressor: ``.zst`` ``zstd -T0 -18``, ``.xz`` ``xz -0 -T 0``, ``.gz`` ``gzip -6 -n``
(upstream runs ``pigz -6 --no-time``; same format, pigz is not installed here), and ``.tar.gz``:
the image renamed ``disk.raw`` (whatever its format, as upstream), ``tar --sparse --sort=name``
with owner 0 and ``SOURCE_DATE_EPOCH`` as mtime, piped through ``gzip -6 -n``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from pathlib import Path
from typing import BinaryIO

from services.builder.errors import BuildFailed
from services.builder.talos.paths import Compression, DiskFormat
from services.builder.tools import SOURCE_DATE_EPOCH, check_tools, feed, run

__all__ = [
    "OVA_VMDK_OPTIONS",
    "compress",
    "convert_disk",
    "move_sparse",
    "ova_descriptor",
    "qemu_options",
    "required_tools",
    "write_output",
]

OVA_VMDK_OPTIONS = "compat6,subformat=streamOptimized,adapter_type=lsilogic"
_QEMU_FORMATS = {DiskFormat.QCOW2: "qcow2", DiskFormat.VHD: "vpc"}
_MIB = 1 << 20
_CHUNK = 1 << 20
_TAR_OWNER = ("--owner=0", "--group=0", "--numeric-owner")

_OVF = """<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
    xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
    xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References>
    <File ovf:id="file1" ovf:href="disk.vmdk" ovf:size="{vmdk_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disks</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="{capacity_mib}"
        ovf:capacityAllocationUnits="byte * 2^20"
        ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>Logical networks</Info>
    <Network ovf:name="VM Network">
      <Description>VM Network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="talos">
    <Info>Talos Linux virtual machine</Info>
    <Name>talos</Name>
    <ProductSection ovf:required="false">
      <Info>Talos Linux</Info>
      <Property ovf:key="talos.config" ovf:type="string" ovf:userConfigurable="true" ovf:value="">
        <Label>Talos machine configuration</Label>
        <Description>Inline Talos machine configuration (base64)</Description>
      </Property>
    </ProductSection>
    <OperatingSystemSection ovf:id="101" vmw:osType="other3xLinux64Guest">
      <Info>Guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection ovf:transport="com.vmware.guestInfo">
      <Info>Virtual hardware</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>talos</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-15</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:ElementName>2 virtual CPUs</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>2</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:ElementName>2048 MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>2048</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""


def qemu_options(options: str) -> str:
    """``-o`` options with bare flags spelled ``flag=on`` (``force_size`` → ``force_size=on``)."""
    return ",".join(o if "=" in o else f"{o}=on" for o in options.split(",") if o)


def move_sparse(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``; across filesystems, copy keeping holes, then remove ``src``."""
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        run(["cp", "--sparse=always", "--", src, dst])
        src.unlink()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def ova_descriptor(vmdk_size: int, disk_size: int) -> str:
    """``disk.ovf`` for a VMDK of ``vmdk_size`` bytes holding a disk of ``disk_size`` bytes."""
    return _OVF.format(vmdk_size=vmdk_size, capacity_mib=disk_size // _MIB)


def _write_ova(raw: Path, out: Path, scratch: Path, disk_size: int) -> None:
    scratch.mkdir(parents=True, exist_ok=True)
    vmdk = scratch / "disk.vmdk"
    run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", OVA_VMDK_OPTIONS, raw, vmdk])
    ovf = ova_descriptor(vmdk.stat().st_size, disk_size).encode()
    (scratch / "disk.ovf").write_bytes(ovf)
    manifest = (
        f"SHA256(disk.vmdk)= {_sha256(vmdk)}\nSHA256(disk.ovf)= {hashlib.sha256(ovf).hexdigest()}\n"
    )
    (scratch / "disk.mf").write_text(manifest)
    run(
        [
            "tar", "-cf", out, "-C", scratch, *_TAR_OWNER, f"--mtime=@{SOURCE_DATE_EPOCH}",
            "disk.ovf", "disk.mf", "disk.vmdk",
        ]
    )  # fmt: skip
    for name in ("disk.vmdk", "disk.ovf", "disk.mf"):
        (scratch / name).unlink()


def convert_disk(
    raw: Path, disk_format: DiskFormat, out: Path, *, options: str, disk_size: int, work: Path
) -> None:
    """Convert the raw image into ``disk_format`` at ``out`` (raw: moved). ``options`` are the
    qemu-img ``-o`` options (ignored for raw and ova)."""
    match disk_format:
        case DiskFormat.RAW:
            move_sparse(raw, out)
        case DiskFormat.QCOW2 | DiskFormat.VHD:
            argv: list[str | os.PathLike[str]] = [
                "qemu-img", "convert", "-f", "raw", "-O", _QEMU_FORMATS[disk_format],
            ]  # fmt: skip
            if options:
                argv += ["-o", qemu_options(options)]
            run([*argv, raw, out])
        case DiskFormat.OVA:
            _write_ova(raw, out, work / "ova", disk_size)


def _tar_gz(image: Path, out: Path, work: Path) -> None:
    staging = work / "tar-gz"
    staging.mkdir(parents=True, exist_ok=True)
    member = staging / "disk.raw"
    os.replace(image, member)
    tar: list[str | os.PathLike[str]] = [
        "tar", "-cf", "-", "-C", staging, "--sparse", "--sort=name", *_TAR_OWNER,
        f"--mtime=@{SOURCE_DATE_EPOCH}", "disk.raw",
    ]  # fmt: skip

    def produce(pipe: BinaryIO) -> None:
        run(tar, stdout=pipe)

    feed(["gzip", "-6", "-n"], produce, stdout=out)
    member.unlink()


def compress(image: Path, compression: Compression, out: Path, *, work: Path) -> None:
    """Compress ``image`` into ``out`` and remove ``image`` (``none``: moved)."""
    match compression:
        case Compression.NONE:
            move_sparse(image, out)
            return
        case Compression.ZST:
            run(["zstd", "-T0", "--rm", "-18", "--quiet", "--force", "-o", out, image])
            return
        case Compression.XZ:
            run(["xz", "-0", "-T", "0", "-c", image], stdout=out)
        case Compression.GZ:
            run(["gzip", "-6", "-n", "-c", image], stdout=out)
        case Compression.TAR_GZ:
            _tar_gz(image, out, work)
            return
    image.unlink()


_FORMAT_TOOLS = {
    DiskFormat.RAW: (),
    DiskFormat.QCOW2: ("qemu-img",),
    DiskFormat.VHD: ("qemu-img",),
    DiskFormat.OVA: ("qemu-img", "tar"),
}
_COMPRESSION_TOOLS = {
    Compression.NONE: (),
    Compression.ZST: ("zstd",),
    Compression.XZ: ("xz",),
    Compression.GZ: ("gzip",),
    Compression.TAR_GZ: ("tar", "gzip"),
}


def required_tools(disk_format: DiskFormat, compression: Compression) -> tuple[str, ...]:
    """The tools :func:`write_output` runs for this format and compression."""
    return (*_FORMAT_TOOLS[disk_format], *_COMPRESSION_TOOLS[compression])


def write_output(
    raw: Path,
    disk_format: DiskFormat,
    compression: Compression,
    out: Path,
    *,
    options: str,
    disk_size: int,
    work: Path,
) -> None:
    """The download at ``out`` from the raw image ``raw``, which is consumed (module docstring).

    On failure ``out`` is removed. Raises ``ToolError``/``BuildFailed``.
    """
    check_tools(required_tools(disk_format, compression))
    converted = raw if disk_format is DiskFormat.RAW else work / f"disk.{disk_format.value}"
    try:
        if converted != raw:
            convert_disk(
                raw, disk_format, converted, options=options, disk_size=disk_size, work=work
            )
            raw.unlink()
        compress(converted, compression, out, work=work)
    except BaseException:
        with contextlib.suppress(OSError):
            out.unlink()
        raise
    if not out.is_file():
        raise BuildFailed(f"disk image output {out} was not written")
