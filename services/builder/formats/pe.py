"""Minimal PE/COFF (PE32+) reading and the UKI assembler, in pure Python.

A UKI is systemd-stub with payload sections appended (talos-assets.md §7.2). :func:`read_pe`
parses the headers of an EFI image into a :class:`PeImage` (section table, alignments,
``ImageBase``, ``SizeOfImage``…); :func:`section_data` reads one section as the loader maps it
(trimmed to ``VirtualSize``). :func:`assemble` writes a new image the way the Talos imager's
``AssembleNative`` does:

* the stub's DOS header with ``e_lfanew = 0x80``, 0x40 zero bytes (the DOS program is
  dropped), then ``PE\\0\\0``;
* the COFF header with ``TimeDateStamp`` = the given epoch and the new section count;
* the stub's optional header with linker versions and ``CheckSum`` zeroed, ``SizeOfCode``,
  ``SizeOfInitializedData``, ``SizeOfHeaders`` and ``SizeOfImage`` recomputed;
* the stub's section headers, then the appended ones: each new section starts at the next
  multiple of the stub's ``SectionAlignment`` after the previous one, its raw data is padded
  to the stub's ``FileAlignment``, and its characteristics are initialised read-only data;
* all raw data packed sequentially right after the headers, in section-table order.

So the output depends only on the inputs and the epoch: byte-identical for the same inputs.
Two deliberate differences from upstream: a stub's COFF symbol table is dropped instead of
rejected (Debian's bookworm stub carries one; EFI loaders never read it), and a stale
Authenticode certificate-table entry of a signed stub is cleared (its signature cannot
survive reassembly anyway). :func:`patch_timestamp_and_checksum` fixes the two
non-reproducible header fields of a PE written by another tool (objcopy, verification.md §8).
"""

from __future__ import annotations

import shutil
import struct
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from services.builder.errors import BuildFailed

__all__ = [
    "SCN_CNT_CODE",
    "SCN_CNT_INITIALIZED_DATA",
    "SCN_MEM_READ",
    "AddedSection",
    "PeError",
    "PeImage",
    "PeSection",
    "assemble",
    "patch_timestamp_and_checksum",
    "pe_checksum",
    "read_pe",
    "section_data",
]

SCN_CNT_CODE = 0x00000020
SCN_CNT_INITIALIZED_DATA = 0x00000040
SCN_MEM_READ = 0x40000000

_PE32_PLUS = 0x20B
_DOS_HEADER = 0x40
_NEW_LFANEW = 0x80  # DOS header + 0x40 bytes of padding
_COFF = struct.Struct("<HHIIIHH")  # Machine … Characteristics (20 bytes)
_SECTION = struct.Struct("<8sIIIIIIHHI")  # one section header (40 bytes)
# Offsets inside the PE32+ optional header.
_OPT_LINKER = 2
_OPT_SIZE_OF_CODE = 4
_OPT_SIZE_OF_INIT_DATA = 8
_OPT_IMAGE_BASE = 24
_OPT_SECTION_ALIGNMENT = 32
_OPT_FILE_ALIGNMENT = 36
_OPT_SIZE_OF_IMAGE = 56
_OPT_SIZE_OF_HEADERS = 60
_OPT_CHECKSUM = 64
_OPT_NUMBER_OF_RVA = 108
_OPT_DATA_DIRECTORIES = 112
_DIR_SECURITY = 4
_COPY_CHUNK = 1 << 20


class PeError(BuildFailed):
    """A file is not a PE32+ image this module can read or assemble."""


@dataclass(frozen=True)
class PeSection:
    name: str
    virtual_size: int
    virtual_address: int  # RVA
    raw_size: int
    raw_offset: int
    characteristics: int

    @property
    def end(self) -> int:
        """The RVA just past the section's mapped bytes."""
        return self.virtual_address + self.virtual_size


@dataclass(frozen=True)
class PeImage:
    """The header facts of one PE32+ image (file offsets of the headers included)."""

    machine: int
    timestamp: int
    characteristics: int
    symbol_table: int  # PointerToSymbolTable (0 when stripped)
    symbol_count: int
    optional_offset: int  # file offset of the optional header
    optional_size: int
    image_base: int
    section_alignment: int
    file_alignment: int
    size_of_image: int
    size_of_headers: int
    checksum: int
    sections: tuple[PeSection, ...]

    @property
    def checksum_offset(self) -> int:
        return self.optional_offset + _OPT_CHECKSUM

    @property
    def timestamp_offset(self) -> int:
        return self.optional_offset - _COFF.size + 4

    def section(self, name: str) -> PeSection | None:
        """The first section called ``name``."""
        return next((s for s in self.sections if s.name == name), None)


@dataclass(frozen=True)
class AddedSection:
    """A section to append: its name (at most 8 bytes) and its payload, a file or bytes."""

    name: str
    source: Path | bytes

    def size(self) -> int:
        return len(self.source) if isinstance(self.source, bytes) else self.source.stat().st_size


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def _read_exact(f: BinaryIO, offset: int, size: int, what: str, path: Path) -> bytes:
    f.seek(offset)
    data = f.read(size)
    if len(data) != size:
        raise PeError(f"{path}: truncated PE image ({what} at offset {offset:#x})")
    return data


def read_pe(path: Path) -> PeImage:
    """Parse the headers of the PE32+ image at ``path``; raise :class:`PeError` otherwise."""
    with path.open("rb") as f:
        dos = _read_exact(f, 0, _DOS_HEADER, "DOS header", path)
        if dos[:2] != b"MZ":
            raise PeError(f"{path}: not a PE image (no MZ signature)")
        (lfanew,) = struct.unpack_from("<I", dos, 0x3C)
        head = _read_exact(f, lfanew, 4 + _COFF.size, "PE header", path)
        if head[:4] != b"PE\0\0":
            raise PeError(f"{path}: not a PE image (no PE signature at {lfanew:#x})")
        machine, nsections, timestamp, symtab, nsyms, optsize, chars = _COFF.unpack_from(head, 4)
        opt_offset = lfanew + 4 + _COFF.size
        opt = _read_exact(f, opt_offset, optsize, "optional header", path)
        if optsize < _OPT_DATA_DIRECTORIES or struct.unpack_from("<H", opt)[0] != _PE32_PLUS:
            raise PeError(f"{path}: only PE32+ images are supported")
        table = _read_exact(
            f, opt_offset + optsize, _SECTION.size * nsections, "section table", path
        )
    sections = []
    for i in range(nsections):
        raw_name, vsize, vaddr, rsize, roff, *_, schars = _SECTION.unpack_from(
            table, i * _SECTION.size
        )
        name = raw_name.rstrip(b"\0").decode("ascii", "replace")
        sections.append(PeSection(name, vsize, vaddr, rsize, roff, schars))
    (image_base,) = struct.unpack_from("<Q", opt, _OPT_IMAGE_BASE)
    sa, fa = struct.unpack_from("<II", opt, _OPT_SECTION_ALIGNMENT)
    size_of_image, size_of_headers, checksum = struct.unpack_from("<III", opt, _OPT_SIZE_OF_IMAGE)
    return PeImage(
        machine=machine,
        timestamp=timestamp,
        characteristics=chars,
        symbol_table=symtab,
        symbol_count=nsyms,
        optional_offset=opt_offset,
        optional_size=optsize,
        image_base=image_base,
        section_alignment=sa,
        file_alignment=fa,
        size_of_image=size_of_image,
        size_of_headers=size_of_headers,
        checksum=checksum,
        sections=tuple(sections),
    )


def section_data(path: Path, section: PeSection) -> bytes:
    """A section's bytes as the loader maps them: its raw data trimmed to ``VirtualSize``."""
    size = min(section.virtual_size, section.raw_size)
    with path.open("rb") as f:
        return _read_exact(f, section.raw_offset, size, f"section {section.name}", path)


def _copy(src: BinaryIO, dst: BinaryIO, size: int) -> None:
    while size > 0:
        chunk = src.read(min(size, _COPY_CHUNK))
        if not chunk:
            raise PeError("an input file changed size while the PE image was written")
        dst.write(chunk)
        size -= len(chunk)


# One section-table row: (name, VirtualSize, VirtualAddress, SizeOfRawData, Characteristics).
_Row = tuple[bytes, int, int, int, int]


def _layout(image: PeImage, added: Sequence[AddedSection], stub: Path) -> list[_Row]:
    """The stub's section rows followed by the appended ones, placed per the stub's alignments."""
    sa, fa = image.section_alignment, image.file_alignment
    if not image.sections:
        raise PeError(f"{stub}: the stub has no sections")
    if sa <= 0 or fa <= 0:
        raise PeError(f"{stub}: invalid section/file alignment {sa:#x}/{fa:#x}")
    file_size = stub.stat().st_size
    for s in image.sections:
        if s.raw_offset + s.raw_size > file_size:
            raise PeError(f"{stub}: section {s.name} extends past the end of the file")
    rows = [
        (s.name.encode(), s.virtual_size, s.virtual_address, s.raw_size, s.characteristics)
        for s in image.sections
    ]
    rva = _align(max(s.end for s in image.sections), sa)
    for section in added:
        name = section.name.encode("ascii")
        if len(name) > 8:
            raise PeError(f"section name {section.name!r} is longer than 8 bytes")
        size = section.size()
        rows.append((name, size, rva, _align(size, fa), SCN_CNT_INITIALIZED_DATA | SCN_MEM_READ))
        rva = _align(rva + size, sa)
    return rows


def _headers(stub: Path, image: PeImage, rows: list[_Row], timestamp: int) -> bytes:
    """DOS header, PE signature, COFF and optional headers and the section table, padded to
    ``SizeOfHeaders``; raw data is placed sequentially right after them."""
    fa, sa = image.file_alignment, image.section_alignment
    size_of_headers = _align(
        _NEW_LFANEW + 4 + _COFF.size + image.optional_size + _SECTION.size * len(rows), fa
    )
    first_rva = min(row[2] for row in rows)
    if size_of_headers > first_rva:
        raise PeError(f"{stub}: {len(rows)} section headers do not fit before RVA {first_rva:#x}")
    last = max(rows, key=lambda row: row[2])
    size_of_image = _align(last[2] + last[1], sa)
    # As upstream: everything that is not initialised data counts as code.
    size_of_code = sum(row[3] for row in rows if not row[4] & SCN_CNT_INITIALIZED_DATA)
    size_of_data = sum(row[3] for row in rows if row[4] & SCN_CNT_INITIALIZED_DATA)

    with stub.open("rb") as src:
        dos = bytearray(_read_exact(src, 0, _DOS_HEADER, "DOS header", stub))
        opt = bytearray(
            _read_exact(src, image.optional_offset, image.optional_size, "optional header", stub)
        )
    struct.pack_into("<I", dos, 0x3C, _NEW_LFANEW)
    struct.pack_into("<BB", opt, _OPT_LINKER, 0, 0)
    struct.pack_into("<II", opt, _OPT_SIZE_OF_CODE, size_of_code, size_of_data)
    struct.pack_into("<III", opt, _OPT_SIZE_OF_IMAGE, size_of_image, size_of_headers, 0)
    (ndirs,) = struct.unpack_from("<I", opt, _OPT_NUMBER_OF_RVA)
    security = _OPT_DATA_DIRECTORIES + 8 * _DIR_SECURITY
    if ndirs > _DIR_SECURITY and security + 8 <= len(opt):
        struct.pack_into("<II", opt, security, 0, 0)
    coff = _COFF.pack(
        image.machine, len(rows), timestamp & 0xFFFFFFFF, 0, 0, image.optional_size,
        image.characteristics,
    )  # fmt: skip

    out = bytearray(dos) + bytes(_NEW_LFANEW - _DOS_HEADER) + b"PE\0\0" + coff + opt
    offset = size_of_headers
    for name, vsize, rva, rsize, chars in rows:
        out += _SECTION.pack(name, vsize, rva, rsize, offset if rsize else 0, 0, 0, 0, 0, chars)
        offset += rsize
    return bytes(out + bytes(size_of_headers - len(out)))


def assemble(stub: Path, added: Sequence[AddedSection], out: Path, *, timestamp: int) -> PeImage:
    """Write ``stub`` plus ``added`` (in order) to ``out``, as the module docstring describes;
    return the new image's headers."""
    image = read_pe(stub)
    rows = _layout(image, added, stub)
    header = _headers(stub, image, rows, timestamp)
    with out.open("wb") as dst:
        dst.write(header)
        with stub.open("rb") as src:
            for s in image.sections:
                src.seek(s.raw_offset)
                _copy(src, dst, s.raw_size)
        for section, (_, size, _, rsize, _) in zip(added, rows[len(image.sections) :], strict=True):
            if isinstance(section.source, bytes):
                dst.write(section.source)
            else:
                with section.source.open("rb") as src:
                    _copy(src, dst, size)
            dst.write(bytes(rsize - size))
    return read_pe(out)


def pe_checksum(data: bytes | bytearray | memoryview, checksum_offset: int) -> int:
    """The PE image checksum (as ``imagehlp``'s ``CheckSumMappedFile``): the 16-bit
    one's-complement-style sum of the file with the checksum field taken as zero, plus the
    file length."""
    buf = bytearray(data)
    buf[checksum_offset : checksum_offset + 4] = bytes(4)
    if len(buf) % 2:
        buf.append(0)
    words = array("H")
    words.frombytes(bytes(buf))
    if sys.byteorder != "little":
        words.byteswap()
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (total + len(data)) & 0xFFFFFFFF


def patch_timestamp_and_checksum(path: Path, timestamp: int) -> None:
    """Set the COFF ``TimeDateStamp`` to ``timestamp`` and store a correct ``CheckSum`` in
    ``path`` in place: what makes objcopy-built PEs reproducible (verification.md §8)."""
    image = read_pe(path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, image.timestamp_offset, timestamp & 0xFFFFFFFF)
    struct.pack_into("<I", data, image.checksum_offset, pe_checksum(data, image.checksum_offset))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    shutil.move(tmp, path)
