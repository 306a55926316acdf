"""ISOs through /image, booted in QEMU: GRUB (< 1.10), hybrid (amd64 >= 1.10), UEFI-only arm64,
and the Secure Boot ISO's signatures checked against the certificate the service publishes."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.release.markers import parse_markers
from tests.support.qemu import Firmware, boot, cd_args
from tests.support.registry import LocalRegistry
from tests.support.service import ServiceProcess, release_service

pytestmark = pytest.mark.registry

FLAVOR = (
    "customization:\n  extraKernelArgs: [console=ttyS0]\n"
    "  systemExtensions:\n    officialExtensions: [siderolabs/gvisor]\n"
)
CONSOLE = {"amd64": "console=ttyS0", "arm64": "console=ttyAMA0"}


@pytest.fixture(scope="module")
def service(
    release_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    proc = release_service(tmp_path_factory.mktemp("iso"), release_registry.host)
    yield proc
    assert proc.stop() == 0


def flavor(service: ServiceProcess, arch: str) -> str:
    body = FLAVOR.replace("console=ttyS0", CONSOLE[arch])
    return str(httpx.post(f"{service.url}/schematics", content=body).json()["id"])


def download(service: ServiceProcess, url: str, dest: Path) -> Path:
    with httpx.stream("GET", f"{service.url}{url}", timeout=600) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"] == "application/x-iso9660-image"
        with dest.open("wb") as out:
            for chunk in answer.iter_bytes():
                out.write(chunk)
    return dest


@pytest.mark.boot
@pytest.mark.parametrize(
    ("version", "arch", "firmware"),
    [
        ("v1.7.7", "amd64", Firmware.BIOS),
        ("v1.7.7", "amd64", Firmware.UEFI),
        ("v1.11.3", "amd64", Firmware.BIOS),
        ("v1.11.3", "amd64", Firmware.UEFI),
        ("v1.11.3", "arm64", Firmware.UEFI),
    ],
)
def test_iso_boots(
    service: ServiceProcess, tmp_path: Path, version: str, arch: str, firmware: Firmware
) -> None:
    flavor_id = flavor(service, arch)
    iso = download(service, f"/image/{flavor_id}/{version}/metal-{arch}.iso", tmp_path / "x.iso")
    cmdline = httpx.get(f"{service.url}/image/{flavor_id}/{version}/cmdline-metal-{arch}").text
    result = boot(
        arch,
        tmp_path,
        firmware=firmware,
        extra_args=cd_args(arch, iso),
        timeout=240,
        stop_on=["FIXTURE-DONE", "Kernel panic"],
    )
    report = parse_markers(result.log)
    assert report.boot_ok, result.describe()
    assert report.firmware == ("UEFI" if firmware is Firmware.UEFI else "BIOS")
    booted = [t for t in (report.cmdline or "").split() if not t.startswith("BOOT_IMAGE=")]
    # the ISO's cmdline is the cmdline asset plus talos.halt_if_installed=1 from 1.8 on
    assert [t for t in booted if t != "talos.halt_if_installed=1"] == cmdline.split()
    assert ("talos.halt_if_installed=1" in booted) == (version != "v1.7.7")
    assert report.schematics == [flavor_id]


def test_secureboot_iso_is_signed_by_the_service(service: ServiceProcess, tmp_path: Path) -> None:
    flavor_id = flavor(service, "amd64")
    iso = download(
        service, f"/image/{flavor_id}/v1.11.3/metal-amd64-secureboot.iso", tmp_path / "sb.iso"
    )
    cert = tmp_path / "cert.pem"
    cert.write_bytes(httpx.get(f"{service.url}/secureboot/signing-cert.pem").content)
    listing = subprocess.run(
        ["xorriso", "-indev", str(iso), "-find", "/", "-type", "f"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "/loader/keys/auto/db.auth" in listing
    for path in ("/EFI/BOOT/BOOTX64.EFI", "/EFI/Linux/Talos-v1.11.3.efi"):
        out = tmp_path / Path(path).name
        subprocess.run(
            ["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", path, str(out)],
            capture_output=True,
            check=True,
        )
        verified = subprocess.run(
            ["sbverify", "--cert", str(cert), str(out)], capture_output=True, check=False
        )
        assert verified.returncode == 0, (path, verified.stderr)


@pytest.mark.boot
def test_secureboot_iso_enrols_the_service_keys_and_boots_enforced(
    service: ServiceProcess, tmp_path: Path
) -> None:
    """The ISO's systemd-boot enrols the service's PK/KEK/db (``if-safe``: QEMU is a VM) into a
    firmware in setup mode; the next boot runs with Secure Boot enforced by those keys."""
    flavor_id = flavor(service, "amd64")
    iso = download(
        service, f"/image/{flavor_id}/v1.11.3/metal-amd64-secureboot.iso", tmp_path / "sb.iso"
    )
    first = boot(
        "amd64",
        tmp_path,
        firmware=Firmware.UEFI_SECUREBOOT,
        vars_template=Path("/usr/share/OVMF/OVMF_VARS_4M.fd"),  # no keys: setup mode
        extra_args=cd_args("amd64", iso),
        timeout=150,
        stop_on=["FIXTURE-DONE", "Failed to"],
        name="enroll",
    )
    assert "Custom Secure Boot keys successfully enrolled" in first.log, first.describe()
    enrolled = tmp_path / "enrolled-vars.fd"
    shutil.copyfile(tmp_path / "enroll-vars.fd", enrolled)
    second = boot(
        "amd64",
        tmp_path,
        firmware=Firmware.UEFI_SECUREBOOT,
        vars_template=enrolled,
        extra_args=cd_args("amd64", iso),
        timeout=180,
        stop_on=["FIXTURE-DONE", "Kernel panic", "Access denied"],
        name="enforced",
    )
    report = parse_markers(second.log)
    assert report.boot_ok, second.describe()
    assert report.secureboot == "enabled"
    assert report.lockdown == "confidentiality"
    assert report.schematics == [flavor_id]
