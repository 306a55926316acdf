"""The META partition of disk images: a Talos ADV holding META values (talos-assets.md §9.8).

Disk images carry the schematic's META values in the META partition instead of on the kernel
command line. The format is ``siderolabs/go-adv``'s "talos" ADV, all integers big-endian, one
copy being 256 KiB::

    0x0000        magic1 0x5A4B3C2D
    0x0004        records {tag u32, size u32, value}; a zero tag (or the end) stops the list
    len - 0x24    SHA-256 of the whole copy, computed with these 32 bytes zeroed
    len - 0x04    magic2 0xA5B4C3D2

:func:`encode_adv` writes the copy twice (partition offsets 0 and 256 KiB); the rest of the
1 MiB partition, including the syslinux-compatible legacy ADV at its end, stays zero.
Upstream writes records in Go map order (random); here they are sorted by key, so the partition
is reproducible. Tag 0 would end the list, so keys are 1..255; a later value for a key replaces
an earlier one, as in upstream's map. Capacity is upstream's: 20 bytes plus 8 per record plus
the values must fit in 256 KiB - 40 bytes.

:func:`parse_adv` reads either copy back (the first valid one wins), for tests and tools.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping

from services.builder.errors import BuildFailed, InvalidProfile

__all__ = [
    "ADV_COPY_SIZE",
    "ADV_DATA_LENGTH",
    "DISK_IMAGE_BOOTLOADER_KEY",
    "AdvError",
    "encode_adv",
    "parse_adv",
]

ADV_COPY_SIZE = 256 * 1024
ADV_DATA_LENGTH = ADV_COPY_SIZE - 40
DISK_IMAGE_BOOTLOADER_KEY = 0x11  # META key DiskImageBootloader
_MAGIC1 = 0x5A4B3C2D
_MAGIC2 = 0xA5B4C3D2
_CHECKSUM = slice(ADV_COPY_SIZE - 36, ADV_COPY_SIZE - 4)


class AdvError(BuildFailed):
    """Bytes that are not a valid Talos ADV."""


def _values(meta: Iterable[tuple[int, str | bytes]]) -> dict[int, bytes]:
    values: dict[int, bytes] = {}
    for key, value in meta:
        if not 1 <= key <= 0xFF:
            raise InvalidProfile(f"META key 0x{key:x} cannot be stored in a disk image (1..0xff)")
        values[key] = value.encode() if isinstance(value, str) else value
    used = 20 + sum(8 + len(v) for v in values.values())
    if used > ADV_DATA_LENGTH:
        raise InvalidProfile(
            f"META values take {used} bytes, more than the {ADV_DATA_LENGTH} a disk image holds"
        )
    return values


def _copy(values: Mapping[int, bytes]) -> bytes:
    buf = bytearray(ADV_COPY_SIZE)
    struct.pack_into(">I", buf, 0, _MAGIC1)
    struct.pack_into(">I", buf, ADV_COPY_SIZE - 4, _MAGIC2)
    pos = 4
    for key in sorted(values):
        value = values[key]
        struct.pack_into(">II", buf, pos, key, len(value))
        buf[pos + 8 : pos + 8 + len(value)] = value
        pos += 8 + len(value)
    buf[_CHECKSUM] = hashlib.sha256(buf).digest()
    return bytes(buf)


def encode_adv(meta: Iterable[tuple[int, str | bytes]]) -> bytes:
    """Both ADV copies (512 KiB) holding ``meta`` as ``(key, value)`` pairs, sorted by key.

    Raises ``InvalidProfile`` for a key outside 1..255 or values that do not fit.
    """
    one = _copy(_values(meta))
    return one + one


def _parse_copy(buf: bytes) -> dict[int, bytes]:
    if len(buf) != ADV_COPY_SIZE:
        raise AdvError(f"an ADV copy is {ADV_COPY_SIZE} bytes, got {len(buf)}")
    (magic1,) = struct.unpack_from(">I", buf, 0)
    (magic2,) = struct.unpack_from(">I", buf, ADV_COPY_SIZE - 4)
    if (magic1, magic2) != (_MAGIC1, _MAGIC2):
        raise AdvError(f"bad ADV magic {magic1:#x}/{magic2:#x}")
    zeroed = bytearray(buf)
    zeroed[_CHECKSUM] = bytes(32)
    if hashlib.sha256(zeroed).digest() != buf[_CHECKSUM]:
        raise AdvError("ADV checksum mismatch")
    values: dict[int, bytes] = {}
    data = memoryview(buf)[4 : ADV_COPY_SIZE - 36]
    while len(data) >= 8:
        tag, size = struct.unpack_from(">II", data, 0)
        if tag == 0:
            break
        if size + 8 > len(data):
            raise AdvError(f"ADV value of tag {tag} runs past the end ({size} bytes)")
        values[tag] = bytes(data[8 : 8 + size])
        data = data[8 + size :]
    return values


def parse_adv(data: bytes) -> dict[int, bytes]:
    """The values of a META partition (or its first 512 KiB): the first valid copy wins.

    Raises ``AdvError`` when neither copy is valid.
    """
    errors = []
    for start in (0, ADV_COPY_SIZE):
        try:
            return _parse_copy(data[start : start + ADV_COPY_SIZE])
        except AdvError as exc:
            errors.append(str(exc))
    raise AdvError("no valid ADV copy: " + "; ".join(errors))
