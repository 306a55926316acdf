"""The initramfs with system extensions (talos-assets.md §4), and the virtual extensions.

:func:`build_initramfs` follows the Talos imager's procedure (§4.1) in a private work dir:

1. extract each extension's layers defensively into ``<work>/extensions/<j>`` and validate it
   (:mod:`services.builder.inputs.extract`);
2. if any extension ships kernel modules, pull ``rootfs.sqsh`` out of the base initramfs
   (stream-decompressed, never whole in memory), ``unsquashfs`` its module tree, copy the
   extensions' ``<kver>`` trees over it, run ``depmod`` and wrap the resulting ``modules.*``
   files into the synthetic ``modules.dep`` extension, which comes last;
3. per extension, in input order: concatenate its microcode into
   ``kernel/x86/microcode/{GenuineIntel,AuthenticAMD}.bin``, move its firmware tree into the
   staging tree, and ``mksquashfs`` the rest into ``<j>.sqsh``;
4. write ``extensions.yaml`` with the go-yaml compatible emitter (same bytes as Talos'
   ``yaml.v3`` encoder) and assemble the output::

       [uncompressed newc cpio of kernel/… — only when there is microcode]
       [the base initramfs, copied byte for byte, never recompressed]
       [one xz (CRC32 check) or zstd stream: newc cpio of the rest of the staging tree]

The newc archives are written by :mod:`services.builder.formats.cpio` and piped through the
version's compressor (``xz``/``zstd`` with upstream's flags) straight into the output file; the xz
check type is verified afterwards (the kernel cannot read CRC64). Version behaviour comes in through
:class:`InitramfsOptions` (:meth:`InitramfsOptions.for_version` maps the quirks table).

Deliberate differences from upstream: layers are numbered and listed in *input* order, so the
virtual ``schematic`` extension stays the last real layer even with ten or more extensions
(upstream's directory listing sorts ``10`` before ``2``); symlinks in extensions are never
followed (firmware symlinks stay symlinks instead of being dereferenced, symlinked modules are
left out of the ``depmod`` run); squashfs images never pick up host xattrs (``-no-xattrs``
unless SELinux labels are set from the layer's PAX records).

:func:`schematic_extension` (api.md §12) and :func:`embedded_config_extension` (§4.7) build the
virtual extensions as small single-layer tars to pass in like any other extension.
"""

from __future__ import annotations

import fnmatch
import io
import logging
import lzma
import os
import re
import shutil
import stat
import tarfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from hashlib import sha256
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from image_service.flavor.canonical import EmitKey, EmitValue, emit_mapping
from image_service.versions import Version
from services.builder.errors import BuildFailed
from services.builder.formats.cpio import CpioReader, tree_names, write_tree
from services.builder.inputs.extract import (
    ExtensionManifest,
    ExtractLimits,
    InvalidExtension,
    extract_layers,
    load_extension,
)
from services.builder.talos.quirks import quirks_for
from services.builder.tools import SOURCE_DATE_EPOCH, check_tools, feed, run

__all__ = [
    "ExtensionLayers",
    "InitramfsOptions",
    "InitramfsReport",
    "LayerInfo",
    "build_initramfs",
    "embedded_config_extension",
    "schematic_extension",
]

log = logging.getLogger(__name__)

_XZ_MAGIC = b"\xfd7zXZ\x00"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_XZ_CHECK_CRC32 = 0x01
_UCODE = (
    ("intel-ucode", "*", "GenuineIntel.bin"),
    ("amd-ucode", "microcode_amd*.bin", "AuthenticAMD.bin"),
)
_DEPMOD_CONF = "search extras built-in\n"  # the imager's /etc/modules.d/10-extra-modules.conf
_FLAVOR_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ExtensionLayers:
    """One extension image for the target arch: its layer blobs, bottom first."""

    image: str  # named in errors, e.g. "ghcr.io/siderolabs/gvisor:20250505.0-v1.11.3"
    layers: tuple[Path, ...]


@dataclass(frozen=True)
class InitramfsOptions:
    """What differs per target version (talos-assets.md §4, §15)."""

    talos_version: Version | None  # compatibility checks; None (unparsable) skips them
    compressor_argv: tuple[str, ...]  # reads the cpio on stdin, writes stdout
    squashfs_args: tuple[str, ...]  # e.g. ("-comp", "zstd", "-Xcompression-level", "18")
    firmware_dir: str  # "/usr/lib/firmware" (≥ 1.10) or "/lib/firmware"
    modules_dir: str  # "/usr/lib/modules" (≥ 1.10) or "/lib/modules"
    selinux_labels: bool = False  # ≥ 1.13: label files from the layers' PAX records
    source_date_epoch: int = SOURCE_DATE_EPOCH
    limits: ExtractLimits = field(default_factory=ExtractLimits)

    @classmethod
    def for_version(cls, version: Version | None, **overrides: Any) -> InitramfsOptions:
        """The options of a target version from the quirks table; ``overrides`` replace fields
        (e.g. ``limits``, ``source_date_epoch``)."""
        q = quirks_for(version)
        options = cls(
            talos_version=version,
            compressor_argv=q.initramfs_compressor_argv,
            squashfs_args=q.squashfs_compression_args,
            firmware_dir=q.firmware_path,
            modules_dir=q.kernel_modules_path,
            selinux_labels=q.squashfs_selinux_labels,
        )
        return replace(options, **overrides)


@dataclass(frozen=True)
class LayerInfo:
    image: str  # "0.sqsh", …, "modules.dep.sqsh"
    name: str
    version: str
    source: str  # the extension image; "" for modules.dep


@dataclass(frozen=True)
class InitramfsReport:
    layers: tuple[LayerInfo, ...]
    microcode: tuple[str, ...]  # files of the early cpio
    firmware: tuple[str, ...]  # files under the firmware dir in the appended section
    kernel_version: str | None  # set when the modules.dep layer was built
    early_bytes: int  # the uncompressed microcode cpio (0 when absent)
    base_bytes: int
    appended_bytes: int

    @property
    def size(self) -> int:
        return self.early_bytes + self.base_bytes + self.appended_bytes


@dataclass
class _Ext:
    index: str  # "0", "1", …, "modules.dep"
    source: str
    root: Path  # holds rootfs/
    manifest: ExtensionManifest
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def rootfs(self) -> Path:
        return self.root / "rootfs"


def _cancelled(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise BuildFailed("initramfs build cancelled")


def _mkdirs(root: Path, rel: str) -> Path:
    """``root/rel`` with every missing directory created 0755 (whatever the umask)."""
    path = root
    for part in rel.strip("/").split("/"):
        path = path / part
        if not path.is_dir():
            path.mkdir()
            path.chmod(0o755)
    return path


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o644)


def _real_dir(root: Path, rel: str) -> Path | None:
    """``root/rel`` if every component below ``root`` is a real directory (no symlinks)."""
    path = root
    for part in rel.strip("/").split("/"):
        path = path / part
        try:
            if not stat.S_ISDIR(path.lstat().st_mode):
                return None
        except FileNotFoundError:
            return None
    return path


def build_initramfs(
    base: Path,
    extensions: Sequence[ExtensionLayers],
    options: InitramfsOptions,
    work: Path,
    out: Path,
    *,
    cancel: threading.Event | None = None,
) -> InitramfsReport:
    """Write ``out``: ``base`` with ``extensions`` (in this order) added; see the module doc.

    ``work`` must be a private, empty or new directory. Raises ``InvalidExtension`` (400) for
    bad or incompatible extensions, ``ToolError``/``BuildFailed`` (500) for build failures.
    """
    base_bytes = base.stat().st_size
    if not extensions:
        shutil.copyfile(base, out)
        return InitramfsReport((), (), (), None, 0, base_bytes, 0)
    check_tools(["mksquashfs", options.compressor_argv[0]])
    work.mkdir(mode=0o700, parents=True, exist_ok=True)

    built = []
    for j, ext in enumerate(extensions):
        _cancelled(cancel)
        root = work / "extensions" / str(j)
        tree = extract_layers(ext.layers, root, image=ext.image, limits=options.limits)
        manifest = load_extension(
            root, image=ext.image, talos_version=options.talos_version, limits=options.limits
        )
        built.append(_Ext(str(j), ext.image, root, manifest, tree.selinux_labels))

    staging = work / "initramfs"
    staging.mkdir()
    kernel_version = None
    modules_dep = _modules_dep(base, built, options, work, cancel)
    if modules_dep is not None:
        kernel_version = modules_dep.manifest.version

    everything = [*built, *([modules_dep] if modules_dep else [])]
    layers = []
    for item in everything:
        _cancelled(cancel)
        _microcode(item, staging, options.firmware_dir)
        firmware = _real_dir(item.rootfs, options.firmware_dir)
        if firmware is not None:
            _move_tree(firmware, _mkdirs(staging, options.firmware_dir))
        _squash(item, staging / f"{item.index}.sqsh", options, cancel)
        meta = item.manifest
        layers.append(LayerInfo(f"{item.index}.sqsh", meta.name, meta.version, item.source))

    metas = [item.manifest for item in everything]
    _write(staging / "extensions.yaml", _extensions_yaml(layers, metas).encode())

    names = tree_names(staging)
    early = [n for n in names if n == "kernel" or n.startswith("kernel/")]
    rest = [n for n in names if n != "kernel" and not n.startswith("kernel/")]
    _cancelled(cancel)
    try:
        with out.open("wb") as f:
            epoch = options.source_date_epoch
            early_bytes = write_tree(f, staging, early, mtime=epoch) if early else 0
            with base.open("rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)
            f.flush()
            feed(
                options.compressor_argv,
                lambda pipe: write_tree(pipe, staging, rest, mtime=epoch),
                stdout=f,
                cancel=cancel,
                source_date_epoch=epoch,
            )
        _check_appended(out, early_bytes + base_bytes)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    appended = out.stat().st_size - early_bytes - base_bytes
    fw_prefix = options.firmware_dir.strip("/") + "/"
    return InitramfsReport(
        layers=tuple(layers),
        microcode=tuple(n for n in early if (staging / n).is_file()),
        firmware=tuple(n for n in rest if n.startswith(fw_prefix) and not (staging / n).is_dir()),
        kernel_version=kernel_version,
        early_bytes=early_bytes,
        base_bytes=base_bytes,
        appended_bytes=appended,
    )


def _check_appended(out: Path, offset: int) -> None:
    """The kernel only reads xz streams with a CRC32 (or no) check: verify what we appended."""
    with out.open("rb") as f:
        f.seek(offset)
        head = f.read(8)
    if head.startswith(_XZ_MAGIC):
        if head[7] & 0x0F != _XZ_CHECK_CRC32:
            raise BuildFailed("the appended xz stream does not use CRC32; the kernel rejects it")
    elif not head.startswith(_ZSTD_MAGIC):
        raise BuildFailed(f"the compressor wrote an unknown format (starts {head[:4].hex()})")


# --- microcode, firmware, squashfs ---------------------------------------------------------------


def _microcode(ext: _Ext, staging: Path, firmware_dir: str) -> None:
    for subdir, pattern, blob in _UCODE:
        src = _real_dir(ext.rootfs, f"{firmware_dir}/{subdir}")
        if src is None:
            continue
        matches = sorted(
            (n for n in os.listdir(src) if fnmatch.fnmatchcase(n, pattern)), key=os.fsencode
        )
        if not matches:
            continue
        dest = _mkdirs(staging, "kernel/x86/microcode")
        with (dest / blob).open("ab") as out:
            os.fchmod(out.fileno(), 0o644)
            for name in matches:
                rel = f"{firmware_dir.strip('/')}/{subdir}/{name}"
                try:
                    fd = os.open(src / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                except OSError:
                    fd = -1
                if fd < 0 or not stat.S_ISREG(os.fstat(fd).st_mode):
                    if fd >= 0:
                        os.close(fd)
                    raise InvalidExtension(ext.source, f"microcode {rel} is not a regular file")
                with os.fdopen(fd, "rb") as blob_src:
                    shutil.copyfileobj(blob_src, out, 1 << 20)
                os.unlink(src / name)


def _move_tree(src: Path, dest: Path) -> None:
    """Merge ``src`` into ``dest`` (later files win) and remove ``src``; links stay links."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        dest.unlink()
    _mkdirs(dest.parent, dest.name)
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: os.fsencode(e.name))
    for entry in entries:
        target = dest / entry.name
        if entry.is_dir(follow_symlinks=False):
            _move_tree(Path(entry.path), target)
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry.path, target)
    os.rmdir(src)


def _pseudo_path(rel: str) -> str:
    return re.sub(r'([\s"\'\\])', r"\\\1", rel)


def _squash(
    ext: _Ext, out: Path, options: InitramfsOptions, cancel: threading.Event | None
) -> None:
    xattrs: list[str] = ["-no-xattrs"]
    labels = {
        rel.removeprefix("rootfs/"): label
        for rel, label in ext.labels.items()
        if rel.startswith("rootfs/") and os.path.lexists(ext.root / rel)
    }
    if options.selinux_labels and labels:
        _require_squashfs_xattrs()
        xattrs = ["-xattrs-exclude", ".*"]
        for rel, label in sorted(labels.items()):
            xattrs += ["-p", f"{_pseudo_path(rel)} x security.selinux={label}"]
    run(
        [
            "mksquashfs", ext.rootfs, out, "-all-root", "-noappend", "-no-progress",
            *options.squashfs_args, *xattrs,
        ],
        cancel=cancel,
        source_date_epoch=options.source_date_epoch,
    )  # fmt: skip
    out.chmod(0o644)


def _require_squashfs_xattrs() -> None:
    text = run(["mksquashfs", "-version"], check=False).stdout.decode(errors="replace")
    found = re.search(r"version (\d+)\.(\d+)", text)
    if found is None or (int(found[1]), int(found[2])) < (4, 6):
        have = f"{found[1]}.{found[2]}" if found else "unknown"
        raise BuildFailed(
            "labelling extension files for Talos ≥ 1.13 needs mksquashfs 4.6 or newer "
            f"(found {have}); install squashfs-tools ≥ 4.6 (Debian trixie)"
        )


# --- kernel modules ------------------------------------------------------------------------------


@contextmanager
def _decompressed(path: Path) -> Iterator[BinaryIO]:
    with path.open("rb") as raw:
        magic = raw.read(6)
        raw.seek(0)
        if magic == _XZ_MAGIC:
            with lzma.LZMAFile(raw) as xz:
                yield xz  # type: ignore[misc]
        else:
            with zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as zs:
                yield zs


def _extract_rootfs(base: Path, dest: Path) -> None:
    try:
        with _decompressed(base) as stream:
            for member, data in CpioReader(stream):
                if member.name == "rootfs.sqsh" and member.is_file:
                    with dest.open("wb") as out:
                        data.copy_to(out)
                    return
    except (lzma.LZMAError, zstandard.ZstdError, EOFError, ValueError) as exc:
        raise BuildFailed(f"cannot read the base initramfs {base.name}: {exc}") from exc
    raise BuildFailed(f"the base initramfs {base.name} has no rootfs.sqsh")


def _copy_modules(src: Path, dest: Path) -> None:
    """Copy a module tree: directories and regular files; symlinks are not followed (skipped)."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        dest.unlink()  # never write through a link of the base tree
    _mkdirs(dest.parent, dest.name)
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: os.fsencode(e.name))
    for entry in entries:
        target = dest / entry.name
        if entry.is_dir(follow_symlinks=False):
            _copy_modules(Path(entry.path), target)
        elif entry.is_file(follow_symlinks=False):
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            target.unlink(missing_ok=True)
            shutil.copyfile(entry.path, target, follow_symlinks=False)
        else:
            log.warning("not passing %s to depmod: not a regular file", entry.path)


def _modules_dep(
    base: Path,
    exts: list[_Ext],
    options: InitramfsOptions,
    work: Path,
    cancel: threading.Event | None,
) -> _Ext | None:
    """The synthetic ``modules.dep`` extension, or None when no extension ships modules."""
    mod_rel = options.modules_dir.strip("/")
    with_modules = [(e, d) for e in exts if (d := _real_dir(e.rootfs, mod_rel)) is not None]
    if not with_modules:
        return None
    check_tools(["unsquashfs", "depmod"])
    rootfs_sqsh = work / "rootfs.sqsh"
    _extract_rootfs(base, rootfs_sqsh)
    tree = work / "modules"
    run(
        ["unsquashfs", "-no-xattrs", "-d", tree, "-f", "-n", rootfs_sqsh, options.modules_dir],
        cancel=cancel,
    )
    rootfs_sqsh.unlink()
    modules = _real_dir(tree, mod_rel)
    kernels = sorted(os.listdir(modules)) if modules else []
    if modules is None or len(kernels) != 1 or _real_dir(modules, kernels[0]) is None:
        raise BuildFailed(f"the base rootfs.sqsh has no single kernel under {options.modules_dir}")
    kver = kernels[0]
    for ext, moddir in with_modules:
        src = _real_dir(moddir, kver)
        if src is None:
            found = ", ".join(sorted(os.listdir(moddir))) or "nothing"
            raise InvalidExtension(
                ext.source,
                f"ships kernel modules for {found}, but the target's kernel is {kver}",
            )
        _copy_modules(src, modules / kver)
    conf = work / "depmod.conf"
    conf.write_text(_DEPMOD_CONF)
    basedir = tree / mod_rel.removesuffix("lib/modules").strip("/")
    run(["depmod", "--all", "--basedir", basedir, "--config", conf, kver], cancel=cancel)

    root = work / "modules.dep"
    dest = _mkdirs(work, f"modules.dep/rootfs/{mod_rel}/{kver}")
    for name in sorted(os.listdir(modules / kver)):
        path = modules / kver / name
        if name.startswith("modules.") and not path.is_dir():
            os.replace(path, dest / name)
            (dest / name).chmod(0o644)
    shutil.rmtree(tree)
    manifest = ExtensionManifest(
        name="modules.dep",
        version=kver,
        author="Talos Machinery",
        description="Combined modules.dep for all extensions",
    )
    return _Ext("modules.dep", "", root, manifest)


# --- YAML and the virtual extensions --------------------------------------------------------------


def _metadata(m: ExtensionManifest) -> dict[EmitKey, EmitValue]:
    out: dict[EmitKey, EmitValue] = {
        "name": m.name,
        "version": m.version,
        "author": m.author,
        "description": m.description,
        "compatibility": {"talos": {"version": m.compatibility}},
    }
    if m.extra_info:
        out["extraInfo"] = m.extra_info
    return out


def _extensions_yaml(layers: Sequence[LayerInfo], metas: Sequence[ExtensionManifest]) -> str:
    """talos-assets.md §4.3, as Talos' ``yaml.NewEncoder(f).Encode(cfg)`` writes it."""
    items: list[EmitValue] = [
        {"image": layer.image, "metadata": _metadata(meta)}
        for layer, meta in zip(layers, metas, strict=True)
    ]
    return emit_mapping([("layers", items)])


def _manifest(m: ExtensionManifest) -> bytes:
    return emit_mapping([("version", "v1alpha1"), ("metadata", _metadata(m))]).encode()


def _tar(entries: Sequence[tuple[str, int, bytes | None, dict[str, str]]]) -> bytes:
    """A small in-memory tar: ``(name, mode, data or None for a directory, PAX records)``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, mode, data, pax in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.mtime = 0
            info.pax_headers = dict(pax)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def schematic_extension(
    flavor_id: str, canonical_yaml: str | bytes, external_url: str, *, with_extra_info: bool
) -> bytes:
    """The Image Factory's virtual ``schematic`` extension as a tar (api.md §12).

    ``with_extra_info`` (target ≥ 1.7, ``quirks.schematic_extra_info``) puts the canonical
    schematic YAML into ``metadata.extraInfo``.
    """
    if not _FLAVOR_ID.fullmatch(flavor_id):
        raise ValueError(f"not a schematic ID: {flavor_id!r}")
    text = canonical_yaml.decode() if isinstance(canonical_yaml, bytes) else canonical_yaml
    manifest = ExtensionManifest(
        name="schematic",
        version=flavor_id,
        author=f"Image Factory ({external_url})",
        description=(
            "Virtual extension which specifies the schematic of the image built with schematic."
        ),
        compatibility=">= 1.0.0",
        extra_info=text if with_extra_info else "",
    )
    dirs = ["rootfs/", "rootfs/usr/", "rootfs/usr/local/", "rootfs/usr/local/share/"]
    return _tar(
        [
            ("manifest.yaml", 0o644, _manifest(manifest), {}),
            *((d, 0o755, None, {}) for d in [*dirs, "rootfs/usr/local/share/schematic/"]),
            (f"rootfs/usr/local/share/schematic/{flavor_id}", 0o644, b"", {}),
        ]
    )


def embedded_config_extension(config: str | bytes) -> bytes:
    """The imager's virtual ``embedded-config`` extension as a tar (talos-assets.md §4.7)."""
    data = config.encode() if isinstance(config, str) else config
    manifest = ExtensionManifest(
        name="embedded-config",
        version=sha256(data).hexdigest(),
        author="Imager",
        description="Virtual extension which embeds the machine configuration.",
        compatibility=">= 1.0.0",
    )
    dirs = ["rootfs", "rootfs/usr", "rootfs/usr/local", "rootfs/usr/local/etc"]
    label = {"SCHILY.xattr.security.selinux": "system_u:object_r:system_state_t:s0"}
    return _tar(
        [
            ("manifest.yaml", 0o644, _manifest(manifest), {}),
            *((d, 0o755, None, {}) for d in [*dirs, "rootfs/usr/local/etc/talos"]),
            ("rootfs/usr/local/etc/talos/config.yaml", 0o400, data, label),
        ]
    )
