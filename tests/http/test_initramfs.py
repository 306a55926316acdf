"""initramfs-<arch>.xz through /image: layout, boots with every extension, hostile extensions.

The layout is checked by parsing the download with independent tools (xz, zstd, GNU cpio,
unsquashfs); the boots run the release kernel with the downloaded initramfs in QEMU and read the
fixture init's markers.
"""

from __future__ import annotations

import hashlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.release import Release
from tests.release.markers import parse_markers
from tests.support.evil import ATTACKS, offending_entry, push_evil_release
from tests.support.qemu import boot
from tests.support.registry import LocalRegistry
from tests.support.service import ServiceProcess, release_service

pytestmark = pytest.mark.registry

EXTENSIONS = [
    "siderolabs/intel-ucode",
    "siderolabs/amdgpu-firmware",  # renamed "siderolabs/amdgpu" after 1.7: resolved by alias
    "siderolabs/gasket-driver",
    "siderolabs/gvisor",
]
FLAVOR = "customization:\n  systemExtensions:\n    officialExtensions:\n" + "".join(
    f"      - {name}\n" for name in EXTENSIONS
)
CONSOLE = {"amd64": "console=ttyS0", "arm64": "console=ttyAMA0"}


@pytest.fixture(scope="module")
def service(
    release_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    proc = release_service(tmp_path_factory.mktemp("initramfs"), release_registry.host)
    yield proc
    assert proc.stop() == 0


@pytest.fixture(scope="module")
def flavor_id(service: ServiceProcess) -> str:
    answer = httpx.post(f"{service.url}/schematics", content=FLAVOR)
    assert answer.status_code == 201
    return str(answer.json()["id"])


def download(service: ServiceProcess, path: str, dest: Path, flavor: str) -> Path:
    with httpx.stream("GET", f"{service.url}/image/{flavor}/{path}", timeout=300) as answer:
        assert answer.status_code == 200, answer.read().decode()
        with dest.open("wb") as out:
            for chunk in answer.iter_bytes():
                out.write(chunk)
    return dest


def catalogue_name(release: Release, version: str, name: str) -> str:
    """The name the version's catalogue uses (the alias target when renamed)."""
    names = {ext.name for ext in release.version(version).extensions}
    return name if name in names else "siderolabs/amdgpu"


def split_streams(data: bytes, base: bytes) -> tuple[bytes, bytes]:
    """[early cpio][base][appended]: the base must appear verbatim."""
    start = data.find(base)
    assert start >= 0, "the base initramfs is not contained byte for byte"
    return data[:start], data[start + len(base) :]


def test_layout(
    service: ServiceProcess, flavor_id: str, test_release: Release, tmp_path: Path
) -> None:
    for version, decompress in (("v1.7.7", ["xz", "-dc"]), ("v1.11.3", ["zstd", "-dc"])):
        out = download(service, f"{version}/initramfs-amd64.xz", tmp_path / "i.xz", flavor_id)
        base = test_release.version(version).arches["amd64"].initramfs.read_bytes()
        early, appended = split_streams(out.read_bytes(), base)
        # the early microcode cpio is uncompressed and comes first
        listing = subprocess.run(
            ["cpio", "-t", "--quiet"], input=early, capture_output=True, check=True
        ).stdout.decode()
        assert "kernel/x86/microcode/GenuineIntel.bin" in listing
        if version == "v1.7.7":
            info = subprocess.run(
                ["xz", "--robot", "--list", "-"], input=appended, capture_output=True, check=False
            )
            if info.returncode == 0:
                assert "CRC32" in info.stdout.decode()
        members = subprocess.run(
            [*decompress], input=appended, capture_output=True, check=True
        ).stdout
        names = (
            subprocess.run(
                ["cpio", "-t", "--quiet"], input=members, capture_output=True, check=True
            )
            .stdout.decode()
            .split()
        )
        squashes = [n for n in names if n.endswith(".sqsh")]
        assert squashes == ["0.sqsh", "1.sqsh", "2.sqsh", "3.sqsh", "4.sqsh", "modules.dep.sqsh"]
        assert "extensions.yaml" in names
        extract = tmp_path / f"x-{version}"
        extract.mkdir()
        subprocess.run(
            ["cpio", "-i", "--quiet", "-d", "extensions.yaml"],
            input=members,
            cwd=extract,
            check=True,
        )
        layers = yaml.safe_load((extract / "extensions.yaml").read_text())["layers"]
        names_in_yaml = [layer["metadata"]["name"] for layer in layers]
        assert names_in_yaml[-2:] == ["schematic", "modules.dep"]
        assert layers[-2]["metadata"]["version"] == flavor_id
        assert [layer["image"] for layer in layers] == squashes


@pytest.mark.boot
@pytest.mark.parametrize(
    ("version", "arch"), [("v1.7.7", "amd64"), ("v1.11.3", "amd64"), ("v1.11.3", "arm64")]
)
def test_boot_lists_every_extension(
    service: ServiceProcess,
    flavor_id: str,
    test_release: Release,
    tmp_path: Path,
    version: str,
    arch: str,
) -> None:
    kernel = download(service, f"{version}/kernel-{arch}", tmp_path / "kernel", flavor_id)
    initramfs = download(
        service, f"{version}/initramfs-{arch}.xz", tmp_path / "initramfs", flavor_id
    )
    cmdline = httpx.get(f"{service.url}/image/{flavor_id}/{version}/cmdline-metal-{arch}").text
    result = boot(
        arch,
        tmp_path,
        kernel=kernel,
        initrd=initramfs,
        append=f"{cmdline} {CONSOLE[arch]} panic=-1",
        timeout=120,
        stop_on=["FIXTURE-DONE", "Kernel panic"],
    )
    report = parse_markers(result.log)
    assert report.boot_ok, result.log[-3000:]
    assert report.cmdline is not None and report.cmdline.startswith(cmdline)
    release = test_release.version(version)
    expected = [
        (
            release.extension(catalogue_name(test_release, version, n)).manifest_name,
            release.extension(catalogue_name(test_release, version, n)).version,
        )
        for n in EXTENSIONS
    ]
    seen = [(layer.name, layer.version) for layer in report.extensions]
    assert seen[: len(expected)] == expected
    assert seen[len(expected)] == ("schematic", flavor_id)
    assert report.schematics == [flavor_id]
    assert not report.extension_failures
    assert report.done


def test_hostile_extensions_are_refused(test_release: Release, tmp_path: Path) -> None:
    canary = Path("/tmp") / f"image-service-canary-{uuid.uuid4().hex}"
    registry = LocalRegistry(tmp_path / "registry")
    registry.start()
    try:
        push_evil_release(test_release, registry.host, canary, "v1.11.3")
        service = release_service(tmp_path / "svc", registry.host, secureboot=False)
        try:
            assets = tmp_path / "svc" / "data" / "store" / "assets"
            for attack in ATTACKS:
                flavor = httpx.post(
                    f"{service.url}/schematics",
                    content="customization:\n  systemExtensions:\n    officialExtensions:\n"
                    f"      - siderolabs/gvisor\n      - siderolabs/{attack}\n",
                ).json()["id"]
                answer = httpx.get(
                    f"{service.url}/image/{flavor}/v1.11.3/initramfs-amd64.xz", timeout=120
                )
                assert answer.status_code == 400, (attack, answer.text)
                assert f"siderolabs/{attack}" in answer.text
                assert f'"{offending_entry(attack, canary)}"' in answer.text
                assert not canary.exists()
                assert not (canary.parent / canary.name).exists()
                tags = list((assets / "tags").iterdir()) if (assets / "tags").exists() else []
                assert tags == []  # nothing cached
            good = httpx.post(
                f"{service.url}/schematics",
                content="customization:\n  systemExtensions:\n    officialExtensions:\n"
                "      - siderolabs/gvisor\n",
            ).json()["id"]
            ok = httpx.get(f"{service.url}/image/{good}/v1.11.3/initramfs-amd64.xz", timeout=120)
            assert ok.status_code == 200
            assert ok.headers["etag"] == f'"sha256:{hashlib.sha256(ok.content).hexdigest()}"'
            work = tmp_path / "svc" / "data" / "work"
            assert not work.exists() or list(work.iterdir()) == []
        finally:
            assert service.stop() == 0
    finally:
        registry.stop()
