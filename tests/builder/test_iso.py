"""ISO images (reference/talos-assets.md §8) read back with xorriso and mtools, and booted.

Contents are checked with independent tools: ``xorriso -indev x.iso -find / -type f`` for the
ISO 9660 tree, ``-osirrox on ... -extract`` for file bytes, ``-pvd_info`` for the volume and
volume set IDs, ``-report_el_torito plain`` / ``-report_system_area plain`` for the boot
catalogue and the partition tables; the sd-boot FAT image (appended partition 2) is read with
``mdir``/``mtype``/``mattrib`` at its byte offset inside the ISO, so nothing is mounted. The
golden texts (``grub.cfg``, ``loader.conf``, volume IDs) are written out here from the
reference, not produced by the code under test.

Boots (QEMU TCG): the GRUB ISO of v1.7.7 under SeaBIOS and OVMF, the hybrid ISO of v1.11.3
under SeaBIOS and OVMF (and as a disk, the USB-stick case), the arm64 v1.11.3 ISO under AAVMF,
an arm64 GRUB ISO of v1.7.7 under AAVMF (GRUB's arm64-efi modules come from Debian's
arm64 package, unpacked privately), and the Secure Boot ISO: its sd-boot enrols the service's
keys into a firmware in setup mode, then boots with Secure Boot enforced; a UKI signed by
someone else is refused. The kernel command line the fixture init reports must be exactly the
one built (GRUB prepends ``BOOT_IMAGE=/boot/vmlinuz``), which also proves the default entry is
the normal boot, not the reset one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from image_service.versions import Version
from services.builder.errors import BuildFailed, InvalidProfile
from services.builder.formats.grub import grub_quote, iso_grub_cfg
from services.builder.formats.iso import (
    EnrollKeys,
    IsoInputs,
    IsoKind,
    IsoSecureBoot,
    build_iso,
    loader_conf,
    plan_iso,
    volume_id,
)
from services.builder.formats.uki import build_uki, kernel_version, talos_os_release, uki_profiles
from services.builder.talos.cmdline import build_cmdline
from services.builder.talos.quirks import quirks_for
from services.builder.talos.secureboot import (
    PcrSigner,
    SecureBootKeys,
    enrollment_files,
    sign_efi,
)
from services.builder.tools import SOURCE_DATE_EPOCH, ToolError
from tests.release import DEFAULT_CACHE, Release
from tests.release.debs import DebCache, extract_deb
from tests.release.markers import parse_markers
from tests.support.keys import write_secureboot_keys
from tests.support.qemu import BootResult, Firmware, boot, cd_args

CONSOLE = {"amd64": "ttyS0", "arm64": "ttyAMA0"}
# Every GRUB metacharacter, so the boots prove the quoting round-trips through GRUB.
TRICKY = "fixture.quoting=a&b;c|d$e<f>{g}\\h"
STOP = ["FIXTURE-DONE", "Kernel panic", "Access Denied"]


def grub_passes(cmdline: str) -> str:
    """What the kernel receives from GRUB's ``linux`` command: ``BOOT_IMAGE=<path>`` first, and
    each ``\\``, ``'`` and ``"`` of an argument backslash-escaped again by GRUB 2.06's
    ``grub_create_loader_cmdline`` (grub-core/lib/cmdline.c) after its own unquoting."""
    for char in "\\'\"":
        cmdline = cmdline.replace(char, "\\" + char)
    return "BOOT_IMAGE=/boot/vmlinuz " + cmdline


EFI_PART_TYPE = "28732ac11ff8d211ba4b00a0c93ec93b"  # C12A7328-F81F-11D2-BA4B-00A0C93EC93B


# --- helpers ------------------------------------------------------------------------------------


def xorriso(*args: str | Path) -> str:
    out = subprocess.run(["xorriso", *map(str, args)], check=True, capture_output=True, text=True)
    return out.stdout


def iso_files(iso: Path) -> set[str]:
    listing = xorriso("-indev", iso, "-find", "/", "-type", "f")
    return {line.strip("'") for line in listing.splitlines() if line.startswith("'")}


def extract(iso: Path, path: str, dest: Path) -> bytes:
    dest.unlink(missing_ok=True)
    xorriso("-osirrox", "on", "-indev", iso, "-extract", path, dest)
    return dest.read_bytes()


def pvd(iso: Path) -> dict[str, str]:
    out = xorriso("-indev", iso, "-pvd_info")
    return {k.strip(): v.strip() for k, v in re.findall(r"^([^:\n]+):(.*)$", out, re.M)}


@dataclass(frozen=True)
class ElTorito:
    platform: str  # BIOS | UEFI
    lba: int
    path: str | None


def el_torito(iso: Path) -> list[ElTorito]:
    out = xorriso("-indev", iso, "-report_el_torito", "plain")
    paths = dict(re.findall(r"^El Torito img path :\s+(\d+)\s+(\S+)$", out, re.M))
    return [
        ElTorito(pltf, int(lba), paths.get(n))
        for n, pltf, lba in re.findall(
            r"^El Torito boot img :\s+(\d+)\s+(\S+)\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+(\d+)$",
            out,
            re.M,
        )
    ]


def partitions(iso: Path) -> dict[int, tuple[str, int, int]]:
    """Partition number → (type, start, size in 512-byte sectors): the GPT if there is one,
    else the MBR table."""
    out = xorriso("-indev", iso, "-report_system_area", "plain")
    types = dict(re.findall(r"^GPT type GUID\s+:\s+(\d+)\s+(\S+)$", out, re.M))
    if types:
        spans = re.findall(r"^GPT start and size :\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.M)
        return {int(n): (types[n], int(a), int(b)) for n, a, b in spans}
    rows = re.findall(r"^MBR partition\s+:\s+(\d+)\s+\S+\s+(\S+)\s+(\d+)\s+(\d+)$", out, re.M)
    return {int(n): (t, int(a), int(b)) for n, t, a, b in rows}


def esp_of(iso: Path) -> str:
    """mtools image spec of the sd-boot FAT image: partition 2 of the ISO, type EFI."""
    kind, start, _ = partitions(iso)[2]
    assert kind in (EFI_PART_TYPE, "0xef")
    return f"{iso}@@{start * 512}"


def mtools(tool: str, *args: str | Path) -> str:
    out = subprocess.run([tool, *map(str, args)], check=True, capture_output=True)
    return out.stdout.decode(errors="replace")


def fat_files(image: str | Path) -> list[str]:
    return mtools("mdir", "-/", "-b", "-i", image, "::").lower().split()


def mread(image: str, path: str) -> bytes:
    return subprocess.run(
        ["mtype", "-i", image, f"::{path}"], check=True, capture_output=True
    ).stdout


def disk_args(iso: Path) -> list[str]:
    return ["-drive", f"file={iso},format=raw,if=ide,snapshot=on"]


# --- building -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    inputs: IsoInputs
    iso: Path


def iso_cmdline(version: str, arch: str, *, secureboot: bool = False) -> str:
    """The ISO command line as the pipeline builds it, plus test-only arguments."""
    return build_cmdline(
        "metal",
        arch,  # type: ignore[arg-type]
        Version.parse(version),
        secureboot=secureboot,
        iso=True,
        extra_args=[f"console={CONSOLE[arch]}", "panic=-1", "quiet", TRICKY],
    )


def prepare(
    release: Release,
    work: Path,
    version: str,
    arch: str,
    *,
    requested: str | None = None,
    keys: SecureBootKeys | None = None,
    uki_keys: SecureBootKeys | None = None,
    pcr: PcrSigner | None = None,
) -> IsoInputs:
    """What the caller prepares (iso.py docstring): kind, cmdline, UKI, signed binaries."""
    work.mkdir(parents=True, exist_ok=True)
    quirks = quirks_for(Version.parse(version))
    art = release.version(version).arches[arch]
    kind = plan_iso(quirks, arch, secureboot=keys is not None, requested=requested)
    cmdline = iso_cmdline(version, arch, secureboot=keys is not None)
    sdboot = uki = None
    secureboot = None
    if kind.uses_uki:
        uki = work / "vmlinuz.efi"
        build_uki(
            art.systemd_stub, art.vmlinuz, art.initramfs, cmdline, talos_os_release(version),
            kernel_version(art.vmlinuz), uki, profiles=uki_profiles(quirks, "iso", cmdline),
            pcr=pcr, secureboot=uki_keys or keys,
        )  # fmt: skip
        sdboot = art.systemd_boot
    if keys is not None:
        sdboot = work / "systemd-boot.efi.signed"
        sign_efi(art.systemd_boot, keys, sdboot)
        secureboot = IsoSecureBoot(enrollment_files(keys, work / "auth"), keys.signing_cert_der())
    return IsoInputs(
        version=version, arch=arch, quirks=quirks, kind=kind, cmdline=cmdline,
        kernel=art.vmlinuz, initramfs=art.initramfs, systemd_boot=sdboot, uki=uki,
        secureboot=secureboot,
    )  # fmt: skip


@pytest.fixture(scope="module")
def arm64_grub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GRUB's arm64-efi modules from Debian's arm64 package, unpacked privately (the package
    is not installable on an amd64 host without multiarch)."""
    cache = DebCache(DEFAULT_CACHE / "downloads")
    _, deb = cache.get("bookworm", "grub-efi-arm64-bin", "arm64")
    dest = tmp_path_factory.mktemp("grub-arm64")
    extract_deb(deb, dest, lambda name: name.startswith("usr/lib/grub/arm64-efi/"))
    return dest / "usr/lib/grub/arm64-efi"


@pytest.fixture(scope="module")
def service_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[SecureBootKeys, PcrSigner]:
    files = write_secureboot_keys(tmp_path_factory.mktemp("keys"), "image-service ISO test")
    return SecureBootKeys.load(files.signing_key, files.signing_cert), PcrSigner.load(files.pcr_key)


@pytest.fixture(scope="module")
def isos(
    test_release: Release,
    tmp_path_factory: pytest.TempPathFactory,
    arm64_grub: Path,
    service_keys: tuple[SecureBootKeys, PcrSigner],
) -> Callable[[str], Built]:
    """Build each ISO of the test matrix once per module, on first use."""
    root = tmp_path_factory.mktemp("isos")
    keys, pcr = service_keys
    recipes: dict[str, dict[str, object]] = {
        "grub-amd64": {"version": "v1.7.7", "arch": "amd64"},
        "grub-arm64": {"version": "v1.7.7", "arch": "arm64"},
        "hybrid-amd64": {"version": "v1.11.3", "arch": "amd64"},
        "uefi-arm64": {"version": "v1.11.3", "arch": "arm64"},
        "secureboot-amd64": {"version": "v1.11.3", "arch": "amd64", "keys": keys, "pcr": pcr},
        # >= 1.12 honours the flavor's bootloader
        "grub-1.12-amd64": {"version": "v1.12.0-beta.1", "arch": "amd64", "requested": "grub"},
        "sdboot-1.12-amd64": {"version": "v1.12.0-beta.1", "arch": "amd64",
                              "requested": "sd-boot", "enroll_keys": EnrollKeys.OFF},
    }  # fmt: skip
    built: dict[str, Built] = {}

    def get(name: str) -> Built:
        if name not in built:
            work = root / name
            recipe = dict(recipes[name])
            enroll = recipe.pop("enroll_keys", EnrollKeys.IF_SAFE)
            inputs = prepare(test_release, work, **recipe)  # type: ignore[arg-type]
            inputs = replace(inputs, enroll_keys=EnrollKeys(str(enroll)))
            iso = root / f"{name}.iso"
            build_iso(inputs, work, iso, grub_dirs={"arm64-efi": arm64_grub})
            built[name] = Built(inputs, iso)
        return built[name]

    return get


# --- pure parts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "arch", "secureboot", "requested", "kind"),
    [
        # talos-assets §8.1 / §6
        ("v1.7.7", "amd64", False, None, IsoKind.GRUB),
        ("v1.7.7", "amd64", False, "sd-boot", IsoKind.GRUB),  # ISOs ignore it before 1.12
        ("v1.7.7", "arm64", False, None, IsoKind.GRUB),
        ("v1.7.7", "amd64", True, None, IsoKind.UEFI),
        ("v1.9.5", "amd64", False, "dual-boot", IsoKind.GRUB),
        ("v1.10.0", "amd64", False, None, IsoKind.HYBRID),
        ("v1.11.3", "amd64", False, "grub", IsoKind.HYBRID),  # 1.10-1.11: always hybrid
        ("v1.11.3", "amd64", False, "sd-boot", IsoKind.HYBRID),
        ("v1.11.3", "amd64", True, "grub", IsoKind.UEFI),  # Secure Boot wins
        ("v1.11.3", "arm64", False, None, IsoKind.UEFI),
        ("v1.12.0", "amd64", False, None, IsoKind.HYBRID),
        ("v1.12.0", "amd64", False, "none", IsoKind.HYBRID),
        ("v1.12.0", "amd64", False, "grub", IsoKind.GRUB),
        ("v1.12.0", "amd64", False, "sd-boot", IsoKind.UEFI),
        ("v1.12.0", "arm64", False, None, IsoKind.UEFI),
        ("v1.12.0", "arm64", False, "grub", IsoKind.GRUB),
        ("v1.13.9", "amd64", True, "dual-boot", IsoKind.UEFI),
    ],
)
def test_plan_iso(
    version: str, arch: str, secureboot: bool, requested: str | None, kind: IsoKind
) -> None:
    quirks = quirks_for(Version.parse(version))
    assert plan_iso(quirks, arch, secureboot=secureboot, requested=requested) is kind


def test_plan_iso_rejects_dual_boot_on_arm64() -> None:
    quirks = quirks_for(Version.parse("v1.12.0"))
    with pytest.raises(InvalidProfile, match='bootloader "dual-boot" is not supported on arm64'):
        plan_iso(quirks, "arm64", secureboot=False, requested="dual-boot")
    # before 1.12 the ISO ignores the flavor's choice, so nothing to reject
    assert plan_iso(quirks_for(Version.parse("v1.11.3")), "arm64", secureboot=False,
                    requested="dual-boot") is IsoKind.UEFI  # fmt: skip


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Talos-v1.13.9", "TALOS_V1_13_9"),  # the reference's example
        ("Talos-v1.12.0-beta.1", "TALOS_V1_12_0_BETA_1"),
        ("Talos-v1.8.0+dirty/x y", "TALOS_V1_8_0DIRTYXY"),
        ("Talos-v1.10.0-alpha.2-35-gabcdef0-dirty", "TALOS_V1_10_0_ALPHA_2_35_GABCDEF"),  # 32
    ],
)
def test_volume_id(label: str, expected: str) -> None:
    assert volume_id(label) == expected
    assert len(volume_id(label)) <= 32


def test_grub_quote() -> None:
    assert grub_quote('a\\b{c}d&e$f|g;h<i>j"k') == 'a\\\\b\\{c\\}d\\&e\\$f\\|g\\;h\\<i\\>j\\"k'
    assert grub_quote("talos.platform=metal console=ttyS0") == "talos.platform=metal console=ttyS0"
    assert grub_quote("a\\$") == "a\\\\\\$"  # the backslash is escaped before the dollar


GRUB_CFG_HEAD = (
    "set default=0\nset timeout=3\n\ninsmod all_video\n\n"
    "terminal_input console\nterminal_output console\n\n"
)


def test_grub_cfg_golden() -> None:
    """talos-assets §8.2 as rendered: one tab, reset entry from 1.4, file endings."""
    entry = (
        'menuentry "{title}" {{\n\tset gfxmode=auto\n\tset gfxpayload=text\n'
        "\tlinux /boot/vmlinuz {args}\n\tinitrd /boot/initramfs.xz\n}}\n"
    )
    cmdline = "talos.platform=metal console=tty0 x=$y&z"
    quoted = "talos.platform=metal console=tty0 x=\\$y\\&z"
    normal = entry.format(title="Talos ISO", args=quoted)
    reset = entry.format(
        title="Reset Talos installation", args=quoted + " talos.experimental.wipe=system"
    )
    assert iso_grub_cfg(cmdline, quirks_for(Version.parse("v1.7.7"))) == (
        GRUB_CFG_HEAD + normal + "\n" + reset
    )
    assert iso_grub_cfg(cmdline, quirks_for(Version.parse("v1.3.7"))) == (
        GRUB_CFG_HEAD + normal + "\n"
    )


def test_loader_conf_golden() -> None:
    assert loader_conf(EnrollKeys.IF_SAFE) == (
        "# systemd-boot configuration\n\ntimeout 10\n\nsecure-boot-enroll if-safe\n"
    )
    assert [loader_conf(m).splitlines()[-1] for m in EnrollKeys] == [
        "secure-boot-enroll off",
        "secure-boot-enroll manual",
        "secure-boot-enroll if-safe",
        "secure-boot-enroll force",
    ]


def test_refuses_inconsistent_inputs(
    test_release: Release, tmp_path: Path, service_keys: tuple[SecureBootKeys, PcrSigner]
) -> None:
    art = test_release.version("v1.11.3").arches["amd64"]
    base = IsoInputs(
        version="v1.11.3", arch="amd64", quirks=quirks_for(Version.parse("v1.11.3")),
        kind=IsoKind.UEFI, cmdline="console=ttyS0", kernel=art.vmlinuz,
        initramfs=art.initramfs, systemd_boot=art.systemd_boot, uki=art.systemd_stub,
    )  # fmt: skip
    out = tmp_path / "x.iso"
    cases: list[tuple[IsoInputs, str]] = [
        (replace(base, kind=IsoKind.HYBRID, arch="arm64"), "amd64 only"),
        (replace(base, arch="riscv64"), "amd64 and arm64"),
        (replace(base, version="../v1"), "cannot name"),
        (replace(base, uki=None), "needs the UKI"),
        (replace(base, kind=IsoKind.GRUB, kernel=tmp_path / "nope"), "kernel .* is missing"),
        (replace(base, kind=IsoKind.GRUB, cmdline=" "), "needs the kernel command line"),
        (replace(base, quirks=quirks_for(Version.parse("v1.4.8"))), "has no UKI"),
    ]
    keys, _ = service_keys
    auth = enrollment_files(keys, tmp_path / "auth")
    secure = replace(base, secureboot=IsoSecureBoot(auth, keys.signing_cert_der()))
    cases += [
        (replace(secure, kind=IsoKind.HYBRID), "UEFI-only"),
        (secure, "systemd-boot .* is not signed"),  # the release's sd-boot is unsigned
    ]
    for inputs, message in cases:
        with pytest.raises(BuildFailed, match=message):
            build_iso(inputs, tmp_path / "work", out)
        assert not out.exists()


def test_tool_failures(isos: Callable[[str], Built], tmp_path: Path) -> None:
    inputs = isos("hybrid-amd64").inputs
    with pytest.raises(BuildFailed, match=r"i386-pc modules are not in .*grub-pc-bin"):
        build_iso(inputs, tmp_path / "work", tmp_path / "x.iso", grub_dirs={"i386-pc": tmp_path})
    # xorriso cannot write the output: one ToolError naming the tool, no partial file left
    out = tmp_path / "no-such-dir" / "x.iso"
    with pytest.raises(ToolError, match=r"^grub-mkrescue: failed with exit code"):
        build_iso(inputs, tmp_path / "work", out)
    assert not out.exists()


# --- contents -----------------------------------------------------------------------------------


def test_grub_iso_contents(isos: Callable[[str], Built], tmp_path: Path) -> None:
    built = isos("grub-amd64")
    iso, inputs = built.iso, built.inputs
    files = iso_files(iso)
    assert {"/boot/vmlinuz", "/boot/initramfs.xz", "/boot/grub/grub.cfg", "/efi.img"} <= files
    assert "/boot/grub/i386-pc/eltorito.img" in files
    assert not any(f.startswith(("/EFI/", "/loader/")) for f in files)
    assert extract(iso, "/boot/vmlinuz", tmp_path / "k") == inputs.kernel.read_bytes()  # type: ignore[union-attr]
    assert extract(iso, "/boot/initramfs.xz", tmp_path / "i") == inputs.initramfs.read_bytes()  # type: ignore[union-attr]
    cfg = extract(iso, "/boot/grub/grub.cfg", tmp_path / "c").decode()
    assert cfg.startswith(GRUB_CFG_HEAD)
    quoted = grub_quote(inputs.cmdline)
    assert f"\tlinux /boot/vmlinuz {quoted}\n" in cfg
    assert cfg.endswith(
        'menuentry "Reset Talos installation" {\n\tset gfxmode=auto\n\tset gfxpayload=text\n'
        f"\tlinux /boot/vmlinuz {quoted} talos.experimental.wipe=system\n"
        "\tinitrd /boot/initramfs.xz\n}\n"
    )
    assert "fixture.quoting=a\\&b\\;c\\|d\\$e\\<f\\>\\{g\\}\\\\h" in cfg
    assert "talos.halt_if_installed=1" not in inputs.cmdline  # only from 1.8

    boots = el_torito(iso)
    assert [(b.platform, b.path) for b in boots] == [
        ("BIOS", "/boot/grub/i386-pc/eltorito.img"),
        ("UEFI", "/efi.img"),
    ]
    # No label before 1.8 (xorriso's default); the GRUB EFI image has the epoch as FAT serial.
    info = pvd(iso)
    assert info["Volume Id"] == "ISOIMAGE"
    assert info["Volume Set Id"] == ""
    assert info["Creation Time"] == "2019060121345200"  # SOURCE_DATE_EPOCH 1559424892
    efi_img = tmp_path / "efi.img"
    extract(iso, "/efi.img", efi_img)
    assert "Volume Serial Number is 5CF2-EF7C" in mtools("mdir", "-i", efi_img, "::")
    assert f"{SOURCE_DATE_EPOCH:08X}" == "5CF2EF7C"
    assert "::/efi/boot/bootx64.efi" in fat_files(efi_img)


def test_grub_arm64_iso_contents(isos: Callable[[str], Built], tmp_path: Path) -> None:
    iso = isos("grub-arm64").iso
    assert [b.platform for b in el_torito(iso)] == ["UEFI"]  # no BIOS on arm64
    files = iso_files(iso)
    assert any(f.startswith("/boot/grub/arm64-efi/") for f in files)
    assert not any(f.startswith(("/boot/grub/i386-pc/", "/boot/grub/x86_64-efi/")) for f in files)
    efi_img = tmp_path / "efi.img"
    extract(iso, "/efi.img", efi_img)
    assert [f for f in fat_files(efi_img) if f.endswith(".efi")] == ["::/efi/boot/bootaa64.efi"]


def check_sdboot_tree(built: Built, tmp_path: Path, efi_name: str) -> str:
    """The sd-boot files, in the ISO 9660 tree and in the FAT image: the same bytes."""
    iso, inputs = built.iso, built.inputs
    assert inputs.systemd_boot is not None and inputs.uki is not None
    uki_path = f"/EFI/Linux/Talos-{inputs.version}.efi"
    expected = {
        f"/EFI/BOOT/{efi_name}": inputs.systemd_boot.read_bytes(),
        uki_path: inputs.uki.read_bytes(),
        "/loader/random-seed": bytes(32),
    }
    files = iso_files(iso)
    assert "/efiboot.img" not in files
    esp = esp_of(iso)
    for path, data in expected.items():
        assert path in files
        assert extract(iso, path, tmp_path / "f") == data, path
        assert mread(esp, path) == data, path
    conf = mread(esp, "/loader/loader.conf").decode()
    assert extract(iso, "/loader/loader.conf", tmp_path / "l").decode() == conf
    attrs = mtools("mattrib", "-i", esp, "::/loader/random-seed")
    assert "R" in attrs.split()[:-1], attrs  # read-only, as the newest imager marks it
    # FAT32 with enough clusters for UEFI's FAT driver to take it as FAT32
    info = mtools("minfo", "-i", esp, "::")
    assert 'disk type="FAT32   "' in info
    sectors = int(re.search(r"big size: (\d+) sectors", info)[1])  # type: ignore[index]
    per_cluster = int(re.search(r"cluster size: (\d+) sectors", info)[1])  # type: ignore[index]
    assert sectors // per_cluster > 65525 + 2048
    return conf


def test_hybrid_iso_contents(isos: Callable[[str], Built], tmp_path: Path) -> None:
    built = isos("hybrid-amd64")
    iso, inputs = built.iso, built.inputs
    conf = check_sdboot_tree(built, tmp_path, "BOOTX64.EFI")
    assert conf == "# systemd-boot configuration\n\ntimeout 10\n\nsecure-boot-enroll if-safe\n"
    files = iso_files(iso)
    assert {"/boot/vmlinuz", "/boot/initramfs.xz", "/boot/grub/grub.cfg"} <= files
    assert not any(f.startswith("/boot/grub/x86_64-efi/") for f in files)  # BIOS-only GRUB
    assert "/efi.img" not in files
    assert not any(f.startswith(("/loader/keys/", "/EFI/keys/")) for f in files)
    cfg = extract(iso, "/boot/grub/grub.cfg", tmp_path / "c").decode()
    assert f"\tlinux /boot/vmlinuz {grub_quote(inputs.cmdline)}\n" in cfg
    assert " talos.halt_if_installed=1 " in inputs.cmdline

    boots = el_torito(iso)
    assert [(b.platform, b.path) for b in boots] == [
        ("BIOS", "/boot/grub/i386-pc/eltorito.img"),
        ("UEFI", None),  # the appended partition, not a file
    ]
    parts = partitions(iso)  # -appended_part_as_gpt: a GPT
    assert parts[2][0] == EFI_PART_TYPE and boots[1].lba * 4 == parts[2][1]
    info = pvd(iso)
    assert info["Volume Id"] == "TALOS_V1_11_3"
    assert info["Volume Set Id"] == "Talos-v1.11.3"
    area = xorriso("-indev", iso, "-report_system_area", "plain")
    assert re.search(r"^Partition offset\s+:\s+16$", area, re.M)


def test_uefi_arm64_iso_contents(isos: Callable[[str], Built], tmp_path: Path) -> None:
    built = isos("uefi-arm64")
    check_sdboot_tree(built, tmp_path, "BOOTAA64.EFI")
    files = iso_files(built.iso)
    assert not any(f.startswith("/boot/") for f in files)
    boots = el_torito(built.iso)
    assert [(b.platform, b.path) for b in boots] == [("UEFI", None)]
    parts = partitions(built.iso)  # MBR only, as upstream's xorrisofs call
    assert parts[2][0] == "0xef" and boots[0].lba * 4 == parts[2][1]
    assert pvd(built.iso)["Volume Id"] == "TALOS_V1_11_3"


def test_secureboot_iso_contents(
    isos: Callable[[str], Built],
    tmp_path: Path,
    service_keys: tuple[SecureBootKeys, PcrSigner],
) -> None:
    built = isos("secureboot-amd64")
    keys, _ = service_keys
    assert built.inputs.kind is IsoKind.UEFI
    conf = check_sdboot_tree(built, tmp_path, "BOOTX64.EFI")
    assert conf.endswith("\nsecure-boot-enroll if-safe\n")
    esp = esp_of(built.iso)
    auth = built.inputs.secureboot
    assert auth is not None
    for name, path in (("PK", auth.enrollment.pk), ("KEK", auth.enrollment.kek),
                       ("db", auth.enrollment.db)):  # fmt: skip
        assert mread(esp, f"/loader/keys/auto/{name}.auth") == path.read_bytes()
        assert extract(built.iso, f"/loader/keys/auto/{name}.auth", tmp_path / "a") == (
            path.read_bytes()
        )
    assert mread(esp, "/EFI/keys/uki-signing-cert.der") == keys.signing_cert_der()
    # the label never carries a Secure Boot marker (talos-assets §8.5)
    assert pvd(built.iso)["Volume Id"] == "TALOS_V1_11_3"
    for binary in ("/EFI/BOOT/BOOTX64.EFI", "/EFI/Linux/Talos-v1.11.3.efi"):
        extract(built.iso, binary, tmp_path / "signed.efi")
        verified = subprocess.run(
            ["sbverify", "--cert", keys.cert_path, tmp_path / "signed.efi"],
            check=False, capture_output=True, text=True,
        )  # fmt: skip
        assert verified.returncode == 0, (binary, verified.stderr)


def test_flavor_bootloader_from_1_12(isos: Callable[[str], Built], tmp_path: Path) -> None:
    """``grub`` pins GRUB to i386-pc for targets that use sd-boot for UEFI, as upstream: a
    BIOS-only ISO. ``sd-boot`` gives the UEFI-only ISO, here with enrolment switched off."""
    grub = isos("grub-1.12-amd64")
    assert grub.inputs.kind is IsoKind.GRUB
    assert [(b.platform, b.path) for b in el_torito(grub.iso)] == [
        ("BIOS", "/boot/grub/i386-pc/eltorito.img")
    ]
    files = iso_files(grub.iso)
    assert "/boot/grub/grub.cfg" in files and "/efi.img" not in files
    assert pvd(grub.iso)["Volume Id"] == "TALOS_V1_12_0_BETA_1"
    assert " module.sig_enforce=1" in grub.inputs.cmdline

    sdboot = isos("sdboot-1.12-amd64")
    assert sdboot.inputs.kind is IsoKind.UEFI
    conf = check_sdboot_tree(sdboot, tmp_path, "BOOTX64.EFI")
    assert conf.endswith("\nsecure-boot-enroll off\n")
    assert not any(f.startswith(("/boot/", "/loader/keys/")) for f in iso_files(sdboot.iso))
    assert pvd(sdboot.iso)["Volume Set Id"] == "Talos-v1.12.0-beta.1"


@pytest.mark.parametrize("name", ["grub-amd64", "hybrid-amd64", "uefi-arm64"])
def test_reproducible(
    isos: Callable[[str], Built], tmp_path: Path, name: str, arm64_grub: Path
) -> None:
    first = isos(name)
    again = tmp_path / "again.iso"
    build_iso(first.inputs, tmp_path / "work", again, grub_dirs={"arm64-efi": arm64_grub})
    assert again.read_bytes() == first.iso.read_bytes()
    later = tmp_path / "later.iso"
    build_iso(first.inputs, tmp_path / "work", later, grub_dirs={"arm64-efi": arm64_grub},
              source_date_epoch=SOURCE_DATE_EPOCH + 86400)  # fmt: skip
    assert pvd(later)["Creation Time"] == "2019060221345200"
    assert later.read_bytes() != first.iso.read_bytes()


# --- boots --------------------------------------------------------------------------------------


def plain(log: str) -> str:
    """The serial log without terminal escape sequences and with runs of blanks folded."""
    return re.sub(r"\s+", " ", re.sub(r"\x1b\[[0-9;=?]*[A-Za-z]", " ", log))


def assert_booted(result: BootResult, firmware: str, cmdline: str) -> None:
    report = parse_markers(result.log)
    assert report.done, result.describe()
    assert report.boot_ok
    assert report.firmware == firmware
    assert report.cmdline == cmdline, result.describe()


# The CD boots of the grub, hybrid and arm64 UEFI ISOs run through /image in
# tests/http/test_iso.py; these are the variants only the builder test reaches.
BOOTS = [
    # name, arch, firmware, media, GRUB boots it (cmdline gets BOOT_IMAGE=)
    ("hybrid-amd64", "amd64", Firmware.UEFI, "disk", False),  # written to a USB stick
    ("grub-arm64", "arm64", Firmware.UEFI, "cd", True),
]


@pytest.mark.boot
@pytest.mark.parametrize(("name", "arch", "firmware", "media", "grub"), BOOTS)
def test_boot(
    isos: Callable[[str], Built],
    tmp_path: Path,
    name: str,
    arch: str,
    firmware: Firmware,
    media: str,
    grub: bool,
) -> None:
    built = isos(name)
    drive = cd_args(arch, built.iso) if media == "cd" else disk_args(built.iso)
    result = boot(arch, tmp_path, firmware=firmware, extra_args=drive, timeout=180, stop_on=STOP)
    expected = grub_passes(built.inputs.cmdline) if grub else built.inputs.cmdline
    assert_booted(result, "BIOS" if firmware is Firmware.BIOS else "UEFI", expected)
    assert "talos.experimental.wipe" not in expected  # the default entry is the normal boot
    report = parse_markers(result.log)
    assert report.rootfs == built.inputs.version
    if firmware is not Firmware.BIOS:
        assert report.secureboot == "disabled"
        # The firmware console shows the boot menu: the reset entry is there, not the default.
        menu = plain(result.log)
        if grub:
            assert "*Talos ISO" in menu and " Reset Talos installation" in menu
        else:
            title = f"Talos ({built.inputs.version})"
            assert f"{title} {title} (Reset system disk)" in menu


SETUP_MODE_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")  # no keys enrolled


@pytest.mark.boot
def test_boot_secureboot(
    isos: Callable[[str], Built],
    test_release: Release,
    tmp_path: Path,
    service_keys: tuple[SecureBootKeys, PcrSigner],
) -> None:
    """The ISO's sd-boot enrols the service's keys (``if-safe``: QEMU is a VM) into a firmware
    in setup mode and resets; then the firmware enforces Secure Boot with them."""
    built = isos("secureboot-amd64")
    first = boot("amd64", tmp_path, firmware=Firmware.UEFI_SECUREBOOT,
                 vars_template=SETUP_MODE_VARS, extra_args=cd_args("amd64", built.iso),
                 timeout=120, stop_on=["FIXTURE-DONE", "Failed to"], name="enroll")  # fmt: skip
    assert "Custom Secure Boot keys successfully enrolled" in first.log, first.describe()
    assert not parse_markers(first.log).boot_ok  # sd-boot resets right after enrolling
    enrolled = tmp_path / "enrolled-vars.fd"
    shutil.copyfile(tmp_path / "enroll-vars.fd", enrolled)

    second = boot("amd64", tmp_path, firmware=Firmware.UEFI_SECUREBOOT, vars_template=enrolled,
                  extra_args=cd_args("amd64", built.iso), timeout=180, stop_on=STOP,
                  name="enforced")  # fmt: skip
    assert_booted(second, "UEFI", built.inputs.cmdline)
    report = parse_markers(second.log)
    assert report.secureboot == "enabled"
    assert "lockdown=confidentiality" in built.inputs.cmdline  # < 1.14
    assert report.lockdown == "confidentiality"

    # Same sd-boot and keys, but the UKI signed by someone else: refused.
    keys, pcr = service_keys
    other_files = write_secureboot_keys(tmp_path / "other", "someone else")
    other = SecureBootKeys.load(other_files.signing_key, other_files.signing_cert)
    inputs = prepare(test_release, tmp_path / "stranger", "v1.11.3", "amd64", keys=keys,
                     uki_keys=other, pcr=pcr)  # fmt: skip
    stranger = tmp_path / "stranger.iso"
    build_iso(inputs, tmp_path / "stranger", stranger)
    refused = r"Error loading \\EFI\\Linux\\Talos-v1\.11\.3\.efi: Access denied"
    third = boot("amd64", tmp_path, firmware=Firmware.UEFI_SECUREBOOT, vars_template=enrolled,
                 extra_args=cd_args("amd64", stranger), timeout=120,
                 stop_on=[refused, "FIXTURE-BOOT-OK"], name="stranger")  # fmt: skip
    assert third.stopped_on == refused, third.describe()  # sd-boot ran, the UKI did not
    assert not parse_markers(third.log).boot_ok
