"""GUID partition tables written into a disk image file, without any tool (talos-assets.md §9.3).

sfdisk cannot create a 4096-byte-sector table on a regular file (it always uses the file's
512-byte "device" sector size), so the table is written here. :func:`place` lays partitions out
in order, each starting on a 1 MiB boundary, the last one optionally filling the disk;
:func:`write_gpt` writes the protective MBR's partition record, the primary header and entry
array, and the backup array and header at the end of the disk. Nothing else of the file is
touched: boot code in the MBR (GRUB's ``boot.img``) and blobs an overlay installer put before
the entry array stay where they are.

Layout, with ``n`` the number of sectors the 128 entries of 128 bytes take (32 for 512-byte
sectors, 4 for 4096-byte ones) and ``skip`` the overlay's ``partitionOptions.offset``::

    LBA 0                 protective MBR: one 0xEE record from LBA 1, not bootable
    LBA 1                 primary header
    LBA 2 + skip          primary entries (n sectors); first usable LBA right after them
    last - n .. last - 1  backup entries; the last usable LBA is just before them
    last                  backup header

GUIDs are written in the mixed-endian GPT encoding (``UUID.bytes_le``). Partition and disk
GUIDs come from :func:`guid_from_label`, upstream's name-based ``GUIDFromLabel``.
"""

from __future__ import annotations

import hashlib
import os
import struct
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.builder.errors import BuildFailed

__all__ = [
    "BIOS_BOOT",
    "EFI_SYSTEM",
    "LEGACY_BIOS_BOOTABLE",
    "LINUX_FILESYSTEM",
    "Partition",
    "PlacedPartition",
    "TableGeometry",
    "geometry",
    "guid_from_label",
    "place",
    "write_gpt",
]

EFI_SYSTEM = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
BIOS_BOOT = uuid.UUID("21686148-6449-6e6f-744e-656564454649")
LINUX_FILESYSTEM = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4")
LEGACY_BIOS_BOOTABLE = 1 << 2  # GPT attribute bit 2

_ENTRIES = 128
_ENTRY_SIZE = 128
_HEADER_SIZE = 92
_ALIGN_BYTES = 1 << 20
_NAME_BYTES = 72


def guid_from_label(label: str) -> uuid.UUID:
    """Upstream's ``GUIDFromLabel``: SHA-256 of 16 zero bytes and the label, first 16 bytes,
    version 8 and the RFC 4122 variant."""
    raw = bytearray(hashlib.sha256(bytes(16) + label.encode()).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80
    raw[8] = (raw[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(raw))


@dataclass(frozen=True)
class Partition:
    """A partition to place: ``size`` in bytes (a multiple of the sector size), or ``None``
    for the rest of the disk (last partition only)."""

    name: str
    size: int | None
    type_guid: uuid.UUID
    guid: uuid.UUID
    attributes: int = 0


@dataclass(frozen=True)
class PlacedPartition:
    number: int  # 1-based, as in (hd0,gptN) and /dev/sdaN
    partition: Partition
    first_lba: int
    last_lba: int  # inclusive
    sector_size: int

    @property
    def offset(self) -> int:
        return self.first_lba * self.sector_size

    @property
    def size(self) -> int:
        return (self.last_lba - self.first_lba + 1) * self.sector_size


@dataclass(frozen=True)
class TableGeometry:
    """Where the table's parts go on a disk of ``total_sectors`` sectors."""

    sector_size: int
    total_sectors: int
    entry_sectors: int
    primary_entries_lba: int
    first_usable_lba: int
    last_usable_lba: int

    @property
    def last_lba(self) -> int:
        return self.total_sectors - 1

    @property
    def backup_entries_lba(self) -> int:
        return self.last_lba - self.entry_sectors


def geometry(disk_size: int, sector_size: int, *, skip_lbas: int = 0) -> TableGeometry:
    """The table geometry of a disk of ``disk_size`` bytes (a multiple of ``sector_size``)."""
    if sector_size not in (512, 4096):
        raise BuildFailed(f"unsupported disk sector size {sector_size}; use 512 or 4096")
    if disk_size % sector_size:
        raise BuildFailed(f"disk size {disk_size} is not a multiple of {sector_size}")
    total = disk_size // sector_size
    entry_sectors = -(-_ENTRIES * _ENTRY_SIZE // sector_size)
    primary = 2 + skip_lbas
    first_usable = primary + entry_sectors
    last_usable = total - 2 - entry_sectors
    if last_usable <= first_usable:
        raise BuildFailed(f"a disk of {disk_size} bytes is too small for a GPT")
    return TableGeometry(sector_size, total, entry_sectors, primary, first_usable, last_usable)


def place(geo: TableGeometry, partitions: Sequence[Partition]) -> list[PlacedPartition]:
    """Lay ``partitions`` out in order, each starting on a 1 MiB boundary.

    Raises ``BuildFailed`` when they do not fit, a size is not whole sectors, or a partition
    other than the last has no size.
    """
    align = max(_ALIGN_BYTES // geo.sector_size, 1)
    cursor = geo.first_usable_lba
    placed = []
    for number, part in enumerate(partitions, start=1):
        start = -(-cursor // align) * align
        if part.size is None:
            if number != len(partitions):
                raise BuildFailed(f"partition {part.name} fills the disk but is not the last")
            last = geo.last_usable_lba
        else:
            if part.size <= 0 or part.size % geo.sector_size:
                raise BuildFailed(f"partition {part.name}: size {part.size} is not whole sectors")
            last = start + part.size // geo.sector_size - 1
        if last > geo.last_usable_lba or last < start:
            need = (last - geo.last_usable_lba) * geo.sector_size
            raise BuildFailed(
                f"partition {part.name} does not fit on a disk of "
                f"{geo.total_sectors * geo.sector_size} bytes (short by {max(need, 0)} bytes); "
                "use a larger disk size"
            )
        placed.append(PlacedPartition(number, part, start, last, geo.sector_size))
        cursor = last + 1
    return placed


def _entry(p: PlacedPartition) -> bytes:
    name = p.partition.name.encode("utf-16-le")
    if len(name) > _NAME_BYTES:
        raise BuildFailed(f"partition name {p.partition.name!r} is longer than 36 characters")
    return (
        p.partition.type_guid.bytes_le
        + p.partition.guid.bytes_le
        + struct.pack("<QQQ", p.first_lba, p.last_lba, p.partition.attributes)
        + name.ljust(_NAME_BYTES, b"\0")
    )


def _header(
    geo: TableGeometry, disk_guid: uuid.UUID, *, current: int, backup: int, entries_lba: int,
    entries_crc: int,
) -> bytes:  # fmt: skip
    def pack(crc: int) -> bytes:
        return struct.pack(
            "<8sIIIIQQQQ16sQIII",
            b"EFI PART",
            0x00010000,
            _HEADER_SIZE,
            crc,
            0,
            current,
            backup,
            geo.first_usable_lba,
            geo.last_usable_lba,
            disk_guid.bytes_le,
            entries_lba,
            _ENTRIES,
            _ENTRY_SIZE,
            entries_crc,
        )

    header = pack(zlib.crc32(pack(0)))
    return header.ljust(geo.sector_size, b"\0")


def _protective_record(geo: TableGeometry) -> bytes:
    """MBR bytes 446..511: one 0xEE record from LBA 1 over the whole disk, then 0x55AA."""
    size = min(geo.total_sectors - 1, 0xFFFFFFFF)
    record = struct.pack("<B3sB3sII", 0x00, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1, size)
    return record + bytes(48) + b"\x55\xaa"


def write_gpt(
    disk: Path,
    geo: TableGeometry,
    placed: Sequence[PlacedPartition],
    disk_guid: uuid.UUID,
) -> None:
    """Write the protective MBR record and both GPT copies into the file ``disk``."""
    if len(placed) > _ENTRIES:
        raise BuildFailed(f"a GPT holds at most {_ENTRIES} partitions")
    array = b"".join(_entry(p) for p in placed).ljust(_ENTRIES * _ENTRY_SIZE, b"\0")
    array = array.ljust(geo.entry_sectors * geo.sector_size, b"\0")
    crc = zlib.crc32(array[: _ENTRIES * _ENTRY_SIZE])
    primary = _header(
        geo, disk_guid, current=1, backup=geo.last_lba, entries_lba=geo.primary_entries_lba,
        entries_crc=crc,
    )  # fmt: skip
    backup = _header(
        geo, disk_guid, current=geo.last_lba, backup=1, entries_lba=geo.backup_entries_lba,
        entries_crc=crc,
    )  # fmt: skip
    ss = geo.sector_size
    fd = os.open(disk, os.O_WRONLY)
    try:
        os.pwrite(fd, _protective_record(geo), 446)
        os.pwrite(fd, primary, ss)
        os.pwrite(fd, array, geo.primary_entries_lba * ss)
        os.pwrite(fd, array, geo.backup_entries_lba * ss)
        os.pwrite(fd, backup, geo.last_lba * ss)
    finally:
        os.close(fd)
