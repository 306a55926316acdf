"""Defensive extraction of untrusted extension layers, and the extension structure checks.

Extension images come from registries we do not control, so their layer tars are treated as
hostile. :func:`extract_layers` applies an image's layers (plain, gzip or zstd tar), bottom
first with OCI whiteouts, into a directory, using a small tar reader of its own so that every
header is size-checked before anything is allocated (``tarfile`` reads PAX headers of any size
into memory). It refuses, naming the image and the entry:

* absolute paths and ``..`` components;
* symlinks whose target, resolved from the link's directory, leaves the layer root (absolute
  targets are only accepted under ``rootfs/``, where ``/`` means the Talos root at runtime);
* hard links to anything but a regular file already extracted;
* device nodes, FIFOs, sparse files and unknown entry types;
* entries, totals and entry counts over :class:`ExtractLimits`.

Writes never follow a symlink already on disk: every path is walked one component at a time
from a directory file descriptor with ``O_NOFOLLOW``, and a component that is a symlink or a
file is an error, so a link planted by an earlier entry cannot redirect a later one. Files are
created ``O_EXCL`` and get their mode only when complete; directories keep owner ``rwx`` so
later build steps can edit them. SELinux labels from ``SCHILY.xattr.security.selinux`` PAX
records are recorded (``ExtractedTree.selinux_labels``), never set on disk.

:func:`load_extension` then checks the flattened tree like Talos' ``extensions.Load`` and
``Validate`` (talos-assets.md §3.3): only ``manifest.yaml`` and ``rootfs/`` at the top, manifest
``version: v1alpha1``, metadata name and version present, and the ``compatibility.talos.version``
range satisfied by the target's major.minor.patch (:class:`VersionRange`, blang/semver syntax).
"""

from __future__ import annotations

import errno
import gzip
import os
import shutil
import stat
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NoReturn

import yaml
import zstandard

from image_service.errors import InvalidInput
from image_service.versions import InvalidVersion, Version
from services.builder.errors import BuildError, go_quote

__all__ = [
    "ExtensionManifest",
    "ExtractLimits",
    "ExtractedTree",
    "InvalidExtension",
    "VersionRange",
    "extract_layers",
    "load_extension",
]

_BLOCK = 512
_ZERO_BLOCK = b"\0" * _BLOCK
_CHUNK = 1 << 20
_TRAILING = 1 << 20  # padding after the end-of-archive marker read to let gzip verify its CRC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_REGULAR = (b"0", b"\0", b"7")
_REFUSED_KINDS = {b"3": "character device", b"4": "block device", b"6": "FIFO", b"S": "sparse file"}
_SELINUX_PAX = "SCHILY.xattr.security.selinux"


class InvalidExtension(BuildError, InvalidInput):
    """An extension image is malformed, hostile, too large or incompatible (→ 400)."""

    def __init__(self, image: str, detail: str) -> None:
        super().__init__(f"extension {image}: {detail}")
        self.image = image
        self.detail = detail


@dataclass(frozen=True)
class ExtractLimits:
    max_entries: int = 200_000
    max_entry_bytes: int = 2 << 30
    max_total_bytes: int = 8 << 30
    max_header_bytes: int = 1 << 20  # one PAX or GNU long-name header
    max_manifest_bytes: int = 1 << 20


@dataclass(frozen=True)
class ExtractedTree:
    root: Path
    entries: int
    total_bytes: int
    selinux_labels: dict[str, str] = field(default_factory=dict)  # "rootfs/…" -> label


# --- tar reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    name: str
    kind: bytes
    mode: int
    size: int
    linkname: str
    label: str | None


def _number(raw: bytes) -> int:
    if raw[:1] and raw[0] & 0x80:  # base-256 (GNU) for values that do not fit in octal
        value = int.from_bytes(bytes([raw[0] & 0x7F]) + raw[1:], "big")
        return value - (1 << (8 * len(raw) - 1)) if raw[0] & 0x40 else value
    text = raw.replace(b"\0", b" ").strip()
    return int(text, 8) if text else 0


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax(data: bytes) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    while data:
        length_text, _, _ = data.partition(b" ")
        length = int(length_text)
        record = data[len(length_text) + 1 : length]
        if length <= len(length_text) or len(data) < length or not record.endswith(b"\n"):
            raise ValueError("malformed PAX record")
        key, eq, value = record[:-1].partition(b"=")
        if not eq:
            raise ValueError("malformed PAX record")
        records[key.decode("utf-8", "surrogateescape")] = value
        data = data[length:]
    return records


class _TarReader:
    """Iterate the entries of one tar stream; unread data is skipped before the next header."""

    def __init__(self, stream: BinaryIO, limits: ExtractLimits, fail: _Fail) -> None:
        self._stream = stream
        self._limits = limits
        self._fail = fail
        self.left = 0

    def _exact(self, n: int, *, eof_ok: bool = False) -> bytes:
        parts: list[bytes] = []
        while n:
            data = self._stream.read(min(n, _CHUNK))
            if not data:
                if eof_ok and not parts:
                    return b""
                self._fail("layer is truncated")
            parts.append(data)
            n -= len(data)
        return b"".join(parts)

    def read(self, n: int) -> bytes:
        data = self._exact(min(n, self.left))
        self.left -= len(data)
        return data

    def __iter__(self) -> Iterator[_Entry]:
        ext: dict[str, bytes] = {}  # PAX records and GNU long names for the next entry
        headers = 0
        while True:
            block = self._exact(_BLOCK, eof_ok=True)
            if not block:
                self._fail("layer is truncated (no end-of-archive marker)")
            if block == _ZERO_BLOCK:
                # Let the decompressor check its trailer (gzip CRC) on the padding that follows.
                self._stream.read(_TRAILING)
                return
            headers += 1
            if headers > 2 * self._limits.max_entries + 16:
                self._fail("layer has too many tar headers")
            kind, size = self._header(block)
            if kind in (b"x", b"g", b"L", b"K"):
                self._extension_header(kind, size, ext)
                continue
            entry = self._entry(block, kind, size, ext)
            ext = {}
            self.left = entry.size
            yield entry
            while self.left:
                self.read(_CHUNK)
            self._exact(-entry.size % _BLOCK)

    def _extension_header(self, kind: bytes, size: int, ext: dict[str, bytes]) -> None:
        if size > self._limits.max_header_bytes:
            self._fail(f"layer has a {size}-byte tar extension header")
        data = self._exact(size)
        self._exact(-size % _BLOCK)
        if kind == b"x":
            try:
                ext.update(_pax(data))
            except ValueError:
                self._fail("layer has a malformed PAX header")
        elif kind in (b"L", b"K"):  # GNU long name / link name; PAX records take precedence
            ext.setdefault("path" if kind == b"L" else "linkpath", data.split(b"\0", 1)[0])

    def _entry(self, block: bytes, kind: bytes, size: int, ext: dict[str, bytes]) -> _Entry:
        name = _cstr(block[0:100])
        if block[257:265] == b"ustar\x0000" and block[345] != 0:
            name = _cstr(block[345:500]) + "/" + name
        link = _cstr(block[157:257])
        try:
            mode = _number(block[100:108]) & 0o7777
            size = int(ext["size"]) if "size" in ext else size
        except ValueError:
            self._fail("layer has a malformed tar header")
        if size < 0:
            self._fail("layer has a malformed tar header")
        if "path" in ext:
            name = ext["path"].decode("utf-8", "surrogateescape")
        if "linkpath" in ext:
            link = ext["linkpath"].decode("utf-8", "surrogateescape")
        if kind == b"\0" and name.endswith("/"):
            kind = b"5"  # pre-POSIX directory
        label = ext.get(_SELINUX_PAX)
        return _Entry(
            name=name,
            kind=kind,
            mode=mode,
            size=size,
            linkname=link,
            label=label.rstrip(b"\0").decode("utf-8", "replace") if label else None,
        )

    def _header(self, block: bytes) -> tuple[bytes, int]:
        try:
            stored = _number(block[148:156])
            size = _number(block[124:136])
        except ValueError:
            self._fail("layer is not a tar archive (bad header)")
        unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
        signed = unsigned - 2 * sum(b for b in block[:148] + block[156:] if b > 127)
        if stored not in (unsigned, signed) or size < 0:
            self._fail("layer is not a tar archive (bad header checksum)")
        return block[156:157], size


@contextmanager
def _decompressed(raw: BinaryIO) -> Iterator[BinaryIO]:
    magic = raw.read(4)
    raw.seek(0)
    if magic[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            yield gz  # type: ignore[misc]
    elif magic == b"\x28\xb5\x2f\xfd":
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        with reader:
            yield reader
    else:
        yield raw


# --- extraction ---------------------------------------------------------------------------------


class _Fail:
    """Raises :class:`InvalidExtension` for the current image and layer."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.layer = ""

    def __call__(self, detail: str) -> NoReturn:
        raise InvalidExtension(self.image, f"{self.layer}{detail}")


def _parts(name: str, fail: _Fail, what: str) -> tuple[str, ...]:
    if name.startswith("/"):
        fail(f"{what} {go_quote(name)} is an absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        fail(f"{what} {go_quote(name)} escapes the extension root")
    return parts


def _resolves_inside(parent: tuple[str, ...], target: str) -> bool:
    stack = list(parent)
    for part in target.split("/"):
        if part == "..":
            if not stack:
                return False
            stack.pop()
        elif part not in ("", "."):
            stack.append(part)
    return True


class _Extractor:
    def __init__(self, root: Path, limits: ExtractLimits, fail: _Fail) -> None:
        self.root = root
        self.limits = limits
        self.fail = fail
        self.root_fd = os.open(root, _DIR_FLAGS)
        self.entries = 0
        self.total = 0
        self.labels: dict[str, str] = {}
        self.dir_modes: dict[tuple[str, ...], int] = {}
        self.touched: set[tuple[str, ...]] = set()  # paths written by the current layer

    def close(self) -> None:
        os.close(self.root_fd)

    def _open_dir(self, parts: Sequence[str], *, create: bool, entry: str) -> int | None:
        """A descriptor of the directory ``parts``, walked without following any link."""
        fd = os.dup(self.root_fd)
        try:
            for i, comp in enumerate(parts):
                try:
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    os.mkdir(comp, 0o700, dir_fd=fd)
                    self.touched.add(tuple(parts[: i + 1]))
                    self.dir_modes.setdefault(tuple(parts[: i + 1]), 0o755)
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    if not entry:
                        os.close(fd)
                        return None
                    where = go_quote("/".join(parts[: i + 1]))
                    self.fail(f"layer entry {go_quote(entry)}: {where} is not a directory")
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _clear(pfd: int, base: str, *, keep_dir: bool) -> bool:
        """Remove what is at ``base`` (unless a directory to keep); whether a directory stays."""
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)
        return False

    def layer(self, path: Path, index: int, count: int) -> None:
        self.fail.layer = f"layer {index + 1} of {count}: " if count > 1 else ""
        self.touched = set()
        try:
            with path.open("rb") as raw, _decompressed(raw) as stream:
                reader = _TarReader(stream, self.limits, self.fail)
                for entry in reader:
                    try:
                        self._apply(entry, reader)
                    except OSError as exc:
                        if exc.errno not in (errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ):
                            raise
                        self.fail(f"layer entry {go_quote(entry.name)}: {exc.strerror}")
        except (EOFError, zlib.error, gzip.BadGzipFile, zstandard.ZstdError) as exc:
            self.fail(f"layer is not a readable tar archive: {exc}")

    def _apply(self, entry: _Entry, reader: _TarReader) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            self.fail(f"more than {self.limits.max_entries} layer entries")
        parts = _parts(entry.name, self.fail, "layer entry")
        if not parts:
            return  # the root directory itself
        if entry.kind in _REFUSED_KINDS:
            kind = _REFUSED_KINDS[entry.kind]
            self.fail(f"layer entry {go_quote(entry.name)} is a {kind}, which is not allowed")
        base = parts[-1]
        if base.startswith(".wh."):
            self._whiteout(parts)
            return
        if entry.label is not None:
            self.labels["/".join(parts)] = entry.label
        handlers = {b"5": self._directory, b"2": self._symlink, b"1": self._hardlink}
        if entry.kind in _REGULAR:
            self._file(entry, parts, reader)
        elif entry.kind in handlers:
            handlers[entry.kind](entry, parts)
        else:
            kind = entry.kind.decode("latin-1")
            self.fail(f"layer entry {go_quote(entry.name)} has unsupported type {kind!r}")
        self.touched.add(parts)

    def _parent(self, entry: _Entry, parts: tuple[str, ...]) -> int:
        fd = self._open_dir(parts[:-1], create=True, entry=entry.name)
        assert fd is not None
        return fd

    def _file(self, entry: _Entry, parts: tuple[str, ...], reader: _TarReader) -> None:
        if entry.size > self.limits.max_entry_bytes:
            self.fail(
                f"layer entry {go_quote(entry.name)} is {entry.size} bytes, "
                f"more than the limit of {self.limits.max_entry_bytes}"
            )
        if self.total + entry.size > self.limits.max_total_bytes:
            self.fail(f"layer contents exceed the limit of {self.limits.max_total_bytes} bytes")
        pfd = self._parent(entry, parts)
        try:
            self._clear(pfd, parts[-1], keep_dir=False)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(parts[-1], flags, 0o600, dir_fd=pfd)
        finally:
            os.close(pfd)
        with os.fdopen(fd, "wb") as out:
            while reader.left:
                out.write(reader.read(_CHUNK))
            os.fchmod(out.fileno(), entry.mode)
        self.total += entry.size

    def _directory(self, entry: _Entry, parts: tuple[str, ...]) -> None:
        pfd = self._parent(entry, parts)
        try:
            if not self._clear(pfd, parts[-1], keep_dir=True):
                os.mkdir(parts[-1], 0o700, dir_fd=pfd)
        finally:
            os.close(pfd)
        self.dir_modes[parts] = entry.mode

    def _symlink(self, entry: _Entry, parts: tuple[str, ...]) -> None:
        target = entry.linkname
        inside = (
            parts[0] == "rootfs" and len(parts) > 1
            if target.startswith("/")
            else _resolves_inside(parts[:-1], target)
        )
        if not target or "\0" in target or not inside:
            self.fail(
                f"layer entry {go_quote(entry.name)}: symlink target {go_quote(target)} "
                "escapes the extension root"
            )
        pfd = self._parent(entry, parts)
        try:
            self._clear(pfd, parts[-1], keep_dir=False)
            os.symlink(target, parts[-1], dir_fd=pfd)
        finally:
            os.close(pfd)

    def _hardlink(self, entry: _Entry, parts: tuple[str, ...]) -> None:
        target = _parts(entry.linkname, self.fail, f"layer entry {go_quote(entry.name)}: link")
        if target == parts:
            return
        what = f"layer entry {go_quote(entry.name)}: hard link target {go_quote(entry.linkname)}"
        tfd = self._open_dir(target[:-1], create=False, entry="") if target else None
        if tfd is None:
            self.fail(f"{what} is not a file extracted before it")
        pfd = None
        try:
            try:
                st = os.stat(target[-1], dir_fd=tfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is None or not stat.S_ISREG(st.st_mode):
                self.fail(f"{what} is not a file extracted before it")
            pfd = self._parent(entry, parts)
            self._clear(pfd, parts[-1], keep_dir=False)
            os.link(target[-1], parts[-1], src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)
            if pfd is not None:
                os.close(pfd)

    def _whiteout(self, parts: tuple[str, ...]) -> None:
        name = parts[-1][4:]
        pfd = self._open_dir(parts[:-1], create=False, entry="")
        if pfd is None:
            return
        try:
            if name == ".wh..opq":
                self._opaque(pfd, parts[:-1])
            elif name not in ("", ".", "..") and not name.startswith(".wh."):
                self._clear(pfd, name, keep_dir=False)
        finally:
            os.close(pfd)

    def _opaque(self, dfd: int, parts: tuple[str, ...]) -> None:
        """Hide what lower layers put in a directory; keep what this layer wrote."""
        for child in sorted(os.listdir(dfd)):
            path = (*parts, child)
            if path not in self.touched:
                self._clear(dfd, child, keep_dir=False)
            elif (sub := self._open_dir(path, create=False, entry="")) is not None:
                try:
                    self._opaque(sub, path)
                finally:
                    os.close(sub)

    def finish(self) -> None:
        # Modes last (deepest first), so a read-only directory does not stop later entries;
        # implicit parents get 0755 whatever the process umask is.
        for parts, mode in sorted(self.dir_modes.items(), key=lambda i: len(i[0]), reverse=True):
            fd = self._open_dir(parts, create=False, entry="")
            if fd is not None:
                os.fchmod(fd, mode | 0o700)
                os.close(fd)


def extract_layers(
    layers: Sequence[Path], dest: Path, *, image: str, limits: ExtractLimits | None = None
) -> ExtractedTree:
    """Apply ``layers`` (bottom first) into the new or empty directory ``dest``.

    Raises :class:`InvalidExtension` (naming ``image`` and the entry) for anything refused.
    """
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise ValueError(f"{dest} is not empty")
    fail = _Fail(image)
    extractor = _Extractor(dest, limits or ExtractLimits(), fail)
    try:
        for i, layer in enumerate(layers):
            extractor.layer(layer, i, len(layers))
        fail.layer = ""
        extractor.finish()
    finally:
        extractor.close()
    return ExtractedTree(dest, extractor.entries, extractor.total, extractor.labels)


# --- structure, manifest and compatibility -------------------------------------------------------


@dataclass(frozen=True)
class ExtensionManifest:
    """``manifest.yaml`` metadata, as Talos decodes it into string fields."""

    name: str
    version: str
    author: str = ""
    description: str = ""
    compatibility: str = ""  # compatibility.talos.version
    extra_info: str = ""


def _mapping(node: yaml.Node | None, what: str, fail: _Fail) -> dict[str, yaml.Node]:
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
        return {}
    if not isinstance(node, yaml.MappingNode):
        fail(f"manifest.yaml: {what} must be a mapping")
    out: dict[str, yaml.Node] = {}
    for key, value in node.value:
        text = _scalar(key, what, fail)
        if text in out:
            fail(f"manifest.yaml: {what}.{text} is defined twice")
        out[text] = value
    return out


def _scalar(node: yaml.Node | None, what: str, fail: _Fail) -> str:
    if node is None:
        return ""
    if not isinstance(node, yaml.ScalarNode):
        fail(f"manifest.yaml: {what} must be a string")
    return "" if node.tag.endswith(":null") else str(node.value)


def _parse_manifest(text: str, fail: _Fail) -> ExtensionManifest:
    try:
        doc = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        fail(f"manifest.yaml is not valid YAML: {exc}")
    top = _mapping(doc, "manifest", fail)
    version = _scalar(top.get("version"), "version", fail)
    if version != "v1alpha1":
        fail(f"unsupported manifest version: {go_quote(version)}")
    meta = _mapping(top.get("metadata"), "metadata", fail)
    compat = _mapping(meta.get("compatibility"), "metadata.compatibility", fail)
    talos = _mapping(compat.get("talos"), "metadata.compatibility.talos", fail)

    def get(node: dict[str, yaml.Node], key: str, what: str) -> str:
        return _scalar(node.get(key), what, fail)

    manifest = ExtensionManifest(
        name=get(meta, "name", "metadata.name"),
        version=get(meta, "version", "metadata.version"),
        author=get(meta, "author", "metadata.author"),
        description=get(meta, "description", "metadata.description"),
        compatibility=get(talos, "version", "metadata.compatibility.talos.version"),
        extra_info=get(meta, "extraInfo", "metadata.extraInfo"),
    )
    for field_name in ("name", "version"):
        if not getattr(manifest, field_name):
            fail(f"manifest.yaml: metadata.{field_name} is missing")
    return manifest


def load_extension(
    root: Path,
    *,
    image: str,
    talos_version: Version | None,
    limits: ExtractLimits | None = None,
) -> ExtensionManifest:
    """Check an extracted extension's structure and manifest; return the manifest.

    ``talos_version`` is the target; only its major.minor.patch is compared, and ``None``
    (an unparsable target) skips the compatibility check.
    """
    fail = _Fail(image)
    limits = limits or ExtractLimits()
    names = sorted(os.listdir(root))
    for name in names:
        if name not in ("manifest.yaml", "rootfs"):
            fail(f"unexpected file {go_quote(name)}")
    if "manifest.yaml" not in names:
        fail("extension manifest is missing")
    if "rootfs" not in names or not stat.S_ISDIR((root / "rootfs").lstat().st_mode):
        fail("extension rootfs is missing")
    if not stat.S_ISREG((root / "manifest.yaml").lstat().st_mode):
        fail("manifest.yaml is not a regular file")
    fd = os.open(root / "manifest.yaml", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limits.max_manifest_bytes + 1)
    if len(data) > limits.max_manifest_bytes:
        fail(f"manifest.yaml is larger than {limits.max_manifest_bytes} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        fail("manifest.yaml is not UTF-8")
    manifest = _parse_manifest(text, fail)
    if manifest.compatibility and talos_version is not None:
        try:
            allowed = VersionRange.parse(manifest.compatibility)
        except ValueError as exc:
            fail(f"error parsing Talos version constraint: {exc}")
        core = Version(*talos_version.core)
        if not allowed.satisfied_by(core):
            fail(
                f"version constraint {go_quote(manifest.compatibility)} can't be satisfied "
                f"with Talos version {core.tag}"
            )
    return manifest


_OPERATORS = ("==", "!=", ">=", "<=", "=", ">", "<")


@dataclass(frozen=True)
class VersionRange:
    """A blang/semver range: ``||`` separates alternatives, whitespace (or a comma) separates
    comparisons that must all hold; an operator may be followed by spaces; a ``v`` right
    before a digit is ignored (Talos' ``trim``). Missing minor/patch count as 0."""

    alternatives: tuple[tuple[tuple[str, Version], ...], ...]

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        alternatives = []
        for alt in text.split("||"):
            tokens = alt.replace(",", " ").split()
            comparisons: list[tuple[str, Version]] = []
            pending = ""
            for token in tokens:
                op = next((o for o in _OPERATORS if token.startswith(o)), "")
                if pending and op:
                    raise ValueError(f"operator {pending!r} without a version in {text!r}")
                op, rest = (pending or op), token[len(op) :]
                if not rest:
                    pending = op
                    continue
                pending = ""
                comparisons.append((op or "==", cls._version(rest, text)))
            if pending or not comparisons:
                raise ValueError(f"empty or incomplete range {text!r}")
            alternatives.append(tuple(comparisons))
        return cls(tuple(alternatives))

    @staticmethod
    def _version(text: str, whole: str) -> Version:
        stripped = text[1:] if text[:1] == "v" and text[1:2].isdigit() else text
        try:
            version = Version.parse(stripped)
        except InvalidVersion:
            tolerant = Version.parse_tolerant(stripped)
            if tolerant is None:
                raise ValueError(f"invalid version {text!r} in {whole!r}") from None
            version = tolerant
        return version

    def satisfied_by(self, version: Version) -> bool:
        checks = {
            "==": lambda v, w: v == w,
            "=": lambda v, w: v == w,
            "!=": lambda v, w: v != w,
            ">": lambda v, w: v > w,
            ">=": lambda v, w: v >= w,
            "<": lambda v, w: v < w,
            "<=": lambda v, w: v <= w,
        }
        return any(all(checks[op](version, want) for op, want in alt) for alt in self.alternatives)
