"""The synthetic Talos test release: its files, its images in a real registry, and its boots.

Layout facts come from talos-assets.md §3/§12 and api.md §11; the boots follow
verification.md §1 (direct kernel boot, extension cpio appended, markers on the serial port).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.release import DEFAULT_CACHE, Release, ensure_release
from tests.release.initramfs import make_extension_section, make_microcode_cpio
from tests.release.markers import parse_markers
from tests.release.spec import (
    BASE_INITRAMFS_MEMBERS,
    EXTRA_IMAGER_TAGS,
    TALOSCTL_TARGETS,
    Compression,
)
from tests.support.qemu import Firmware, boot
from tests.support.registry import LocalRegistry

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
EFI_NAMES = {"amd64": "x64", "arm64": "aa64"}
PE_MACHINE = {"amd64": 0x8664, "arm64": 0xAA64}

# version -> (initramfs compression, modules dir, firmware dir, installer repo, systemd major)
QUIRKS = {
    "v1.7.7": ("xz", "lib/modules", "lib/firmware", "installer", 252),
    "v1.11.3": ("zstd", "usr/lib/modules", "usr/lib/firmware", "installer-base", 257),
    "v1.12.0-beta.1": ("zstd", "usr/lib/modules", "usr/lib/firmware", "installer-base", 257),
}
VERSIONS = list(QUIRKS)
ARCHES = ["amd64", "arm64"]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def decompress(data: bytes) -> bytes:
    tool = ["xz", "-dc"] if data.startswith(XZ_MAGIC) else ["zstd", "-dc"]
    return subprocess.run(tool, input=data, capture_output=True, check=True).stdout


def cpio_members(cpio: bytes) -> list[str]:
    out = subprocess.run(["cpio", "-it", "--quiet"], input=cpio, capture_output=True, check=True)
    return out.stdout.decode().split()


def cpio_extract(cpio: bytes, member: str, dest: Path) -> bytes:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cpio", "-id", "--quiet", member], input=cpio, cwd=dest, check=True)
    return (dest / member).read_bytes()


# --- the files --------------------------------------------------------------------------------


def test_versions_and_quirks(test_release: Release) -> None:
    assert [v.version for v in test_release.versions] == VERSIONS
    assert test_release.offered_versions == ("v1.7.7", "v1.11.3", "v1.12.0-beta.1")
    for v in test_release.versions:
        comp, mods, fw, installer, _ = QUIRKS[v.version]
        assert (v.initramfs_compression, v.modules_dir, v.firmware_dir) == (comp, mods, fw)
        assert v.installer_repo == installer
        assert v.installer.name == installer
    assert test_release.base_initramfs_members == BASE_INITRAMFS_MEMBERS


@pytest.mark.parametrize("arch", ARCHES)
def test_kernels_are_real_debian_kernels(test_release: Release, arch: str) -> None:
    head = test_release.version("v1.11.3").arches[arch].vmlinuz.read_bytes()[:0x240]
    if arch == "amd64":
        assert head[0x202:0x206] == b"HdrS"  # bzImage setup header
    else:
        assert head[0x38:0x3C] == b"ARM\x64"  # arm64 Image header
    kver = test_release.kernel_release[arch]
    assert kver.endswith(f"-{arch}")
    dummy = test_release.kernel_modules[arch] / "kernel/drivers/net/dummy.ko"
    assert f"vermagic={kver} ".encode() in dummy.read_bytes()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("arch", ARCHES)
def test_base_initramfs_layout(
    test_release: Release, version: str, arch: str, tmp_path: Path
) -> None:
    v = test_release.version(version)
    art = v.arches[arch]
    data = art.initramfs.read_bytes()
    if QUIRKS[version][0] == "xz":
        assert data.startswith(XZ_MAGIC)
        listing = subprocess.run(
            ["xz", "--robot", "-l", str(art.initramfs)], capture_output=True, text=True, check=True
        ).stdout
        checks = {ln.split("\t")[6] for ln in listing.splitlines() if ln.startswith("file\t")}
        assert checks == {"CRC32"}, listing  # CRC64 would not boot (verification.md §1)
    else:
        assert data.startswith(ZSTD_MAGIC)
    cpio = decompress(data)
    assert cpio_members(cpio) == list(BASE_INITRAMFS_MEMBERS)
    assert cpio_extract(cpio, "rootfs.sqsh", tmp_path / "x") == art.rootfs_sqsh.read_bytes()

    stats = subprocess.run(
        ["unsquashfs", "-s", str(art.rootfs_sqsh)], capture_output=True, text=True, check=True
    ).stdout
    assert f"Compression {v.squashfs_compression}" in stats
    paths = subprocess.run(
        ["unsquashfs", "-l", "-d", "", str(art.rootfs_sqsh)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    moddir = f"/{v.modules_dir}/{art.kernel_release}"
    for rel in ("modules.dep", "modules.dep.bin", "kernel/fs/overlayfs/overlay.ko"):
        assert f"{moddir}/{rel}" in paths
    assert "/usr/lib/os-release" in paths


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("arch", ARCHES)
def test_systemd_boot_and_stub(test_release: Release, version: str, arch: str) -> None:
    art = test_release.version(version).arches[arch]
    major = QUIRKS[version][4]
    for path in (art.systemd_boot, art.systemd_stub):
        data = path.read_bytes()
        assert data[:2] == b"MZ"
        pe = int.from_bytes(data[0x3C:0x40], "little")
        assert data[pe : pe + 4] == b"PE\0\0"
        assert int.from_bytes(data[pe + 4 : pe + 6], "little") == PE_MACHINE[arch]
    assert f"systemd-boot {major}".encode() in art.systemd_boot.read_bytes()
    assert f"systemd-stub {major}".encode() in art.systemd_stub.read_bytes()


def test_cached_build_is_reused(test_release: Release) -> None:
    cache = os.environ.get("IMAGE_SERVICE_TEST_RELEASE_CACHE")
    again = ensure_release(Path(cache) if cache else DEFAULT_CACHE)
    assert again.key == test_release.key
    assert again.root == test_release.root
    assert again.images == test_release.images


@pytest.mark.slow
def test_rebuild_gives_identical_digests(test_release: Release, tmp_path: Path) -> None:
    """A fresh build from the same inputs (downloads shared) reproduces every digest."""
    (tmp_path / "downloads").symlink_to(test_release.root.parent / "downloads")
    rebuilt = ensure_release(tmp_path)
    assert rebuilt.key == test_release.key
    assert rebuilt.root != test_release.root
    assert [(i.name, i.tag, i.digest) for i in rebuilt.images] == [
        (i.name, i.tag, i.digest) for i in test_release.images
    ]


# --- the registry -------------------------------------------------------------------------------


def skopeo(*args: str) -> str:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, check=True).stdout


class Reg:
    """Minimal reads from the registry over HTTP (blobs and manifests by digest)."""

    def __init__(self, registry: LocalRegistry) -> None:
        self.url = registry.url

    def manifest(self, repo: str, ref: str) -> tuple[dict[str, Any], str]:
        r = httpx.get(
            f"{self.url}/v2/{repo}/manifests/{ref}", headers={"Accept": f"{INDEX}, {MANIFEST}"}
        )
        r.raise_for_status()
        assert r.headers["Docker-Content-Digest"] == sha256(r.content)
        return r.json(), sha256(r.content)

    def blob(self, repo: str, digest: str) -> bytes:
        r = httpx.get(f"{self.url}/v2/{repo}/blobs/{digest}", follow_redirects=True)
        r.raise_for_status()
        assert sha256(r.content) == digest
        return r.content

    def platform_manifest(self, repo: str, ref: str, arch: str) -> dict[str, Any]:
        index, _ = self.manifest(repo, ref)
        assert index["mediaType"] == INDEX
        (entry,) = [m for m in index["manifests"] if m["platform"]["architecture"] == arch]
        manifest, _ = self.manifest(repo, entry["digest"])
        return manifest

    def layers(
        self, repo: str, manifest: dict[str, Any]
    ) -> list[dict[str, tarfile.TarInfo | bytes]]:
        out = []
        for layer in manifest["layers"]:
            assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
            data = gzip.decompress(self.blob(repo, layer["digest"]))
            files: dict[str, tarfile.TarInfo | bytes] = {}
            with tarfile.open(fileobj=io.BytesIO(data)) as tf:
                for m in tf.getmembers():
                    f = tf.extractfile(m) if m.isfile() else None
                    files[m.name] = f.read() if f is not None else m
            out.append(files)
        return out

    def config(self, repo: str, manifest: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.blob(repo, manifest["config"]["digest"]))
        return result


def regular_files(layer: dict[str, tarfile.TarInfo | bytes]) -> dict[str, bytes]:
    return {k: v for k, v in layer.items() if isinstance(v, bytes)}


@pytest.mark.registry
def test_every_tag_is_pushed_with_its_digest_and_platforms(
    release_registry: LocalRegistry, test_release: Release
) -> None:
    for image in test_release.images:
        raw = skopeo(
            "inspect", "--raw", "--tls-verify=false", f"docker://{image.ref(release_registry.host)}"
        )
        assert sha256(raw.encode()) == image.digest, image.ref()
        doc = json.loads(raw)
        assert doc["mediaType"] == image.media_type == INDEX
        platforms = [
            f"{m['platform']['os']}/{m['platform']['architecture']}" for m in doc["manifests"]
        ]
        assert tuple(platforms) == image.platforms
        assert {
            p: m["digest"] for p, m in zip(platforms, doc["manifests"], strict=True)
        } == image.manifests
    # multi-arch where upstream is multi-arch; catalogues are amd64 only
    for v in test_release.versions:
        assert v.imager.platforms == ("linux/amd64", "linux/arm64")
        assert v.installer.platforms == ("linux/amd64", "linux/arm64")
        assert v.extensions_catalogue.platforms == ("linux/amd64",)
        assert v.overlays_catalogue.platforms == ("linux/amd64",)


@pytest.mark.registry
def test_tags_per_repository(release_registry: LocalRegistry, test_release: Release) -> None:
    expected: dict[str, set[str]] = {}
    for image in test_release.images:
        expected.setdefault(image.repo, set()).add(image.tag)
    assert set(expected["siderolabs/imager"]) == {*VERSIONS, *EXTRA_IMAGER_TAGS}
    assert expected["siderolabs/installer"] == {"v1.7.7"}
    assert expected["siderolabs/installer-base"] == {"v1.11.3", "v1.12.0-beta.1"}
    assert expected["siderolabs/extensions"] == set(VERSIONS)
    assert expected["siderolabs/overlays"] == set(VERSIONS)
    assert expected["siderolabs/talosctl-all"] == {"v1.11.3", "v1.12.0-beta.1"}
    for repo, tags in expected.items():
        listed = json.loads(
            skopeo("list-tags", "--tls-verify=false", f"docker://{release_registry.host}/{repo}")
        )
        assert set(listed["Tags"]) == tags, repo
    source = test_release.image("imager", "v1.11.3").digest
    for tag in EXTRA_IMAGER_TAGS:
        assert test_release.image("imager", tag).digest == source


@pytest.mark.registry
@pytest.mark.parametrize("version", VERSIONS)
def test_imager_holds_both_arches_in_every_manifest(
    release_registry: LocalRegistry, test_release: Release, version: str
) -> None:
    reg = Reg(release_registry)
    v = test_release.version(version)
    names = ["vmlinuz", "initramfs.xz", "systemd-stub.efi", "systemd-boot.efi"]
    if version == "v1.12.0-beta.1":
        names.append("talos.spdx.json")
    for platform_arch in ARCHES:
        manifest = reg.platform_manifest("siderolabs/imager", version, platform_arch)
        assert reg.config("siderolabs/imager", manifest)["architecture"] == platform_arch
        flat: dict[str, bytes] = {}
        for layer in reg.layers("siderolabs/imager", manifest):
            flat.update(regular_files(layer))
        install = {k: b for k, b in flat.items() if k.startswith("usr/install/")}
        assert sorted(install) == sorted(f"usr/install/{a}/{n}" for a in ARCHES for n in names)
        for arch in ARCHES:
            art = v.arches[arch]
            assert install[f"usr/install/{arch}/vmlinuz"] == art.vmlinuz.read_bytes()
            assert install[f"usr/install/{arch}/initramfs.xz"] == art.initramfs.read_bytes()
            assert install[f"usr/install/{arch}/systemd-boot.efi"] == art.systemd_boot.read_bytes()
            assert install[f"usr/install/{arch}/systemd-stub.efi"] == art.systemd_stub.read_bytes()


@pytest.mark.registry
@pytest.mark.parametrize("version", VERSIONS)
def test_installer_images(
    release_registry: LocalRegistry, test_release: Release, version: str
) -> None:
    reg = Reg(release_registry)
    v = test_release.version(version)
    repo = f"siderolabs/{v.installer_repo}"
    for arch in ARCHES:
        manifest = reg.platform_manifest(repo, version, arch)
        config = reg.config(repo, manifest)["config"]
        assert config["Entrypoint"] == ["/bin/installer"]
        assert f"TARGETARCH={arch}" in config["Env"]
        assert f"VERSION={version}" in config["Env"]
        assert config["Labels"]["alpha.talos.dev/version"] == version
        layers = reg.layers(repo, manifest)
        if v.installer_repo == "installer-base":
            (layer,) = layers  # one squashed layer, no boot assets
            assert "usr/bin/installer" in regular_files(layer)
            assert not any(k.startswith("usr/install") for k in layer)
        else:
            base, boot_files = layers  # legacy: tools + the arch's boot artifacts
            assert "bin/installer" in regular_files(base)
            art = v.arches[arch]
            assert regular_files(boot_files) == {
                f"usr/install/{arch}/vmlinuz": art.vmlinuz.read_bytes(),
                f"usr/install/{arch}/initramfs.xz": art.initramfs.read_bytes(),
                f"usr/install/{arch}/systemd-stub.efi": art.systemd_stub.read_bytes(),
                f"usr/install/{arch}/systemd-boot.efi": art.systemd_boot.read_bytes(),
            }


@pytest.mark.registry
@pytest.mark.parametrize("version", VERSIONS)
def test_extension_images(
    release_registry: LocalRegistry, test_release: Release, version: str
) -> None:
    reg = Reg(release_registry)
    v = test_release.version(version)
    assert len(v.extensions) >= 4
    kinds = set()
    for ext in v.extensions:
        for arch in ARCHES:
            manifest = reg.platform_manifest(ext.name, ext.tag, arch)
            (layer,) = reg.layers(ext.name, manifest)
            assert {k.split("/")[0] for k in layer} == {"manifest.yaml", "rootfs"}
            files = regular_files(layer)
            meta = yaml.safe_load(files["manifest.yaml"])
            assert meta["version"] == "v1alpha1"
            assert meta["metadata"]["name"] == ext.manifest_name == ext.name.split("/")[1]
            assert meta["metadata"]["version"] == ext.version
            assert meta["metadata"]["compatibility"]["talos"]["version"] == ext.compatibility
            assert sorted(
                k.removeprefix("rootfs/") for k in files if k != "manifest.yaml"
            ) == sorted(ext.files[arch])
            for path in ext.files[arch]:
                if "ucode" in path or "/amdgpu/" in path:
                    assert path.startswith(v.firmware_dir + "/")
                    kinds.add("microcode" if "ucode" in path else "firmware")
                elif path.endswith(".ko"):
                    kver = test_release.kernel_release[arch]
                    assert path == f"{v.modules_dir}/{kver}/extras/dummy.ko"
                    assert f"vermagic={kver} ".encode() in files[f"rootfs/{path}"]
                    kinds.add("module")
                elif path.startswith("usr/local/"):
                    kinds.add("plain")
    assert kinds == {"microcode", "firmware", "module", "plain"}
    names = {e.name for e in v.extensions}
    assert ("siderolabs/amdgpu-firmware" in names) == (version == "v1.7.7")  # renamed later


@pytest.mark.registry
@pytest.mark.parametrize("version", VERSIONS)
def test_extensions_catalogue(
    release_registry: LocalRegistry, test_release: Release, version: str
) -> None:
    reg = Reg(release_registry)
    v = test_release.version(version)
    manifest = reg.platform_manifest("siderolabs/extensions", version, "amd64")
    (layer,) = reg.layers("siderolabs/extensions", manifest)
    files = regular_files(layer)
    assert sorted(files) == ["descriptions.yaml", "image-digests"]
    lines = files["image-digests"].decode().splitlines()
    assert lines == [e.catalogue_line() for e in v.extensions]
    descriptions = yaml.safe_load(files["descriptions.yaml"])
    assert list(descriptions) == lines
    for line, ext in zip(lines, v.extensions, strict=True):
        ref, digest = line.split("@")
        assert ref.startswith("ghcr.io/siderolabs/")
        repo = ref.removeprefix("ghcr.io/").rsplit(":", 1)[0]
        _, pushed = reg.manifest(repo, digest)  # the catalogue digest is what the registry serves
        assert pushed == digest
        assert descriptions[line] == {"author": ext.author, "description": ext.description}


@pytest.mark.registry
@pytest.mark.parametrize("version", VERSIONS)
def test_overlays_catalogue_and_image(
    release_registry: LocalRegistry, test_release: Release, version: str, tmp_path: Path
) -> None:
    reg = Reg(release_registry)
    v = test_release.version(version)
    manifest = reg.platform_manifest("siderolabs/overlays", version, "amd64")
    (layer,) = reg.layers("siderolabs/overlays", manifest)
    catalogue = yaml.safe_load(regular_files(layer)["overlays.yaml"])
    assert catalogue == {
        "overlays": [{"name": o.name, "image": o.ref(), "digest": o.digest} for o in v.overlays]
    }
    (overlay,) = v.overlays
    _, pushed = reg.manifest(overlay.image, overlay.digest)
    assert pushed == overlay.digest
    for arch in ARCHES:
        (olayer,) = reg.layers(
            overlay.image, reg.platform_manifest(overlay.image, overlay.tag, arch)
        )
        files = regular_files(olayer)
        assert sorted(files) == sorted(
            [
                *(f"artifacts/arm64/{a}" for a in overlay.artifacts),
                "installers/rpi_generic",
                "profiles/rpi_generic.yaml",
            ]
        )
        assert isinstance(olayer["installers"], tarfile.TarInfo)
        assert (
            yaml.safe_load(files["profiles/rpi_generic.yaml"])["output"]["imageOptions"]["diskSize"]
            == 1306525696
        )
    # the installer speaks the overlay protocol (talos-assets.md §3.5)
    root = tmp_path / "overlay"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    installer = root / "installers/rpi_generic"
    installer.chmod(0o755)
    opts = subprocess.run(
        [installer, "get-options"], input="{}\n", capture_output=True, text=True, check=True
    )
    assert yaml.safe_load(opts.stdout)["name"] == "rpi_generic"
    mount = tmp_path / "mnt"
    request = yaml.safe_dump(
        {
            "installDisk": str(tmp_path / "disk.raw"),
            "mountPrefix": str(mount),
            "artifactsPath": str(root / "artifacts"),
            "extraOptions": {},
        }
    )
    subprocess.run([installer, "install"], input=request, text=True, check=True)
    assert (mount / "boot/EFI/start4.elf").read_bytes() == files[
        "artifacts/arm64/firmware/boot/start4.elf"
    ]
    assert (mount / "boot/EFI/config.txt").exists()


@pytest.mark.registry
def test_talosctl_all(release_registry: LocalRegistry, test_release: Release) -> None:
    reg = Reg(release_registry)
    for version in ("v1.11.3", "v1.12.0-beta.1"):
        (layer,) = reg.layers(
            "siderolabs/talosctl-all",
            reg.platform_manifest("siderolabs/talosctl-all", version, "amd64"),
        )
        assert sorted(regular_files(layer)) == sorted(TALOSCTL_TARGETS)
    assert test_release.version("v1.7.7").talosctl is None


# --- boots ----------------------------------------------------------------------------------------

SCHEMATIC_ID = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
CONSOLE = {"amd64": "console=ttyS0", "arm64": "console=ttyAMA0"}


def assert_markers_once(report_lines: list[str]) -> None:
    dups = sorted({ln for ln in report_lines if report_lines.count(ln) > 1})
    assert not dups, f"marker lines printed more than once: {dups}"


@pytest.mark.boot
@pytest.mark.parametrize("arch", ARCHES)
def test_boot_base_initramfs(test_release: Release, arch: str, tmp_path: Path) -> None:
    """Kernel + base initramfs alone: init runs, mounts rootfs.sqsh, finds no extensions."""
    v = test_release.version("v1.12.0-beta.1")
    art = v.arches[arch]
    append = f"{CONSOLE[arch]} panic=-1 quiet talos.platform=metal"
    result = boot(
        arch, tmp_path, kernel=art.vmlinuz, initrd=art.initramfs, append=append, timeout=120
    )
    report = parse_markers(result.log)
    assert report.done, result.describe()
    assert report.boot_ok
    assert report.cmdline == append
    assert report.firmware == "BIOS"
    assert report.kernel is not None and report.kernel.startswith(test_release.kernel_release[arch])
    assert report.rootfs == "v1.12.0-beta.1"
    assert report.kmods == {"overlay": "loaded"}
    assert report.microcode == ()
    assert report.firmware_files == []
    assert report.extension_count is None
    assert report.extensions == [] and report.schematics == []
    assert_markers_once(report.lines)


# (version, arch, firmware, console args): xz/BIOS and zstd/UEFI on both arches; the amd64 UEFI
# case uses Talos' own "console=tty0", so markers must reach the serial port without console=.
EXT_BOOTS = [
    ("v1.7.7", "amd64", Firmware.BIOS, "console=ttyS0 console=tty0"),
    ("v1.11.3", "amd64", Firmware.UEFI, "console=tty0"),
    ("v1.7.7", "arm64", Firmware.BIOS, "console=ttyAMA0"),
    ("v1.11.3", "arm64", Firmware.UEFI, "console=ttyAMA0"),
]


@pytest.mark.boot
@pytest.mark.parametrize(("version", "arch", "firmware", "console"), EXT_BOOTS)
def test_boot_with_extension_section(
    test_release: Release, version: str, arch: str, firmware: Firmware, console: str, tmp_path: Path
) -> None:
    """Base initramfs + a hand-made extension section (and early microcode on amd64), laid out
    like talos-assets.md §4.5: the init mounts every layer, loads the extension's module, sees
    the merged modules.dep, the schematic ID, firmware and microcode."""
    v = test_release.version(version)
    art = v.arches[arch]
    kver = art.kernel_release
    moddir = Path(v.modules_dir) / kver

    plain = tmp_path / "l0"
    (plain / "usr/local/bin").mkdir(parents=True)
    (plain / "usr/local/bin/runsc").write_text("#!/bin/sh\n")
    (plain / "etc/cri/conf.d").mkdir(parents=True)
    (plain / "etc/cri/conf.d/gvisor.part").write_text("[plugins]\n")
    module = tmp_path / "l1"
    (module / moddir / "extras").mkdir(parents=True)
    shutil.copyfile(
        test_release.kernel_modules[arch] / "kernel/drivers/net/dummy.ko",
        module / moddir / "extras/dummy.ko",
    )
    schematic = tmp_path / "l2"
    (schematic / "usr/local/share/schematic").mkdir(parents=True)
    (schematic / "usr/local/share/schematic" / SCHEMATIC_ID).write_text("")
    depmod = tmp_path / "l3"
    (depmod / moddir).mkdir(parents=True)
    (depmod / moddir / "modules.dep").write_text(
        "kernel/drivers/block/loop.ko:\nextras/dummy.ko:\n"
    )
    firmware_file = f"{v.firmware_dir}/amdgpu/navi10_smc.bin"
    section = make_extension_section(
        tmp_path,
        [
            ("gvisor", "20250505.0", plain),
            ("gasket-driver", "5815ee3", module),
            ("schematic", SCHEMATIC_ID, schematic),
            ("modules.dep", kver, depmod),
        ],
        compression=Compression(v.initramfs_compression),
        squashfs_compression=Compression(v.squashfs_compression),
        extra_files={firmware_file: b"FAKE-AMDGPU\n"},
    )
    initrd = [art.initramfs, section]
    if arch == "amd64":
        initrd.insert(0, make_microcode_cpio(tmp_path, {"GenuineIntel.bin": b"U" * 1234}))

    append = f"{console} panic=-1 quiet"
    result = boot(
        arch,
        tmp_path,
        kernel=art.vmlinuz,
        initrd=initrd,
        append=append,
        firmware=firmware,
        timeout=150,
    )
    report = parse_markers(result.log)
    assert report.done, result.describe()
    assert report.firmware == ("UEFI" if firmware is Firmware.UEFI else "BIOS")
    assert report.cmdline is not None and report.cmdline.startswith(append)
    assert report.rootfs == version
    assert [(e.name, e.version, e.image, e.files) for e in report.extensions] == [
        ("gvisor", "20250505.0", "0.sqsh", 2),
        ("gasket-driver", "5815ee3", "1.sqsh", 1),
        ("schematic", SCHEMATIC_ID, "2.sqsh", 1),
        ("modules.dep", kver, "3.sqsh", 1),
    ]
    assert report.extension_failures == []
    assert report.extension_count == 4
    assert report.schematics == [SCHEMATIC_ID]
    assert report.kmods["dummy"] == "loaded"  # the extension's real module matches the kernel
    assert report.overlay is not None and report.overlay.startswith("ok /layers/layer3:")
    assert report.depmod == ["extras/dummy.ko"]
    assert report.firmware_files == [f"/{firmware_file}"]
    assert report.microcode == (("GenuineIntel.bin:1234",) if arch == "amd64" else ())
    if firmware is Firmware.UEFI:
        assert report.secureboot == "disabled"
    assert_markers_once(report.lines)
