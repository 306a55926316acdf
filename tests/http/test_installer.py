"""Installer images through /image, read by skopeo (an independent OCI client).

Expected layers and files come from reference/talos-assets.md §12: from 1.10 the base is one
layer of installer-base plus an artifacts layer holding exactly systemd-boot.efi and the UKI;
before 1.10 the legacy installer's first layer plus vmlinuz and initramfs.xz.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.release import Release
from tests.support.registry import LocalRegistry
from tests.support.service import ServiceProcess, release_service

pytestmark = pytest.mark.registry

EMPTY = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"


@pytest.fixture(scope="module")
def service(
    release_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    proc = release_service(tmp_path_factory.mktemp("installer"), release_registry.host)
    assert httpx.post(f"{proc.url}/schematics", content="{}").json()["id"] == EMPTY
    yield proc
    assert proc.stop() == 0


@pytest.mark.parametrize(
    ("version", "path", "base_layers", "artifacts"),
    [
        (
            "v1.11.3",
            "installer-amd64.tar",
            1,
            ["usr/install/amd64/systemd-boot.efi", "usr/install/amd64/vmlinuz.efi"],
        ),
        (
            "v1.11.3",
            "metal-installer-arm64.tar",
            1,
            ["usr/install/arm64/systemd-boot.efi", "usr/install/arm64/vmlinuz.efi"],
        ),
        (
            "v1.7.7",
            "installer-amd64.tar",
            1,
            ["usr/install/amd64/initramfs.xz", "usr/install/amd64/vmlinuz"],
        ),
    ],
)
def test_installer_tarball(
    service: ServiceProcess,
    test_release: Release,
    tmp_path: Path,
    version: str,
    path: str,
    base_layers: int,
    artifacts: list[str],
) -> None:
    tar = tmp_path / path
    with httpx.stream("GET", f"{service.url}/image/{EMPTY}/{version}/{path}", timeout=300) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"] == "application/x-tar"
        with tar.open("wb") as out:
            for chunk in r.iter_bytes():
                out.write(chunk)
    inspected = subprocess.run(
        ["skopeo", "inspect", f"docker-archive:{tar}"], capture_output=True, text=True, check=True
    )
    info = json.loads(inspected.stdout)
    arch = "arm64" if "arm64" in path else "amd64"
    assert info["Architecture"] == arch
    assert len(info["Layers"]) == base_layers + 1
    copied = tmp_path / "oci"
    subprocess.run(
        ["skopeo", "copy", f"docker-archive:{tar}", f"oci:{copied}:installer"],
        capture_output=True,
        check=True,
    )
    index = json.loads((copied / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":", 1)[1]
    manifest = json.loads((copied / "blobs" / "sha256" / manifest_digest).read_text())
    last = manifest["layers"][-1]["digest"].split(":", 1)[1]
    with gzip.open(copied / "blobs" / "sha256" / last) as stream, tarfile.open(fileobj=stream) as t:
        assert sorted(t.getnames()) == artifacts


def test_overlay_layer(service: ServiceProcess, test_release: Release, tmp_path: Path) -> None:
    body = (
        "overlay:\n  image: siderolabs/sbc-raspberrypi\n  name: rpi_generic\n"
        "  options:\n    configTxtAppend: dtoverlay=vc4-kms-v3d\n"
    )
    flavor = httpx.post(f"{service.url}/schematics", content=body).json()["id"]
    tar = tmp_path / "installer.tar"
    answer = httpx.get(f"{service.url}/image/{flavor}/v1.11.3/installer-arm64.tar", timeout=300)
    assert answer.status_code == 200, answer.text
    tar.write_bytes(answer.content)
    info = json.loads(
        subprocess.run(
            ["skopeo", "inspect", f"docker-archive:{tar}"], capture_output=True, check=True
        ).stdout
    )
    assert len(info["Layers"]) == 3  # base, artifacts, overlay
    copied = tmp_path / "oci"
    subprocess.run(
        ["skopeo", "copy", f"docker-archive:{tar}", f"oci:{copied}:x"],
        capture_output=True,
        check=True,
    )
    index = json.loads((copied / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":", 1)[1]
    manifest = json.loads((copied / "blobs" / "sha256" / digest).read_text())
    overlay = manifest["layers"][-1]["digest"].split(":", 1)[1]
    with (
        gzip.open(copied / "blobs" / "sha256" / overlay) as stream,
        tarfile.open(fileobj=stream) as layer,
    ):
        names = layer.getnames()
        options = layer.extractfile("overlay/extra-options")
        assert options is not None
        assert options.read() == b"configTxtAppend: dtoverlay=vc4-kms-v3d\n"
    assert "overlay/installers/default" in names
    artifacts = test_release.version("v1.11.3").overlays[0].artifacts
    expected = {f"overlay/artifacts/arm64/{path}" for path in artifacts}
    assert expected
    assert {n for n in names if n.startswith("overlay/artifacts/")} == expected


def test_overlay_errors(service: ServiceProcess) -> None:
    unknown = httpx.post(
        f"{service.url}/schematics", content="overlay:\n  image: x/y\n  name: nope\n"
    ).json()["id"]
    answer = httpx.get(f"{service.url}/image/{unknown}/v1.11.3/installer-arm64.tar")
    assert answer.status_code == 400
    assert answer.text == (
        'error enhancing profile from schematic: official overlay "nope" is not available '
        "for Talos version v1.11.3\n"
    )
    board = httpx.post(
        f"{service.url}/schematics",
        content="overlay:\n  image: siderolabs/sbc-raspberrypi\n  name: rpi_generic\n",
    ).json()["id"]
    image = httpx.get(f"{service.url}/image/{board}/v1.11.3/metal-arm64.raw.xz")
    assert image.status_code == 501
    assert "board overlay image" in image.text
