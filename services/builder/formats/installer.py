"""Installer container images as docker-archive tarballs (talos-assets.md §12, §3.2).

An installer image for one arch is the base image's layers plus one *artifacts* layer (plus
one *overlay* layer when the flavor has an overlay), written the way upstream's imager writes it
with go-containerregistry's ``tarball.Write``: config as ``sha256:<hex>``, each layer as
``<hex>.tar.gz``, then ``manifest.json`` tagged with the base reference.

Parts:

* :func:`installer_base_repository` and :func:`fetch_installer_base` pull the base for one
  arch through the release ``RegistryClient``: ``installer-base:<v>`` (≥ 1.10, one layer) or the
  legacy ``installer:<v>`` whose second layer (its old boot files) is dropped.
* :func:`artifact_entries` is the pure plan of the artifacts layer: which boot file goes under
  which name for the version and Secure Boot (:func:`uses_uki` says whether that is a UKI plus
  systemd-boot or the kernel plus initramfs).
* :func:`build_installer` writes the layers and the archive. Layers are tar streams with
  entries sorted by path, regular files only, headers with name, mode and size (mode 0 for boot
  files, as upstream; the overlay's own modes), no mtimes; gzip at level 6 with no name and no
  time. Files are streamed in chunks: nothing is held whole in memory.

The image config copies the base's ``Entrypoint``, ``Env`` and ``Labels`` and sets
``architecture`` and ``os``. **Deviation:** upstream sets ``created`` to the build time; here it
is ``SOURCE_DATE_EPOCH`` (2019-06-01T21:34:52Z), so the same inputs give byte-identical images
and stable digests. History has one entry per layer, with the same time.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Protocol, cast

from image_service.oci import Platform, RegistryClient, RegistryError
from image_service.versions import Version
from services.builder.errors import BuildFailed
from services.builder.talos.quirks import Quirks
from services.builder.tools import SOURCE_DATE_EPOCH

__all__ = [
    "CREATED",
    "GZIP_LEVEL",
    "BaseLayer",
    "BootFile",
    "BootFiles",
    "InstallerBase",
    "InstallerInputs",
    "OverlayFiles",
    "artifact_entries",
    "build_installer",
    "fetch_installer_base",
    "installer_base_repository",
    "uses_uki",
]

NAMESPACE = "siderolabs"
CREATED = datetime.fromtimestamp(SOURCE_DATE_EPOCH, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
GZIP_LEVEL = 6
_CHUNK = 1 << 20
_MAX_CONFIG_BYTES = 4 << 20
_LEGACY_BASE_LAYERS = 2


class BootFile(StrEnum):
    """The boot files an artifacts layer can carry (fields of :class:`BootFiles`)."""

    SYSTEMD_BOOT = "systemd_boot"
    UKI = "uki"
    KERNEL = "kernel"
    INITRAMFS = "initramfs"


@dataclass(frozen=True)
class BootFiles:
    """Paths of the boot files; only those :func:`artifact_entries` names are needed.

    Under Secure Boot both ``uki`` and ``systemd_boot`` must already be signed.
    """

    systemd_boot: Path | None = None
    uki: Path | None = None
    kernel: Path | None = None
    initramfs: Path | None = None  # with the flavor's extensions

    def path(self, which: BootFile) -> Path | None:
        path: Path | None = getattr(self, which.value)
        return path


@dataclass(frozen=True)
class BaseLayer:
    """One layer blob of the base image, as the registry serves it (usually tar+gzip)."""

    path: Path
    digest: str  # of the blob (compressed)


@dataclass(frozen=True)
class InstallerBase:
    """The base image for one arch: its reference, raw config JSON and layers in order."""

    reference: str  # the docker-archive tag, e.g. "ghcr.io/siderolabs/installer-base:v1.11.3"
    config: bytes
    layers: tuple[BaseLayer, ...]


@dataclass(frozen=True)
class OverlayFiles:
    """The overlay pieces of an installer image (talos-assets.md §12 step 6)."""

    artifacts: Path  # directory: the target-arch overlay artifacts → overlay/artifacts/
    installer: Path  # the chosen overlay installer → overlay/installers/default
    extra_options: bytes  # YAML of the overlay options → overlay/extra-options


@dataclass(frozen=True)
class InstallerInputs:
    version: Version
    arch: str
    quirks: Quirks
    secureboot: bool
    base: InstallerBase
    boot: BootFiles
    overlay: OverlayFiles | None = None


def installer_base_repository(quirks: Quirks) -> str:
    """``siderolabs/installer-base`` (≥ 1.10) or ``siderolabs/installer``."""
    return f"{NAMESPACE}/{quirks.installer_base_repository}"


def uses_uki(quirks: Quirks, secureboot: bool) -> bool:
    """Whether the artifacts layer holds a UKI and systemd-boot (else kernel + initramfs)."""
    return quirks.unified_installer or secureboot


def artifact_entries(
    quirks: Quirks, arch: str, secureboot: bool
) -> tuple[tuple[str, BootFile], ...]:
    """The artifacts layer's entries, sorted by path: ``(path in the image, boot file)``."""
    prefix = f"usr/install/{arch}/"
    if uses_uki(quirks, secureboot):
        uki = "vmlinuz.efi" if quirks.unified_installer else "vmlinuz.efi.signed"
        entries = [
            (prefix + "systemd-boot.efi", BootFile.SYSTEMD_BOOT),
            (prefix + uki, BootFile.UKI),
        ]
    else:
        entries = [
            (prefix + "vmlinuz", BootFile.KERNEL),
            (prefix + "initramfs.xz", BootFile.INITRAMFS),
        ]
    return tuple(sorted(entries))


async def fetch_installer_base(
    client: RegistryClient, quirks: Quirks, version: Version, arch: str, reference: str
) -> InstallerBase:
    """Pull the ``linux/<arch>`` base image — ``reference`` is the manifest digest the caller
    pinned in its build key (or the version tag) of ``installer_base_repository(quirks)`` — with
    its config and its layers (into the client's blob cache). Raises ``BuildFailed``."""
    repo = installer_base_repository(quirks)
    where = f"{client.registry}/{repo}@{reference}"
    try:
        manifest = (
            await client.get_manifest(repo, reference, platform=Platform("linux", arch))
        ).document
        if manifest.config.size > _MAX_CONFIG_BYTES:
            raise BuildFailed(f"{where}: the config has {manifest.config.size} bytes")
        config = await client.fetch_blob(repo, manifest.config.digest, size=manifest.config.size)
        layers = [
            BaseLayer(await client.fetch_blob(repo, layer.digest, size=layer.size), layer.digest)
            for layer in manifest.layers
        ]
    except RegistryError as exc:
        raise BuildFailed(f"cannot fetch {where}: {exc}") from exc
    return InstallerBase(
        f"{client.registry}/{repo}:{version.tag}", config.read_bytes(), tuple(layers)
    )


# -- writing ---------------------------------------------------------------------------------


class _Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...
    def flush(self) -> object: ...


class _Hashing:
    """A write-only file object that hashes and counts what passes through to ``raw``."""

    def __init__(self, raw: _Sink, cancel: threading.Event | None) -> None:
        self._raw = raw
        self._cancel = cancel
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        if self._cancel is not None and self._cancel.is_set():
            raise BuildFailed("the installer build was cancelled")
        self.hasher.update(data)
        self.size += len(data)
        self._raw.write(data)
        return len(data)

    def flush(self) -> None:
        self._raw.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()


@dataclass(frozen=True)
class _Blob:
    path: Path
    digest: str
    size: int


@dataclass(frozen=True)
class _Layer:
    blob: _Blob
    diff_id: str  # sha256 of the uncompressed tar
    comment: str


@dataclass(frozen=True)
class _Entry:
    name: str
    source: Path | None
    data: bytes
    mode: int

    @property
    def size(self) -> int:
        return len(self.data) if self.source is None else self.source.stat().st_size


def _write_layer(
    entries: list[_Entry], out: Path, comment: str, cancel: threading.Event | None
) -> _Layer:
    """A tar+gzip layer of ``entries`` sorted by name (talos-assets.md §12 step 5)."""
    with out.open("wb") as raw:
        compressed = _Hashing(raw, cancel)
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=compressed, compresslevel=GZIP_LEVEL, mtime=0
        ) as gz:
            plain = _Hashing(gz, cancel)
            stream = cast("IO[bytes]", plain)  # write-only is all "w|" uses
            with tarfile.open(fileobj=stream, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
                for entry in sorted(entries, key=lambda e: e.name):
                    info = tarfile.TarInfo(entry.name)
                    info.size, info.mode, info.mtime = entry.size, entry.mode, 0
                    info.uname = info.gname = ""
                    if entry.source is None:
                        tar.addfile(info, io.BytesIO(entry.data))
                    else:
                        with entry.source.open("rb") as handle:
                            tar.addfile(info, handle)
    return _Layer(_Blob(out, compressed.digest, compressed.size), plain.digest, comment)


def _artifact_files(inputs: InstallerInputs) -> list[_Entry]:
    entries = []
    for name, which in artifact_entries(inputs.quirks, inputs.arch, inputs.secureboot):
        path = inputs.boot.path(which)
        if path is None:
            raise BuildFailed(f"the installer for {inputs.version.tag} needs the {which} file")
        entries.append(_Entry(name, path, b"", 0))
    return entries


def _regular_files(root: Path) -> Iterator[Path]:
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(directory, name)
            if stat.S_ISREG(path.lstat().st_mode):
                yield path


def _overlay_files(overlay: OverlayFiles) -> list[_Entry]:
    entries = [
        _Entry(
            "overlay/artifacts/" + path.relative_to(overlay.artifacts).as_posix(),
            path,
            b"",
            path.lstat().st_mode & 0o777,
        )
        for path in _regular_files(overlay.artifacts)
    ]
    mode = overlay.installer.stat().st_mode & 0o777
    entries.append(_Entry("overlay/installers/default", overlay.installer, b"", mode))
    entries.append(_Entry("overlay/extra-options", None, overlay.extra_options, 0o644))
    return entries


def _base_config(raw: bytes) -> dict[str, Any]:
    try:
        config = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BuildFailed(f"the installer base config is not JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise BuildFailed("the installer base config is not a JSON object")
    return config


def _base_layers(inputs: InstallerInputs, config: dict[str, Any]) -> list[_Layer]:
    """The kept base layers with their diff IDs (the legacy installer loses its boot files)."""
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    layers = inputs.base.layers
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
        raise BuildFailed(
            f"{inputs.base.reference}: the config lists {len(diff_ids or [])} diff IDs "
            f"for {len(layers)} layers"
        )
    keep = len(layers)
    if not inputs.quirks.unified_installer and keep == _LEGACY_BASE_LAYERS:
        keep = 1
    return [
        _Layer(_Blob(layer.path, layer.digest, layer.path.stat().st_size), str(diff), "base")
        for layer, diff in zip(layers[:keep], diff_ids[:keep], strict=True)
    ]


def _image_config(inputs: InstallerInputs, base: dict[str, Any], layers: list[_Layer]) -> bytes:
    """The config JSON, keys in go-containerregistry's order."""
    inner = base.get("config")
    if not isinstance(inner, dict):
        inner = {}
    copied = {k: inner[k] for k in ("Entrypoint", "Env", "Labels") if inner.get(k) is not None}
    config = {
        "architecture": inputs.arch,
        "created": CREATED,
        "history": [
            {"created": CREATED, "created_by": f"image-service installer: {layer.comment}"}
            for layer in layers
        ],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "config": copied,
    }
    return json.dumps(config, separators=(",", ":"), ensure_ascii=False).encode()


def _add_file(tar: tarfile.TarFile, name: str, path: Path | None, data: bytes = b"") -> None:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime, info.uname, info.gname = 0o644, 0, "", ""
    if path is None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        return
    info.size = path.stat().st_size
    with path.open("rb") as handle:
        tar.addfile(info, handle)


def _write_archive(out: Path, reference: str, config: bytes, layers: list[_Layer]) -> None:
    """The docker-archive as go-containerregistry writes it: config, layers, manifest.json."""
    config_name = "sha256:" + hashlib.sha256(config).hexdigest()
    names = [layer.blob.digest.removeprefix("sha256:") + ".tar.gz" for layer in layers]
    manifest = [{"Config": config_name, "RepoTags": [reference], "Layers": names}]
    with tarfile.open(out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add_file(tar, config_name, None, config)
        written: set[str] = set()
        for name, layer in zip(names, layers, strict=True):
            if name not in written:  # the same blob twice is stored once
                _add_file(tar, name, layer.blob.path)
                written.add(name)
        _add_file(tar, "manifest.json", None, json.dumps(manifest, separators=(",", ":")).encode())


def build_installer(
    inputs: InstallerInputs, work: Path, out: Path, *, cancel: threading.Event | None = None
) -> None:
    """Write the installer image for ``inputs.arch`` to ``out`` as a docker-archive tarball.

    ``work`` holds the new layers while the archive is written. ``cancel`` stops the build at
    the next chunk. Raises ``BuildFailed``.
    """
    work.mkdir(parents=True, exist_ok=True)
    base = _base_config(inputs.base.config)
    layers = _base_layers(inputs, base)
    try:
        layers.append(
            _write_layer(_artifact_files(inputs), work / "artifacts.tar.gz", "artifacts", cancel)
        )
        if inputs.overlay is not None:
            layers.append(
                _write_layer(
                    _overlay_files(inputs.overlay), work / "overlay.tar.gz", "overlay", cancel
                )
            )
        _write_archive(out, inputs.base.reference, _image_config(inputs, base, layers), layers)
    except OSError as exc:
        raise BuildFailed(f"cannot write the installer image: {exc}") from exc
