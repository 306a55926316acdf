"""Build the synthetic Talos test release into a cache directory, or reuse a cached build.

Layout of the cache (default ``~/.cache/image-service/test-release/``)::

    downloads/                 .deb files, private apt state, unpacked packages (kept forever)
    release-<key>/             one complete build (renamed into place when finished)
        release.json           the Release record (model.py)
        fixtures/<v>/<arch>/   vmlinuz, initramfs.xz, rootfs.sqsh, systemd-{boot,stub}.efi
        fixtures/kernel/<arch>/modules/   lib/modules/<kver> subset (dummy.ko etc.)
        blobs/                 every blob once; layouts/<repo>/blobs hard-link here
        layouts/<repo>/        one OCI image layout per repository, tags in index.json

``<key>`` hashes the builder's own sources (this package, spec included), the Debian packages
used and the versions of the tools whose output ends up in the images, so a change to any of
them builds anew and an unchanged tree reuses the build in well under a second. Older
``release-*`` directories are removed after a successful build.

Image contents mirror talos-assets.md §3 (layouts) and §12 (installers); see spec.py for the
deliberate deviations.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import yaml

from tests.release.initramfs import build_base_initramfs
from tests.release.inputs import ArchInputs, Inputs, fetch_inputs
from tests.release.model import (
    ArchArtifacts,
    Extension,
    Image,
    Overlay,
    Release,
    TalosRelease,
)
from tests.release.oci import BlobStore, Descriptor, Entry, Layer, Layout
from tests.release.spec import (
    ARCHES,
    BASE_INITRAMFS_MEMBERS,
    EXTRA_IMAGER_TAGS,
    EXTRA_IMAGER_TAGS_SOURCE,
    SOURCE_DATE_EPOCH,
    TALOSCTL_TARGETS,
    VERSIONS,
    ExtensionSpec,
    FileSpec,
    OverlaySpec,
    VersionSpec,
)
from tests.release.tools import require_tools, tool_env

__all__ = ["DEFAULT_CACHE", "build_key", "ensure_release"]

DEFAULT_CACHE = Path.home() / ".cache" / "image-service" / "test-release"
_TOOLS = ("apt-get", "apt-cache", "dpkg-deb", "cpio", "xz", "zstd", "mksquashfs", "depmod")
_PRUNE_AFTER_S = 6 * 3600
_TOOL_VERSION_ARGV = (
    ("xz", "--version"),
    ("zstd", "--version"),
    ("mksquashfs", "-version"),
    ("cpio", "--version"),
    ("depmod", "--version"),
)


def _tool_versions() -> list[str]:
    out = []
    for argv in _TOOL_VERSION_ARGV:
        proc = subprocess.run(argv, capture_output=True, env=tool_env(), check=False)
        out.append((proc.stdout or proc.stderr).decode(errors="replace").splitlines()[0])
    out.append(f"zlib {zlib.ZLIB_RUNTIME_VERSION}")
    return out


def build_key(inputs: Inputs) -> str:
    h = hashlib.sha256()
    here = Path(__file__).parent
    for path in sorted([*here.glob("*.py"), *here.glob("*.sh")]):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for line in [*inputs.debs, *_tool_versions()]:
        h.update(line.encode() + b"\n")
    return h.hexdigest()


@contextmanager
def _locked(cache_root: Path) -> Iterator[None]:
    cache_root.mkdir(parents=True, exist_ok=True)
    with (cache_root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_release(cache_root: Path = DEFAULT_CACHE, *, log: bool = False) -> Release:
    """The test release, built into ``cache_root`` unless an identical build is already there."""
    cache_root = cache_root.expanduser().absolute()
    with _locked(cache_root):
        require_tools(_TOOLS)
        efi_suites = tuple(sorted({v.efi_suite for v in VERSIONS}))
        inputs = fetch_inputs(cache_root / "downloads", efi_suites)
        key = build_key(inputs)
        out = cache_root / f"release-{key[:16]}"
        record = out / "release.json"
        if record.exists():
            os.utime(record)  # "last used", for _prune
            return Release.from_json(record.read_text(), out)
        tmp = cache_root / f"release-{key[:16]}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        start = time.monotonic()
        release = _Builder(tmp, key, inputs).build()
        (tmp / "release.json").write_text(release.to_json())
        tmp.rename(out)
        _prune(cache_root, keep=out)
        if log:
            print(f"built test release {out} in {time.monotonic() - start:.1f}s")
        return Release.from_json(record.read_text(), out)


def _prune(cache_root: Path, keep: Path) -> None:
    """Remove builds nobody used for a while. Not the others: a test session started from an
    older tree (another worktree, or before an edit) may still be reading its build."""
    now = time.time()
    for old in cache_root.glob("release-*"):
        if old == keep:
            continue
        stamp = old / "release.json" if (old / "release.json").exists() else old
        if now - stamp.stat().st_mtime > _PRUNE_AFTER_S:
            shutil.rmtree(old, ignore_errors=True)


# --- the builder --------------------------------------------------------------------------------


def _platform(arch: str) -> str:
    return f"linux/{arch}"


def _text_entries(
    files: Sequence[FileSpec], prefix: str, subst: dict[str, str], ai: ArchInputs
) -> list[Entry]:
    out = []
    for f in files:
        path = prefix + f.path.format(**subst)
        if f.link is not None:
            out.append(Entry(path, link=f.link))
        elif f.module is not None:
            out.append(Entry(path, source=ai.modules / f.module, mode=f.mode))
        else:
            out.append(Entry(path, data=f.text.encode(), mode=f.mode))
    return out


class _Builder:
    def __init__(self, root: Path, key: str, inputs: Inputs) -> None:
        self.root = root
        self.key = key
        self.inputs = inputs
        self.store = BlobStore(root / "blobs")
        self.layouts: dict[str, Layout] = {}
        self.images: dict[tuple[str, str], Image] = {}
        self._layer_cache: dict[str, Layer] = {}
        self._imager_manifests: dict[str, dict[str, Descriptor]] = {}

    # -- plumbing ----------------------------------------------------------------------------

    def layout(self, name: str) -> Layout:
        if name not in self.layouts:
            self.layouts[name] = Layout(self.root / "layouts" / name, self.store)
        return self.layouts[name]

    def layer(self, cache_key: str, entries: Sequence[Entry]) -> Layer:
        if cache_key not in self._layer_cache:
            self._layer_cache[cache_key] = self.store.put_layer(entries)
        return self._layer_cache[cache_key]

    def tag_image(self, name: str, tag: str, per_arch: dict[str, Descriptor]) -> Image:
        """Tag an index over the ``per_arch`` manifests as ``siderolabs/<name>:<tag>``."""
        target = self.store.put_index([per_arch[a] for a in sorted(per_arch)])
        self.layout(name).tag(tag, target)
        image = Image(
            name=name,
            tag=tag,
            digest=target.digest,
            media_type=target.media_type,
            platforms=tuple(_platform(a) for a in sorted(per_arch)),
            manifests={_platform(a): d.digest for a, d in sorted(per_arch.items())},
            layout=self.layout(name).path,
        )
        prev = self.images.get((name, tag))
        if prev is not None and prev.digest != image.digest:
            raise ValueError(f"{name}:{tag} defined twice with different content")
        self.images[(name, tag)] = image
        return image

    # -- the release -------------------------------------------------------------------------

    def build(self) -> Release:
        kernel_modules = self._kernel_fixtures()
        imager_base = self.layer("imager-base", self._imager_base_entries())
        kernels = self.layer(
            "kernels",
            [
                Entry(
                    f"usr/install/{a}/vmlinuz", source=self.root / "fixtures/kernel" / a / "vmlinuz"
                )
                for a in ARCHES
            ],
        )
        versions = [self._version(v, imager_base, kernels) for v in VERSIONS]
        for tag in EXTRA_IMAGER_TAGS:
            self.tag_image("imager", tag, self._imager_manifests[EXTRA_IMAGER_TAGS_SOURCE])
        for layout in self.layouts.values():
            layout.save()
        return Release(
            root=self.root,
            key=self.key,
            source_date_epoch=SOURCE_DATE_EPOCH,
            kernel_release={a.value: self.inputs.arches[a].kernel_release for a in ARCHES},
            kernel_modules=kernel_modules,
            base_initramfs_members=BASE_INITRAMFS_MEMBERS,
            versions=tuple(versions),
            extra_imager_tags=EXTRA_IMAGER_TAGS,
            offered_versions=tuple(v.version for v in VERSIONS),
            images=tuple(self.images[k] for k in sorted(self.images)),
            debs=self.inputs.debs,
        )

    def _kernel_fixtures(self) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for arch in ARCHES:
            ai = self.inputs.arches[arch]
            kdir = self.root / "fixtures/kernel" / arch
            kdir.mkdir(parents=True)
            shutil.copyfile(ai.vmlinuz, kdir / "vmlinuz")
            mods = kdir / "modules" / ai.kernel_release
            shutil.copytree(ai.modules, mods)
            out[arch.value] = mods
        return out

    @staticmethod
    def _imager_base_entries() -> list[Entry]:
        script = (
            "#!/bin/sh\n"
            "echo 'imager of the image-service test release: holds boot artifacts only' >&2\n"
            "exit 1\n"
        )
        return [
            Entry("etc/modules.d/10-extra-modules.conf", data=b"search extras built-in\n"),
            Entry("usr/bin/imager", data=script.encode(), mode=0o755),
            Entry("bin/imager", link="../usr/bin/imager"),
        ]

    def _version(self, v: VersionSpec, imager_base: Layer, kernels: Layer) -> TalosRelease:
        arches: dict[str, ArchArtifacts] = {}
        artifact_entries: list[Entry] = []
        for arch in ARCHES:
            ai = self.inputs.arches[arch]
            work = self.root / "fixtures" / v.version / arch
            work.mkdir(parents=True)
            initramfs, sqsh = build_base_initramfs(work, v, ai)
            boot = work / "systemd-boot.efi"
            stub = work / "systemd-stub.efi"
            shutil.copyfile(ai.systemd_boot[v.efi_suite], boot)
            shutil.copyfile(ai.systemd_stub[v.efi_suite], stub)
            vmlinuz = work / "vmlinuz"
            os.link(self.root / "fixtures/kernel" / arch / "vmlinuz", vmlinuz)
            arches[arch.value] = ArchArtifacts(
                kernel_release=ai.kernel_release,
                vmlinuz=vmlinuz,
                initramfs=initramfs,
                rootfs_sqsh=sqsh,
                systemd_boot=boot,
                systemd_stub=stub,
            )
            base = f"usr/install/{arch}/"
            artifact_entries += [
                Entry(base + "initramfs.xz", source=initramfs),
                Entry(base + "systemd-boot.efi", source=boot),
                Entry(base + "systemd-stub.efi", source=stub),
            ]
            if v.sbom:
                artifact_entries.append(
                    Entry(base + "talos.spdx.json", data=_sbom(v.version, arch))
                )
        artifacts = self.store.put_layer(artifact_entries)
        imager_cfg = {
            "Entrypoint": ["/usr/bin/imager"],
            "Env": ["PATH=/usr/bin:/bin"],
            "Labels": {"org.opencontainers.image.version": v.version},
        }
        # Both manifests carry both arches' files, like upstream (talos-assets.md §3.1).
        manifests = {
            a.value: self.store.put_image(
                arch=a.value, layers=[imager_base, kernels, artifacts], config=imager_cfg
            )
            for a in ARCHES
        }
        self._imager_manifests[v.version] = manifests
        imager = self.tag_image("imager", v.version, manifests)
        installer = self._installer(v, arches)
        extensions = tuple(self._extension(v, e) for e in v.extensions)
        ext_catalogue = self._extensions_catalogue(v, extensions)
        overlays = tuple(self._overlay(o) for o in v.overlays)
        ovl_catalogue = self._overlays_catalogue(v, overlays)
        talosctl = self._talosctl(v) if v.talosctl else None
        return TalosRelease(
            version=v.version,
            initramfs_compression=v.initramfs_compression.value,
            squashfs_compression=v.squashfs_compression.value,
            modules_dir=v.modules_dir,
            firmware_dir=v.firmware_dir,
            installer_repo=v.installer_repo,
            efi_suite=v.efi_suite,
            arches=arches,
            extensions=extensions,
            overlays=overlays,
            imager=imager,
            installer=installer,
            extensions_catalogue=ext_catalogue,
            overlays_catalogue=ovl_catalogue,
            talosctl=talosctl,
        )

    # -- installers (talos-assets.md §3.2, §12) ------------------------------------------------

    def _installer(self, v: VersionSpec, arches: dict[str, ArchArtifacts]) -> Image:
        per_arch: dict[str, Descriptor] = {}
        for arch in ARCHES:
            script = (
                "#!/bin/sh\n"
                f"# Talos {v.version} installer ({arch}), image-service test release\n"
                'echo "installer $*: not a real installer (test release)" >&2\n'
                "exit 1\n"
            ).encode()
            config = {
                "Entrypoint": ["/bin/installer"],
                "Env": [
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    f"TARGETARCH={arch}",
                    f"VERSION={v.version}",
                ],
                "Labels": {"alpha.talos.dev/version": v.version},
            }
            if v.legacy_installer:
                # (1) squashed Alpine-like base with /bin/installer, (2) the boot artifacts
                base = self.layer(
                    f"installer-legacy-base-{v.version}-{arch}",
                    [
                        Entry("bin/installer", data=script, mode=0o755),
                        Entry("etc/alpine-release", data=b"3.20.3\n"),
                        Entry(
                            "etc/os-release",
                            data=b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.20.3\n',
                        ),
                        Entry(
                            "etc/ssl/certs/ca-certificates.crt", data=b"# test release: no CAs\n"
                        ),
                    ],
                )
                art = arches[arch]
                p = f"usr/install/{arch}/"
                boot_files = self.store.put_layer(
                    [
                        Entry(p + "initramfs.xz", source=art.initramfs),
                        Entry(p + "systemd-boot.efi", source=art.systemd_boot),
                        Entry(p + "systemd-stub.efi", source=art.systemd_stub),
                        Entry(p + "vmlinuz", source=art.vmlinuz),
                    ]
                )
                layers = [base, boot_files]
            else:
                # FROM scratch, squashed to one layer; /bin -> usr/bin (pkg-fhs); no boot assets
                layers = [
                    self.layer(
                        f"installer-base-{v.version}-{arch}",
                        [
                            Entry("bin", link="usr/bin"),
                            Entry(
                                "etc/ssl/certs/ca-certificates.crt",
                                data=b"# test release: no CAs\n",
                            ),
                            Entry("lib", link="usr/lib"),
                            Entry("sbin", link="usr/sbin"),
                            Entry("usr/bin/imager", link="installer"),
                            Entry("usr/bin/installer", data=script, mode=0o755),
                            Entry(
                                "usr/lib/os-release",
                                data=f'NAME="Talos"\nVERSION_ID={v.version}\n'.encode(),
                            ),
                            Entry("usr/sbin", is_dir=True, mode=0o755),
                        ],
                    )
                ]
            per_arch[arch.value] = self.store.put_image(
                arch=arch.value, layers=layers, config=config
            )
        return self.tag_image(v.installer_repo, v.version, per_arch)

    # -- extensions (talos-assets.md §3.3, §3.4) -------------------------------------------------

    def _extension(self, v: VersionSpec, e: ExtensionSpec) -> Extension:
        manifest = _extension_manifest(e)
        per_arch: dict[str, Descriptor] = {}
        files: dict[str, tuple[str, ...]] = {}
        for arch in ARCHES:
            ai = self.inputs.arches[arch]
            subst = {"fw": v.firmware_dir, "mod": v.modules_dir, "kver": ai.kernel_release}
            rootfs = _text_entries(e.files, "rootfs/", subst, ai)
            files[arch.value] = tuple(sorted(x.path.removeprefix("rootfs/") for x in rootfs))
            layer = self.layer(
                f"ext-{e.name}-{e.tag}-{arch}",
                [Entry("manifest.yaml", data=manifest.encode()), *rootfs],
            )
            per_arch[arch.value] = self.store.put_image(arch=arch.value, layers=[layer])
        image = self.tag_image(e.name, e.tag, per_arch)
        return Extension(
            name=e.repo,
            manifest_name=e.name,
            version=e.version,
            tag=e.tag,
            digest=image.digest,
            author=e.author,
            description=e.description,
            compatibility=e.compatibility,
            files=files,
            kernel_modules={
                a: tuple(f for f in fs if f.endswith(".ko")) for a, fs in files.items()
            },
        )

    def _extensions_catalogue(self, v: VersionSpec, exts: Sequence[Extension]) -> Image:
        lines = [e.catalogue_line() for e in exts]
        desc = "".join(
            f"{e.catalogue_line()}:\n"
            f"  author: {e.author}\n"
            "  description: |\n" + "".join(f"    {ln}\n" for ln in e.description.splitlines())
            for e in exts
        )
        parsed = yaml.safe_load(desc)
        assert list(parsed) == lines, "descriptions.yaml must key by the full image-digests line"
        layer = self.store.put_layer(
            [
                Entry("descriptions.yaml", data=desc.encode()),
                Entry("image-digests", data="".join(f"{ln}\n" for ln in lines).encode()),
            ]
        )
        return self.tag_image(
            "extensions", v.version, {"amd64": self.store.put_image(arch="amd64", layers=[layer])}
        )

    # -- overlays (talos-assets.md §3.4, §3.5) ---------------------------------------------------

    def _overlay(self, o: OverlaySpec) -> Overlay:
        per_arch: dict[str, Descriptor] = {}
        entries = [
            *(
                Entry(f"artifacts/arm64/{f.path}", data=f.text.encode(), mode=f.mode)
                for f in o.artifacts
            ),
            Entry(f"installers/{o.name}", data=o.installer.encode(), mode=0o755),
            Entry(f"profiles/{o.name}.yaml", data=o.profile.encode()),
        ]
        layer = self.layer(f"overlay-{o.image}-{o.tag}", entries)
        for arch in ARCHES:
            per_arch[arch.value] = self.store.put_image(arch=arch.value, layers=[layer])
        image = self.tag_image(o.image, o.tag, per_arch)
        return Overlay(
            name=o.name,
            image=o.repo,
            tag=o.tag,
            digest=image.digest,
            profile=o.profile,
            artifacts=tuple(sorted(f.path for f in o.artifacts)),
        )

    def _overlays_catalogue(self, v: VersionSpec, overlays: Sequence[Overlay]) -> Image:
        text = "overlays:\n" + "".join(
            f"  - name: {o.name}\n    image: {o.ref()}\n    digest: {o.digest}\n" for o in overlays
        )
        layer = self.store.put_layer([Entry("overlays.yaml", data=text.encode())])
        return self.tag_image(
            "overlays", v.version, {"amd64": self.store.put_image(arch="amd64", layers=[layer])}
        )

    def _talosctl(self, v: VersionSpec) -> Image:
        layer = self.layer(
            f"talosctl-{v.version}",
            [
                Entry(name, data=f"fake {name} {v.version} (test release)\n".encode(), mode=0o755)
                for name in TALOSCTL_TARGETS
            ],
        )
        return self.tag_image(
            "talosctl-all",
            v.version,
            {a.value: self.store.put_image(arch=a.value, layers=[layer]) for a in ARCHES},
        )


def _extension_manifest(e: ExtensionSpec) -> str:
    doc = {
        "version": "v1alpha1",
        "metadata": {
            "name": e.name,
            "version": e.version,
            "author": e.author,
            "description": e.description,
            "compatibility": {"talos": {"version": e.compatibility}},
        },
    }
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def _sbom(version: str, arch: str) -> bytes:
    return (
        '{"spdxVersion":"SPDX-2.3","name":"talos-' + version + "-" + arch + '",'
        '"dataLicense":"CC0-1.0","SPDXID":"SPDXRef-DOCUMENT","packages":[]}\n'
    ).encode()
