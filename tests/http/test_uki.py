"""UKIs through /image: booted under OVMF, signed for Secure Boot, and the signing certificate.

The booted kernel's command line must equal the ``cmdline-…`` asset of the same flavor (the
fixture init prints /proc/cmdline); signatures are checked with sbverify against the
certificate the service publishes.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.release.markers import parse_markers
from tests.support.efi import esp_drive, make_esp
from tests.support.qemu import Firmware, boot
from tests.support.registry import LocalRegistry
from tests.support.service import ServiceProcess, release_service

pytestmark = pytest.mark.registry

FLAVOR = (
    "customization:\n  extraKernelArgs: [console=ttyS0, panic=-1]\n"
    "  systemExtensions:\n    officialExtensions: [siderolabs/gvisor]\n"
)


@pytest.fixture(scope="module")
def service(
    release_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    proc = release_service(tmp_path_factory.mktemp("uki"), release_registry.host)
    yield proc
    assert proc.stop() == 0


@pytest.fixture(scope="module")
def flavor_id(service: ServiceProcess) -> str:
    return str(httpx.post(f"{service.url}/schematics", content=FLAVOR).json()["id"])


def fetch(service: ServiceProcess, flavor: str, path: str, dest: Path) -> Path:
    answer = httpx.get(f"{service.url}/image/{flavor}/{path}", timeout=300)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/efi"
    dest.write_bytes(answer.content)
    return dest


def test_signing_certificate(service: ServiceProcess) -> None:
    answer = httpx.get(f"{service.url}/secureboot/signing-cert.pem")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-pem-file"
    key_dir = Path(service.args[service.args.index("--secureboot-signing-cert") + 1])
    assert answer.content == key_dir.read_bytes()


@pytest.mark.boot
def test_uki_boots_with_the_cmdline_asset(
    service: ServiceProcess, flavor_id: str, tmp_path: Path
) -> None:
    uki = fetch(service, flavor_id, "v1.11.3/metal-amd64-uki.efi", tmp_path / "uki.efi")
    cmdline = httpx.get(f"{service.url}/image/{flavor_id}/v1.11.3/cmdline-metal-amd64").text
    esp = make_esp(tmp_path, {"EFI/BOOT/BOOTX64.EFI": uki})
    result = boot(
        "amd64",
        tmp_path,
        firmware=Firmware.UEFI,
        extra_args=esp_drive(esp),
        timeout=150,
        stop_on=["FIXTURE-DONE", "Kernel panic"],
    )
    report = parse_markers(result.log)
    assert report.boot_ok, result.describe()
    assert report.firmware == "UEFI"
    assert report.cmdline == cmdline
    assert [layer.name for layer in report.extensions][:2] == ["gvisor", "schematic"]
    assert report.schematics == [flavor_id]


def test_secureboot_uki_is_signed_by_the_service(
    service: ServiceProcess, flavor_id: str, tmp_path: Path
) -> None:
    uki = fetch(service, flavor_id, "v1.11.3/metal-amd64-secureboot-uki.efi", tmp_path / "sb.efi")
    cert = tmp_path / "cert.pem"
    cert.write_bytes(httpx.get(f"{service.url}/secureboot/signing-cert.pem").content)
    verified = subprocess.run(
        ["sbverify", "--cert", str(cert), str(uki)], capture_output=True, text=True, check=False
    )
    assert verified.returncode == 0, verified.stderr
    unsigned = fetch(service, flavor_id, "v1.11.3/metal-amd64-uki.efi", tmp_path / "plain.efi")
    refused = subprocess.run(
        ["sbverify", "--cert", str(cert), str(unsigned)], capture_output=True, check=False
    )
    assert refused.returncode != 0
    dumped = tmp_path / "cmdline.txt"
    subprocess.run(
        ["objcopy", "--dump-section", f".cmdline={dumped}", str(uki), str(tmp_path / "copy.efi")],
        check=True,
    )
    # console= replaces the platform console in place; other args are appended (§5.6)
    assert dumped.read_text().rstrip("\0") == (
        "talos.platform=metal console=ttyS0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 "
        "nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 lockdown=confidentiality "
        "panic=-1"
    )


def test_without_keys_secureboot_is_a_clear_400(
    release_registry: LocalRegistry, tmp_path: Path
) -> None:
    proc = release_service(tmp_path, release_registry.host, secureboot=False)
    try:
        empty = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
        httpx.post(f"{proc.url}/schematics", content="{}")
        answer = httpx.get(f"{proc.url}/image/{empty}/v1.11.3/metal-amd64-secureboot-uki.efi")
        assert answer.status_code == 400
        assert answer.text == "error enhancing profile from schematic: secure boot is disabled\n"
        cert = httpx.get(f"{proc.url}/secureboot/signing-cert.pem")
        assert cert.status_code == 404
        assert "not enabled" in cert.text
    finally:
        assert proc.stop() == 0
