"""Disk images through /image: partition tables as upstream's, META values, conversions, boots.

Expected partition names, sizes and type GUIDs are written from reference/talos-assets.md §9
(sizes in MiB; 512-byte sectors), not taken from the code under test.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.builder.talos.meta_adv import parse_adv
from tests.release.markers import parse_markers
from tests.support.qemu import Firmware, boot
from tests.support.registry import LocalRegistry
from tests.support.service import ServiceProcess, release_service

pytestmark = pytest.mark.registry

EFI = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
BIOS = "21686148-6449-6E6F-744E-656564454649"
LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
MIB = 2048  # sectors

FLAVOR = (
    "customization:\n  extraKernelArgs: [console=ttyS0]\n"
    "  meta:\n    - {key: 12, value: rack-7}\n    - {key: 10, value: eth0}\n"
    "  systemExtensions:\n    officialExtensions: [siderolabs/gvisor]\n"
)


@pytest.fixture(scope="module")
def service(
    release_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    proc = release_service(tmp_path_factory.mktemp("disk"), release_registry.host)
    yield proc
    assert proc.stop() == 0


@pytest.fixture(scope="module")
def flavor_id(service: ServiceProcess) -> str:
    return str(httpx.post(f"{service.url}/schematics", content=FLAVOR).json()["id"])


def download(service: ServiceProcess, url: str, dest: Path) -> Path:
    with httpx.stream("GET", f"{service.url}{url}", timeout=600) as answer:
        assert answer.status_code == 200, answer.read()
        with dest.open("wb") as out:
            for chunk in answer.iter_bytes():
                out.write(chunk)
    return dest


def unzstd(src: Path, dest: Path) -> Path:
    with dest.open("wb") as out:
        subprocess.run(["zstd", "-dc", str(src)], stdout=out, check=True)
    return dest


def run_json(argv: list[str]) -> dict:
    return json.loads(subprocess.run(argv, capture_output=True, check=True).stdout)


def partitions(image: Path) -> list[tuple[str, int, str]]:
    table = run_json(["sfdisk", "-J", str(image)])["partitiontable"]
    return [(p["name"], p["size"], p["type"]) for p in table["partitions"]]


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (
            "v1.11.3",  # dual-boot, >= 1.11 sizes
            [("EFI", 2101 * MIB, EFI), ("BIOS", 1 * MIB, BIOS), ("BOOT", 2000 * MIB, LINUX),
             ("META", 1 * MIB, LINUX)],
        ),
        (
            "v1.7.7",  # grub, < 1.8: STATE and EPHEMERAL too
            [("EFI", 100 * MIB, EFI), ("BIOS", 1 * MIB, BIOS), ("BOOT", 1000 * MIB, LINUX),
             ("META", 1 * MIB, LINUX), ("STATE", 100 * MIB, LINUX)],
        ),
    ],
)  # fmt: skip
def test_partition_table_and_meta(
    service: ServiceProcess,
    flavor_id: str,
    tmp_path: Path,
    version: str,
    expected: list[tuple[str, int, str]],
) -> None:
    raw = unzstd(
        download(service, f"/image/{flavor_id}/{version}/metal-amd64.raw.zst", tmp_path / "i.zst"),
        tmp_path / "disk.raw",
    )
    found = partitions(raw)
    assert found[: len(expected)] == expected
    if version == "v1.7.7":
        assert found[-1][0] == "EPHEMERAL"
    table = run_json(["sfdisk", "-J", str(raw)])["partitiontable"]
    meta = next(p for p in table["partitions"] if p["name"] == "META")
    with raw.open("rb") as disk:
        disk.seek(meta["start"] * 512)
        adv = disk.read(meta["size"] * 512)
    values = parse_adv(adv)
    assert values[12] == b"rack-7"
    assert values[10] == b"eth0"


@pytest.mark.boot
@pytest.mark.parametrize(
    ("version", "firmware"),
    [
        ("v1.11.3", Firmware.BIOS),
        ("v1.11.3", Firmware.UEFI),
        ("v1.7.7", Firmware.BIOS),
        ("v1.7.7", Firmware.UEFI),
    ],
)
def test_raw_zst_boots(
    service: ServiceProcess, flavor_id: str, tmp_path: Path, version: str, firmware: Firmware
) -> None:
    raw = unzstd(
        download(service, f"/image/{flavor_id}/{version}/metal-amd64.raw.zst", tmp_path / "i.zst"),
        tmp_path / "disk.raw",
    )
    result = boot(
        "amd64",
        tmp_path,
        firmware=firmware,
        extra_args=["-drive", f"file={raw},format=raw,if=virtio,snapshot=on"],
        timeout=180,
        stop_on=["FIXTURE-DONE", "Kernel panic"],
    )
    report = parse_markers(result.log)
    assert report.boot_ok, result.describe()
    assert report.firmware == ("UEFI" if firmware is Firmware.UEFI else "BIOS")
    cmdline = httpx.get(f"{service.url}/image/{flavor_id}/{version}/cmdline-metal-amd64").text
    # the disk image's cmdline is the cmdline asset without the META token (META is on disk);
    # GRUB puts BOOT_IMAGE=… in front
    expected = [t for t in cmdline.split() if "INSTALLER_META" not in t]
    booted = [t for t in (report.cmdline or "").split() if not t.startswith("BOOT_IMAGE=")]
    assert booted == expected
    assert report.schematics == [flavor_id]


def test_conversions(service: ServiceProcess, flavor_id: str, tmp_path: Path) -> None:
    gcp = download(service, f"/image/{flavor_id}/v1.11.3/gcp-amd64.raw.tar.gz", tmp_path / "g")
    with tarfile.open(gcp) as archive:
        assert archive.getnames() == ["disk.raw"]
    qcow2 = download(service, f"/image/{flavor_id}/v1.11.3/metal-amd64.qcow2", tmp_path / "q")
    info = run_json(["qemu-img", "info", "--output=json", "-f", "qcow2", str(qcow2)])
    assert info["cluster-size"] == 8192
    vhd = download(service, f"/image/{flavor_id}/v1.11.3/azure-amd64.vhd", tmp_path / "v")
    info = run_json(["qemu-img", "info", "--output=json", "-f", "vpc", str(vhd)])
    assert info["format"] == "vpc"
