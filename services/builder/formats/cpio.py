"""newc cpio archives (the kernel's initramfs format), written and read in Python.

:class:`CpioWriter` streams entries into any binary file object: a pipe into ``zstd``/``xz``
or the output file itself, so no ``cpio`` binary is needed and file contents are copied in
chunks (memory stays bounded). Output is reproducible like ``cpio -H newc --reproducible
-R +0:+0`` after touching every file to ``SOURCE_DATE_EPOCH``: uid/gid 0, one fixed mtime,
device numbers 0, inode numbers counted from 1 in archive order, ``nlink`` 1 for non-directories
(so the kernel never treats two entries as hard links of each other) and 2 for directories.

:func:`tree_names` lists a staging directory the way the Talos imager does (depth first, each
directory's entries sorted by name, relative paths without a leading ``/``, directories
before their contents), which is also the order the kernel needs: parents first.

:class:`CpioReader` (and :func:`iter_members`) reads an uncompressed newc stream member by
member (for validation and tests, and to pull ``rootfs.sqsh`` out of a decompressed base
initramfs); it stops at the ``TRAILER!!!`` entry and never holds a member's data in memory.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "TRAILER",
    "CpioError",
    "CpioMember",
    "CpioReader",
    "CpioWriter",
    "MemberData",
    "iter_members",
    "tree_names",
    "write_tree",
]

TRAILER = "TRAILER!!!"
_MAGIC = b"070701"
_HEADER_LEN = 110
_CHUNK = 1 << 20
_MAX_FIELD = 0xFFFFFFFF
_MAX_NAME = 4096


class CpioError(ValueError):
    """The stream is not a valid newc archive, or an entry cannot be archived."""


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


class CpioWriter:
    """Write newc entries to ``out``; call :meth:`finish` to write the trailer."""

    def __init__(self, out: BinaryIO, *, mtime: int) -> None:
        self._out = out
        self._mtime = mtime
        self._ino = 0
        self._finished = False
        self.written = 0  # bytes written so far

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self.written += len(data)

    def _header(self, name: str, mode: int, nlink: int, size: int, *, ino: int) -> None:
        encoded = name.encode("utf-8", "surrogateescape") + b"\0"
        if size > _MAX_FIELD:
            raise CpioError(f"{name}: {size} bytes is too large for a newc archive")
        fields = (ino, mode, 0, 0, nlink, self._mtime, size, 0, 0, 0, 0, len(encoded), 0)
        header = _MAGIC + b"".join(b"%08X" % f for f in fields)
        self._write(header + encoded + _pad(_HEADER_LEN + len(encoded)))

    def _next_ino(self) -> int:
        self._ino += 1
        return self._ino

    def add_directory(self, name: str, mode: int = 0o755) -> None:
        self._header(name, stat.S_IFDIR | (mode & 0o7777), 2, 0, ino=self._next_ino())

    def add_symlink(self, name: str, target: str) -> None:
        data = target.encode("utf-8", "surrogateescape")
        self._header(name, stat.S_IFLNK | 0o777, 1, len(data), ino=self._next_ino())
        self._write(data + _pad(len(data)))

    def add_file(self, name: str, src: BinaryIO, size: int, mode: int = 0o644) -> None:
        """A regular file of exactly ``size`` bytes read from ``src`` in chunks."""
        self._header(name, stat.S_IFREG | (mode & 0o7777), 1, size, ino=self._next_ino())
        left = size
        while left:
            chunk = src.read(min(_CHUNK, left))
            if not chunk:
                raise CpioError(f"{name}: file shrank while it was archived")
            self._write(chunk)
            left -= len(chunk)
        self._write(_pad(size))

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._header(name, stat.S_IFREG | (mode & 0o7777), 1, len(data), ino=self._next_ino())
        self._write(data + _pad(len(data)))

    def add_path(self, root: Path, name: str) -> None:
        """The entry ``name`` (relative to ``root``) as found on disk, never following links."""
        path = root / name
        st = path.lstat()
        if stat.S_ISDIR(st.st_mode):
            self.add_directory(name, st.st_mode)
        elif stat.S_ISLNK(st.st_mode):
            self.add_symlink(name, os.readlink(path))
        elif stat.S_ISREG(st.st_mode):
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as src:
                self.add_file(name, src, os.fstat(src.fileno()).st_size, st.st_mode)
        else:
            raise CpioError(f"{name}: only directories, regular files and symlinks are archived")

    def finish(self) -> None:
        if not self._finished:
            self._header(TRAILER, 0, 1, 0, ino=0)
            self._finished = True


def tree_names(root: Path, top: str = "") -> list[str]:
    """Every entry under ``root`` (or under ``root/top``, ``top`` included), depth first with
    each directory's entries sorted by name, as relative paths."""
    out: list[str] = []

    def walk(rel: str) -> None:
        with os.scandir(root / rel if rel else root) as it:
            entries = sorted(it, key=lambda e: os.fsencode(e.name))
        for entry in entries:
            name = f"{rel}/{entry.name}" if rel else entry.name
            out.append(name)
            if entry.is_dir(follow_symlinks=False):
                walk(name)

    if top:
        out.append(top)
        if (root / top).is_dir() and not (root / top).is_symlink():
            walk(top)
    else:
        walk("")
    return out


def write_tree(out: BinaryIO, root: Path, names: list[str], *, mtime: int) -> int:
    """One complete archive of ``names`` (relative to ``root``) into ``out``; returns its size."""
    writer = CpioWriter(out, mtime=mtime)
    for name in names:
        writer.add_path(root, name)
    writer.finish()
    return writer.written


@dataclass(frozen=True)
class CpioMember:
    name: str
    mode: int
    uid: int
    gid: int
    nlink: int
    mtime: int
    size: int
    ino: int
    offset: int  # of the header, from where the reader started

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)


class MemberData:
    """One member's data; whatever is left unread is skipped before the next header."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self._stream = stream
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = _read_exact(self._stream, n) if n else b""
        self.left -= len(data)
        return data

    def copy_to(self, out: BinaryIO) -> None:
        while self.left:
            out.write(self.read(_CHUNK))


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    parts = []
    while n:
        data = stream.read(n)
        if not data:
            raise CpioError("truncated cpio archive")
        parts.append(data)
        n -= len(data)
    return b"".join(parts)


class CpioReader:
    """Iterate ``(member, data)`` over one uncompressed newc archive, stopping at its trailer.

    ``start`` is the stream's position in a larger file, for the reported offsets; after the
    iteration :attr:`end` is the offset just past the trailer (before any zero padding).
    """

    def __init__(self, stream: BinaryIO, *, start: int = 0) -> None:
        self._stream = stream
        self.start = start
        self.end: int | None = None

    def __iter__(self) -> Iterator[tuple[CpioMember, MemberData]]:
        pos = self.start
        while True:
            header = _read_exact(self._stream, _HEADER_LEN)
            if header[:6] != _MAGIC:
                raise CpioError(f"bad newc magic {header[:6]!r} at offset {pos}")
            try:
                f = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
            except ValueError:
                raise CpioError(f"bad newc header at offset {pos}") from None
            namesize = f[11]
            if not 0 < namesize <= _MAX_NAME:
                raise CpioError(f"bad name size {namesize} at offset {pos}")
            raw = _read_exact(self._stream, namesize + len(_pad(_HEADER_LEN + namesize)))
            name = raw[: namesize - 1].decode("utf-8", "surrogateescape")
            member = CpioMember(name, f[1], f[2], f[3], f[4], f[5], f[6], f[0], pos)
            data = MemberData(self._stream, member.size)
            if name != TRAILER:
                yield member, data
            while data.left:
                data.read(_CHUNK)
            _read_exact(self._stream, len(_pad(member.size)))
            pos += _HEADER_LEN + len(raw) + member.size + len(_pad(member.size))
            if name == TRAILER:
                self.end = pos
                return


def iter_members(stream: BinaryIO) -> Iterator[tuple[CpioMember, MemberData]]:
    """``(member, data)`` for each entry of one archive, trailer excluded."""
    return iter(CpioReader(stream))
