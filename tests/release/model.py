"""What a built test release contains: the ``Release`` record tests consume.

Built once by ``build.py`` and stored as ``release.json`` next to the OCI layouts (paths relative
to the release directory), so a warm run only reads that file. All digests are those of the OCI
layouts written here; ``skopeo copy --all --preserve-digests`` pushes them unchanged, so they are
also the registry's digests after ``push_release``.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.release.spec import NAMESPACE, UPSTREAM_REGISTRY

__all__ = ["ArchArtifacts", "Extension", "Image", "Overlay", "Release", "TalosRelease"]

T = TypeVar("T")


@dataclass(frozen=True)
class Image:
    """One tag of one repository, as pushed."""

    name: str  # repository under siderolabs/, e.g. "imager", "gvisor"
    tag: str
    digest: str  # what the tag points at: the index for multi-arch images
    media_type: str
    platforms: tuple[str, ...]  # "linux/amd64", "linux/arm64"
    manifests: dict[str, str]  # platform -> manifest digest
    layout: Path  # the OCI layout directory holding this repository

    @property
    def repo(self) -> str:
        return f"{NAMESPACE}/{self.name}"

    def ref(self, registry: str = UPSTREAM_REGISTRY) -> str:
        return f"{registry}/{self.repo}:{self.tag}"

    def pinned(self, registry: str = UPSTREAM_REGISTRY) -> str:
        return f"{self.ref(registry)}@{self.digest}"


@dataclass(frozen=True)
class Extension:
    """One official extension of one Talos version, as listed in its catalogue."""

    name: str  # catalogue name, e.g. "siderolabs/gvisor"
    manifest_name: str  # metadata.name, e.g. "gvisor"
    version: str  # metadata.version
    tag: str
    digest: str  # of the pushed index; also in /image-digests
    author: str
    description: str
    compatibility: str
    files: dict[str, tuple[str, ...]]  # arch -> paths under rootfs/ (module paths name kver)
    kernel_modules: dict[str, tuple[str, ...]]  # arch -> the .ko among files

    def ref(self, registry: str = UPSTREAM_REGISTRY) -> str:
        return f"{registry}/{self.name}:{self.tag}"

    def catalogue_line(self) -> str:
        """The /image-digests line, exactly."""
        return f"{self.ref()}@{self.digest}"


@dataclass(frozen=True)
class Overlay:
    name: str  # "rpi_generic"
    image: str  # "siderolabs/sbc-raspberrypi"
    tag: str
    digest: str
    profile: str  # profiles/<name>.yaml text
    artifacts: tuple[str, ...]  # paths under artifacts/arm64/

    def ref(self, registry: str = UPSTREAM_REGISTRY) -> str:
        return f"{registry}/{self.image}:{self.tag}"


@dataclass(frozen=True)
class ArchArtifacts:
    """The boot files of one version and arch, as files (also inside ``imager:<v>``)."""

    kernel_release: str  # uname -r of vmlinuz
    vmlinuz: Path
    initramfs: Path  # the base initramfs.xz (xz CRC32 < 1.8, zstd from 1.8)
    rootfs_sqsh: Path  # the rootfs.sqsh inside it
    systemd_boot: Path
    systemd_stub: Path


@dataclass(frozen=True)
class TalosRelease:
    """One Talos version of the test release and the quirks its layout follows."""

    version: str
    initramfs_compression: str  # "xz" | "zstd"
    squashfs_compression: str
    modules_dir: str  # "lib/modules" | "usr/lib/modules"
    firmware_dir: str  # "lib/firmware" | "usr/lib/firmware"
    installer_repo: str  # "installer" (2 layers) | "installer-base" (1 layer)
    efi_suite: str  # Debian suite of systemd-boot/stub: bookworm (252) | trixie (257)
    arches: dict[str, ArchArtifacts]
    extensions: tuple[Extension, ...]  # catalogue order
    overlays: tuple[Overlay, ...]
    imager: Image
    installer: Image
    extensions_catalogue: Image
    overlays_catalogue: Image
    talosctl: Image | None

    def extension(self, name: str) -> Extension:
        """By catalogue name (``siderolabs/gvisor``) or short name (``gvisor``)."""
        for ext in self.extensions:
            if name in (ext.name, ext.manifest_name):
                return ext
        raise KeyError(f"{self.version} has no extension {name}")


@dataclass(frozen=True)
class Release:
    """The whole synthetic release: every Talos version and every image to push.

    Deviations from real Talos (see ``tests/release/spec.py``): one Debian 6.1 kernel for every
    version; base initramfs members are ``base_initramfs_members`` (``init`` and
    ``rootfs.sqsh`` plus the ``fixture/`` bootstrap); tiny fake payloads except real kernel
    modules.
    """

    root: Path
    key: str  # build key (hash of builder sources, spec, packages, tool versions)
    source_date_epoch: int
    kernel_release: dict[str, str]  # arch -> uname -r
    kernel_modules: dict[str, Path]  # arch -> a lib/modules/<kver> subset (incl. dummy.ko)
    base_initramfs_members: tuple[str, ...]
    versions: tuple[TalosRelease, ...]
    extra_imager_tags: tuple[str, ...]  # imager tags /versions must filter out
    offered_versions: tuple[str, ...]  # what /versions should list with the default minimum
    images: tuple[Image, ...]  # every (repository, tag) pushed
    debs: tuple[str, ...]  # Debian packages used: "<suite>/<file> <sha256>"

    def version(self, version: str) -> TalosRelease:
        want = version if version.startswith("v") else f"v{version}"
        for v in self.versions:
            if v.version == want:
                return v
        raise KeyError(f"the test release has no Talos {version}")

    def image(self, name: str, tag: str) -> Image:
        name = name.removeprefix(f"{NAMESPACE}/")
        for img in self.images:
            if img.name == name and img.tag == tag:
                return img
        raise KeyError(f"the test release has no {NAMESPACE}/{name}:{tag}")

    # -- persistence -------------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(_dump(self, self.root), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, root: Path) -> Release:
        data = json.loads(text)
        data["root"] = "."
        release: Release = _load(cls, data, root)
        return release


def _dump(obj: Any, root: Path) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _dump(getattr(obj, f.name), root) for f in fields(obj)}
    if isinstance(obj, Path):
        return str(obj.relative_to(root)) if obj.is_absolute() else str(obj)
    if isinstance(obj, tuple | list):
        return [_dump(x, root) for x in obj]
    if isinstance(obj, dict):
        return {k: _dump(v, root) for k, v in obj.items()}
    return obj


def _load(tp: Any, data: Any, root: Path) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _load(inner, data, root)
    if origin is tuple:
        (inner, _) = typing.get_args(tp)
        return tuple(_load(inner, x, root) for x in data)
    if origin is dict:
        _, inner = typing.get_args(tp)
        return {k: _load(inner, v, root) for k, v in data.items()}
    if tp is Path:
        return (root / data).resolve() if data != "." else root
    if isinstance(tp, type) and is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _load(hints[f.name], data[f.name], root) for f in fields(tp)})
    return data
