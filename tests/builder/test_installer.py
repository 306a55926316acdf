"""Installer images (talos-assets.md §12) from the test release's real bases.

The bases are pulled from the release registry with the ``RegistryClient`` exactly as the
builder does; boot files are the release's own (a real UKI for ≥ 1.10). Each image is then read
back by skopeo (``docker-archive:`` inspect and copy to ``oci:``), so a real OCI client accepts
it, and its layers are checked against the reference: the base layer kept, the artifacts layer's
file list, headers and bytes, the config copied from the base.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from image_service.oci import BlobCache, Platform, RegistryClient
from image_service.versions import Version
from services.builder.errors import BuildFailed
from services.builder.formats.installer import (
    CREATED,
    BootFile,
    BootFiles,
    InstallerBase,
    InstallerInputs,
    OverlayFiles,
    artifact_entries,
    build_installer,
    fetch_installer_base,
    installer_base_repository,
    uses_uki,
)
from services.builder.formats.uki import build_uki, kernel_version, talos_os_release, uki_profiles
from services.builder.talos.quirks import quirks_for
from tests.release import Release
from tests.support.registry import LocalRegistry

pytestmark = pytest.mark.registry

ARCHES = ("amd64", "arm64")
CMDLINE = "talos.platform=metal console=tty0"


def quirks(version: str) -> Any:
    return quirks_for(Version.parse(version))


# --- the plan (pure) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "secureboot", "expected"),
    [
        ("v1.7.7", False, ["initramfs.xz", "vmlinuz"]),
        ("v1.9.5", False, ["initramfs.xz", "vmlinuz"]),
        ("v1.7.7", True, ["systemd-boot.efi", "vmlinuz.efi.signed"]),
        ("v1.9.5", True, ["systemd-boot.efi", "vmlinuz.efi.signed"]),
        ("v1.10.0-alpha.1", False, ["systemd-boot.efi", "vmlinuz.efi"]),
        ("v1.11.3", False, ["systemd-boot.efi", "vmlinuz.efi"]),
        ("v1.11.3", True, ["systemd-boot.efi", "vmlinuz.efi"]),
    ],
)
def test_artifact_entries_by_version(version: str, secureboot: bool, expected: list[str]) -> None:
    for arch in ARCHES:
        names = [name for name, _ in artifact_entries(quirks(version), arch, secureboot)]
        assert names == [f"usr/install/{arch}/{n}" for n in expected]
    assert uses_uki(quirks(version), secureboot) == expected[0].startswith("systemd-boot")


@pytest.mark.parametrize(
    ("version", "repo"),
    [("v1.9.5", "siderolabs/installer"), ("v1.10.0", "siderolabs/installer-base")],
)
def test_base_repository(version: str, repo: str) -> None:
    assert installer_base_repository(quirks(version)) == repo


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bases(
    release_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], InstallerBase]:
    """The installer bases of v1.7.7 and v1.11.3 for both arches, pulled like the builder does."""
    cache = BlobCache(tmp_path_factory.mktemp("installer-blobs"))

    async def pull() -> dict[tuple[str, str], InstallerBase]:
        found = {}
        async with RegistryClient(release_registry.host, insecure=True, cache=cache) as client:
            for version in ("v1.7.7", "v1.11.3"):
                q = quirks(version)
                for arch in ARCHES:
                    pinned = await client.get_manifest(
                        installer_base_repository(q), version, platform=Platform("linux", arch)
                    )
                    found[version, arch] = await fetch_installer_base(
                        client, q, Version.parse(version), arch, pinned.digest
                    )
        return found

    return asyncio.run(pull())


@pytest.fixture(scope="module")
def ukis(test_release: Release, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real (unsigned) v1.11.3 installer UKIs per arch."""
    out = {}
    tmp = tmp_path_factory.mktemp("installer-uki")
    art_by_arch = test_release.version("v1.11.3").arches
    for arch in ARCHES:
        art = art_by_arch[arch]
        out[arch] = tmp / f"{arch}.efi"
        build_uki(
            art.systemd_stub,
            art.vmlinuz,
            art.initramfs,
            CMDLINE,
            talos_os_release("v1.11.3"),
            kernel_version(art.vmlinuz),
            out[arch],
            profiles=uki_profiles(quirks("v1.11.3"), "installer", CMDLINE),
        )
    return out


def inputs_for(
    release: Release,
    bases: dict[tuple[str, str], InstallerBase],
    ukis: dict[str, Path],
    version: str,
    arch: str,
) -> InstallerInputs:
    art = release.version(version).arches[arch]
    q = quirks(version)
    boot = (
        BootFiles(systemd_boot=art.systemd_boot, uki=ukis[arch])
        if uses_uki(q, False)
        else BootFiles(kernel=art.vmlinuz, initramfs=art.initramfs)
    )
    return InstallerInputs(Version.parse(version), arch, q, False, bases[version, arch], boot)


# --- reading the archive back --------------------------------------------------------------------


def read_archive(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, bytes]]:
    """(manifest.json entry, config, member name → bytes) of a docker-archive."""
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    (entry,) = json.loads(members["manifest.json"])
    return entry, json.loads(members[entry["Config"]]), members


def layer_members(blob: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        return tar.getmembers()


def layer_files(blob: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def skopeo(*args: str) -> str:
    result = subprocess.run(
        ["skopeo", "--insecure-policy", *args], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# --- the images ------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("version", ["v1.7.7", "v1.11.3"])
def test_installer_image(
    test_release: Release,
    bases: dict[tuple[str, str], InstallerBase],
    ukis: dict[str, Path],
    tmp_path: Path,
    version: str,
    arch: str,
) -> None:
    inputs = inputs_for(test_release, bases, ukis, version, arch)
    out = tmp_path / "installer.tar"
    build_installer(inputs, tmp_path / "work", out)
    entry, config, members = read_archive(out)
    legacy = version == "v1.7.7"
    base = bases[version, arch]

    # Layers: the base's first layer (the legacy one loses its boot files) + artifacts.
    assert len(entry["Layers"]) == 2
    assert entry["RepoTags"] == [base.reference]
    assert base.reference.endswith(
        f"/siderolabs/{'installer' if legacy else 'installer-base'}:{version}"
    )
    base_blob, artifacts_blob = (members[name] for name in entry["Layers"])
    assert sha256(base_blob) == base.layers[0].digest
    assert entry["Layers"][0] == base.layers[0].digest.removeprefix("sha256:") + ".tar.gz"
    assert sha256(artifacts_blob) == "sha256:" + entry["Layers"][1].removesuffix(".tar.gz")
    assert ("bin/installer" if legacy else "usr/bin/installer") in layer_files(base_blob)

    # The artifacts layer: exactly the reference's files, sorted, minimal headers, right bytes.
    art = test_release.version(version).arches[arch]
    expected = (
        {
            f"usr/install/{arch}/initramfs.xz": art.initramfs,
            f"usr/install/{arch}/vmlinuz": art.vmlinuz,
        }
        if legacy
        else {
            f"usr/install/{arch}/systemd-boot.efi": art.systemd_boot,
            f"usr/install/{arch}/vmlinuz.efi": ukis[arch],
        }
    )
    headers = layer_members(artifacts_blob)
    assert [h.name for h in headers] == sorted(expected)
    for header in headers:
        assert (header.type, header.mode, header.mtime, header.uid, header.gid) == (
            tarfile.REGTYPE, 0, 0, 0, 0,
        )  # fmt: skip
    files = layer_files(artifacts_blob)
    assert {n: sha256(b) for n, b in files.items()} == {
        n: sha256(p.read_bytes()) for n, p in expected.items()
    }

    # Config: copied from the base, arch/os set, created fixed, diff IDs of both layers.
    base_config = json.loads(base.config)
    assert config["architecture"] == arch
    assert config["os"] == "linux"
    assert config["created"] == CREATED == "2019-06-01T21:34:52Z"
    assert config["config"] == {
        "Entrypoint": ["/bin/installer"],
        "Env": base_config["config"]["Env"],
        "Labels": {"alpha.talos.dev/version": version},
    }
    assert f"TARGETARCH={arch}" in config["config"]["Env"]
    assert config["rootfs"]["diff_ids"][0] == base_config["rootfs"]["diff_ids"][0]
    assert len(config["rootfs"]["diff_ids"]) == len(config["history"]) == 2

    # A real OCI client reads it and converts it.
    inspected = json.loads(skopeo("inspect", f"docker-archive:{out}"))
    assert (inspected["Architecture"], inspected["Os"]) == (arch, "linux")
    assert len(inspected["Layers"]) == 2
    assert inspected["Labels"] == {"alpha.talos.dev/version": version}
    layout = tmp_path / "oci"
    skopeo("copy", f"docker-archive:{out}", f"oci:{layout}:{version}")
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.loads((layout / "blobs/sha256" / manifest_digest).read_text())
    assert len(manifest["layers"]) == 2
    copied = layout / "blobs/sha256" / manifest["layers"][1]["digest"].removeprefix("sha256:")
    assert sorted(layer_files(copied.read_bytes())) == sorted(expected)


def test_builds_are_reproducible(
    test_release: Release,
    bases: dict[tuple[str, str], InstallerBase],
    ukis: dict[str, Path],
    tmp_path: Path,
) -> None:
    inputs = inputs_for(test_release, bases, ukis, "v1.11.3", "amd64")
    build_installer(inputs, tmp_path / "w1", tmp_path / "a.tar")
    build_installer(inputs, tmp_path / "w2", tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_secureboot_legacy_names_the_uki_signed(
    test_release: Release,
    bases: dict[tuple[str, str], InstallerBase],
    ukis: dict[str, Path],
    tmp_path: Path,
) -> None:
    art = test_release.version("v1.7.7").arches["amd64"]
    inputs = replace(
        inputs_for(test_release, bases, ukis, "v1.7.7", "amd64"),
        secureboot=True,
        boot=BootFiles(systemd_boot=art.systemd_boot, uki=ukis["amd64"]),
    )
    out = tmp_path / "installer.tar"
    build_installer(inputs, tmp_path / "work", out)
    entry, _, members = read_archive(out)
    assert len(entry["Layers"]) == 2
    assert sorted(layer_files(members[entry["Layers"][1]])) == [
        "usr/install/amd64/systemd-boot.efi",
        "usr/install/amd64/vmlinuz.efi.signed",
    ]


def test_overlay_adds_a_third_layer(
    test_release: Release,
    release_registry: LocalRegistry,
    bases: dict[tuple[str, str], InstallerBase],
    ukis: dict[str, Path],
    tmp_path: Path,
) -> None:
    """The rpi_generic overlay image of the release, unpacked, becomes the overlay layer."""
    overlay = test_release.version("v1.11.3").overlays[0]
    unpacked = tmp_path / "overlay"

    async def pull() -> list[Path]:
        async with RegistryClient(
            release_registry.host, insecure=True, cache=BlobCache(tmp_path / "blobs")
        ) as client:
            image = await client.get_manifest(
                overlay.image, overlay.digest, platform=Platform("linux", "arm64")
            )
            return [
                await client.fetch_blob(overlay.image, layer.digest)
                for layer in image.document.layers
            ]

    for layer in asyncio.run(pull()):
        with tarfile.open(layer) as tar:
            tar.extractall(unpacked, filter="data")
    inputs = replace(
        inputs_for(test_release, bases, ukis, "v1.11.3", "arm64"),
        overlay=OverlayFiles(
            artifacts=unpacked / "artifacts",
            installer=unpacked / "installers" / overlay.name,
            extra_options=b"configTxtAppend: dtoverlay=vc4-kms-v3d\n",
        ),
    )
    out = tmp_path / "installer.tar"
    build_installer(inputs, tmp_path / "work", out)
    entry, config, members = read_archive(out)
    assert len(entry["Layers"]) == len(config["rootfs"]["diff_ids"]) == 3
    blob = members[entry["Layers"][2]]
    headers = {h.name: h for h in layer_members(blob)}
    assert list(headers) == sorted(
        [f"overlay/artifacts/arm64/{a}" for a in overlay.artifacts]
        + ["overlay/extra-options", "overlay/installers/default"]
    )
    assert headers["overlay/installers/default"].mode == 0o755
    files = layer_files(blob)
    assert files["overlay/extra-options"] == b"configTxtAppend: dtoverlay=vc4-kms-v3d\n"
    assert (
        files["overlay/installers/default"] == (unpacked / "installers" / overlay.name).read_bytes()
    )
    inspected = json.loads(skopeo("inspect", f"docker-archive:{out}"))
    assert len(inspected["Layers"]) == 3


def test_missing_boot_file_is_a_build_error(
    test_release: Release,
    bases: dict[tuple[str, str], InstallerBase],
    ukis: dict[str, Path],
    tmp_path: Path,
) -> None:
    inputs = replace(
        inputs_for(test_release, bases, ukis, "v1.11.3", "amd64"),
        boot=BootFiles(uki=ukis["amd64"]),
    )
    with pytest.raises(BuildFailed, match=BootFile.SYSTEMD_BOOT.value):
        build_installer(inputs, tmp_path / "work", tmp_path / "out.tar")


def test_base_config_must_match_its_layers(
    test_release: Release,
    bases: dict[tuple[str, str], InstallerBase],
    ukis: dict[str, Path],
    tmp_path: Path,
) -> None:
    inputs = inputs_for(test_release, bases, ukis, "v1.11.3", "amd64")
    config = json.loads(inputs.base.config)
    config["rootfs"]["diff_ids"].append(config["rootfs"]["diff_ids"][0])
    broken = replace(inputs, base=replace(inputs.base, config=json.dumps(config).encode()))
    with pytest.raises(BuildFailed, match="2 diff IDs for 1 layers"):
        build_installer(broken, tmp_path / "work", tmp_path / "out.tar")
