"""UKI assembly (reference/talos-assets.md §7) checked with independent tools and real boots.

Section tables are read back with binutils' ``objdump -h``/``-p`` (``aarch64-linux-gnu-objdump``
for arm64), section payloads with ``objcopy --dump-section`` or by slicing the file at the
offsets objdump reports. The PCR 11 prediction is recomputed here from those bytes with hashlib,
its value cross-checked against systemd's own ``systemd-measure calculate``, and the signatures
verified with ``openssl dgst -verify`` against the ``.pcrpkey`` section. Boots put the UKI on a
FAT ESP (mformat/mcopy) as the removable-media loader under OVMF/AAVMF and read the fixture
init's markers.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from image_service.versions import Version
from services.builder.errors import BuildFailed
from services.builder.formats.pe import (
    AddedSection,
    PeError,
    assemble,
    patch_timestamp_and_checksum,
    pe_checksum,
    read_pe,
)
from services.builder.formats.uki import (
    UkiProfile,
    build_uki,
    kernel_version,
    predict_pcr,
    talos_os_release,
    uki_profiles,
)
from services.builder.talos.quirks import quirks_for
from services.builder.talos.secureboot import PcrSigner, SecureBootKeys
from services.builder.tools import SOURCE_DATE_EPOCH
from tests.release import Release
from tests.release.markers import parse_markers
from tests.support.efi import esp_drive, make_esp
from tests.support.keys import write_secureboot_keys
from tests.support.qemu import Firmware, boot

CONSOLE = {"amd64": "console=ttyS0", "arm64": "console=ttyAMA0"}
OBJDUMP = {"amd64": "objdump", "arm64": "aarch64-linux-gnu-objdump"}
EFI_NAME = {"amd64": "BOOTX64.EFI", "arm64": "BOOTAA64.EFI"}
APPENDED_ATTRS = ["CONTENTS", "ALLOC", "LOAD", "READONLY", "DATA"]


# --- helpers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dumped:
    """One row of ``objdump -h``."""

    name: str
    size: int
    vma: int
    offset: int
    flags: list[str]


def objdump_sections(path: Path, arch: str = "amd64") -> list[Dumped]:
    out = subprocess.run(
        [OBJDUMP[arch], "-h", str(path)], check=True, capture_output=True, text=True
    ).stdout
    rows = re.findall(
        r"^\s*\d+\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\S+\n\s+(.*)$",
        out,
        re.M,
    )
    return [
        Dumped(n, int(s, 16), int(v, 16), int(o, 16), f.replace(" ", "").split(","))
        for n, s, v, o, f in rows
    ]


def objdump_headers(path: Path, arch: str = "amd64") -> dict[str, str]:
    out = subprocess.run(
        [OBJDUMP[arch], "-p", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return dict(re.findall(r"^(\w[\w/]*)\s+(.+)$", out, re.M))


def payload(path: Path, row: Dumped) -> bytes:
    with path.open("rb") as f:
        f.seek(row.offset)
        return f.read(row.size)


def profiles_for(version: str, output: str, cmdline: str) -> tuple[UkiProfile, ...]:
    return uki_profiles(quirks_for(Version.parse(version)), output, cmdline)


def build(
    release: Release,
    version: str,
    arch: str,
    out: Path,
    cmdline: str,
    *,
    output: str = "uki",
    **kwargs: object,
) -> None:
    art = release.version(version).arches[arch]
    build_uki(
        art.systemd_stub,
        art.vmlinuz,
        art.initramfs,
        cmdline,
        talos_os_release(version),
        kernel_version(art.vmlinuz),
        out,
        profiles=profiles_for(version, output, cmdline),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def pcr_signer(tmp_path_factory: pytest.TempPathFactory) -> PcrSigner:
    keys = write_secureboot_keys(tmp_path_factory.mktemp("pcr"))
    return PcrSigner.load(keys.pcr_key)


# --- pure parts ---------------------------------------------------------------------------------


def test_os_release_is_talos_template() -> None:
    # talos-assets.md §7.1, byte for byte.
    assert talos_os_release("v1.11.3") == (
        'NAME="Talos"\nID=talos\nVERSION_ID=v1.11.3\nPRETTY_NAME="Talos (v1.11.3)"\n'
        'HOME_URL="https://www.talos.dev/"\n'
        'BUG_REPORT_URL="https://github.com/siderolabs/talos/issues"\n'
        'VENDOR_NAME="Sidero Labs"\nVENDOR_URL="https://www.siderolabs.com/"\n'
    )


WIPE = "talos.experimental.wipe"
RESET_ISO = ("ID=reset\nTITLE=Reset system disk", f" {WIPE}=system")
RESET_DISK = (
    "ID=reset-maintenance\nTITLE=Reset to maintenance mode",
    f" {WIPE}=system:EPHEMERAL,STATE",
)
MAIN = ("ID=main", "")


@pytest.mark.parametrize(
    ("version", "output", "expected"),
    [
        ("1.9.5", "iso", []),
        ("1.9.5", "image", []),
        ("1.10.0-alpha.1", "uki", [MAIN]),
        ("1.10.0", "iso", [MAIN, RESET_ISO]),
        ("1.11.3", "image", [MAIN, RESET_DISK]),
        ("1.11.3", "installer", [MAIN, RESET_DISK]),
    ],
)
def test_profiles_by_version_and_output(
    version: str, output: str, expected: list[tuple[str, str]]
) -> None:
    base = "console=ttyS0 talos.platform=metal"
    got = profiles_for(version, output, base)
    assert [p.section_text() for p in got] == [text for text, _ in expected]
    assert [p.cmdline for p in got] == [base + extra if extra else "" for _, extra in expected]


def test_kernel_version(test_release: Release) -> None:
    amd, arm = (test_release.version("v1.11.3").arches[a] for a in ("amd64", "arm64"))
    assert kernel_version(amd.vmlinuz) == amd.kernel_release
    assert kernel_version(arm.vmlinuz) is None  # arm64 Image: no bzImage header, no .uname


def test_pe_checksum_matches_the_linkers(test_release: Release, tmp_path: Path) -> None:
    # Debian's bookworm stub carries a linker-computed CheckSum: an upstream golden value.
    stub = test_release.version("v1.7.7").arches["amd64"].systemd_stub
    image = read_pe(stub)
    assert image.checksum != 0
    assert pe_checksum(stub.read_bytes(), image.checksum_offset) == image.checksum

    copy = tmp_path / "stub.efi"
    shutil.copyfile(stub, copy)
    patch_timestamp_and_checksum(copy, 1700000000)
    headers = objdump_headers(copy)
    assert headers["Time/Date"] == "Tue Nov 14 22:13:20 2023"
    assert int(headers["CheckSum"], 16) == pe_checksum(copy.read_bytes(), image.checksum_offset)


def test_rejects_what_it_cannot_assemble(test_release: Release, tmp_path: Path) -> None:
    art = test_release.version("v1.11.3").arches["amd64"]
    with pytest.raises(PeError, match="not a PE image"):
        read_pe(art.initramfs)
    with pytest.raises(PeError, match="longer than 8 bytes"):
        assemble(
            art.systemd_stub, [AddedSection(".toolongname", b"x")], tmp_path / "x.efi", timestamp=0
        )
    no_sbat = tmp_path / "no-sbat.efi"
    data = art.systemd_stub.read_bytes()
    no_sbat.write_bytes(data[:0x600].replace(b".sbat\0", b".xbat\0") + data[0x600:])
    with pytest.raises(BuildFailed, match=r"no \.sbat section"):
        build_uki(no_sbat, art.vmlinuz, art.initramfs, "x", "", None, tmp_path / "y.efi")
    truncated = tmp_path / "truncated.efi"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(PeError, match="past the end of the file"):
        assemble(truncated, [], tmp_path / "t.efi", timestamp=0)
    with pytest.raises(BuildFailed, match="'main' is reserved"):
        build_uki(
            art.systemd_stub, art.vmlinuz, art.initramfs, "x", "", None, tmp_path / "m.efi",
            profiles=[UkiProfile("main"), UkiProfile("main", "Again", "x y")],
        )  # fmt: skip
    with pytest.raises(BuildFailed, match="first UKI profile"):
        build_uki(
            art.systemd_stub, art.vmlinuz, art.initramfs, "x", "", None, tmp_path / "z.efi",
            profiles=[UkiProfile("reset", "Reset", "x y")],
        )  # fmt: skip


def test_pcr_prediction_matches_systemd_measure(tmp_path: Path, pcr_signer: PcrSigner) -> None:
    """systemd 252's measure tool knows .linux .osrel .cmdline .initrd .splash .dtb .pcrpkey:
    for those, our PCR 11 value after enter-machined must equal its own, per bank."""
    tool = Path("/usr/lib/systemd/systemd-measure")
    assert tool.exists(), "systemd-measure is missing: install the Debian package systemd"
    files = {
        ".linux": b"kernel \x00\x01" * 1000,
        ".osrel": talos_os_release("v1.11.3").encode(),
        ".cmdline": b"console=ttyS0 talos.platform=metal",
        ".initrd": bytes(range(256)) * 3000,
        ".splash": b"BM fake",
        ".pcrpkey": pcr_signer.public_key_pem(),
    }
    args = []
    for name, data in files.items():
        (tmp_path / name[1:]).write_bytes(data)
        args.append(f"--{name[1:]}={tmp_path / name[1:]}")
    for bank in ("sha256", "sha384", "sha512"):
        out = subprocess.run(
            [tool, "calculate", *args, "--phase=enter-initrd:leave-initrd:enter-machined",
             f"--bank={bank.upper()}", "--json=short"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        (entry,) = json.loads(out)[bank]
        assert entry["pcr"] == 11
        assert predict_pcr(files, bank)["enter-machined"].hex() == entry["hash"]


# --- section layout -----------------------------------------------------------------------------


LAYOUTS = [
    # version, arch, output, appended sections in order (reference §7.1)
    ("v1.7.7", "amd64", "iso", [".osrel", ".cmdline", ".uname", ".linux", ".initrd"]),
    ("v1.11.3", "amd64", "iso",
     [".osrel", ".cmdline", ".uname", ".linux", ".initrd", ".profile", ".profile", ".cmdline"]),
    ("v1.11.3", "arm64", "uki", [".osrel", ".cmdline", ".linux", ".initrd", ".profile"]),
]  # fmt: skip


@pytest.mark.parametrize(("version", "arch", "output", "appended"), LAYOUTS)
def test_section_layout(
    test_release: Release,
    tmp_path: Path,
    version: str,
    arch: str,
    output: str,
    appended: list[str],
) -> None:
    art = test_release.version(version).arches[arch]
    cmdline = f"{CONSOLE[arch]} talos.platform=metal"
    uki = tmp_path / "uki.efi"
    build(test_release, version, arch, uki, cmdline, output=output)

    stub_rows = objdump_sections(art.systemd_stub, arch)
    rows = objdump_sections(uki, arch)
    ours = read_pe(uki)
    names = [r.name for r in stub_rows] + appended
    assert [r.name for r in rows] == names
    assert [s.name for s in ours.sections] == names
    assert [(s.virtual_size, s.raw_offset) for s in ours.sections] == [
        (r.size, r.offset) for r in rows
    ]
    assert [r.vma for r in rows[: len(stub_rows)]] == [r.vma for r in stub_rows]
    for row in rows[len(stub_rows) :]:
        assert row.flags == APPENDED_ATTRS, row

    stub_headers, headers = objdump_headers(art.systemd_stub, arch), objdump_headers(uki, arch)
    section_align = int(stub_headers["SectionAlignment"], 16)
    file_align = int(stub_headers["FileAlignment"], 16)
    base = int(headers["ImageBase"], 16)
    assert headers["SectionAlignment"] == stub_headers["SectionAlignment"]
    assert int(headers["CheckSum"], 16) == 0
    assert headers["Time/Date"] == "Sat Jun  1 21:34:52 2019"  # SOURCE_DATE_EPOCH 1559424892
    new = rows[len(stub_rows) :]
    assert (
        new[0].vma - base
        == -(-max(r.vma - base + r.size for r in stub_rows) // section_align) * section_align
    )
    for row in new:
        assert (row.vma - base) % section_align == 0 and row.offset % file_align == 0
    by_vma = sorted(rows, key=lambda r: r.vma)
    for a, b in itertools.pairwise(by_vma):
        assert a.vma + a.size <= b.vma, (a, b)
    by_offset = sorted(rows, key=lambda r: r.offset)
    for a, b in itertools.pairwise(by_offset):
        assert a.offset + a.size <= b.offset, (a, b)
    last = by_vma[-1]
    assert (
        int(headers["SizeOfImage"], 16)
        == -(-(last.vma - base + last.size) // section_align) * section_align
    )
    assert (
        uki.stat().st_size
        == by_offset[-1].offset + -(-by_offset[-1].size // file_align) * file_align
    )

    # Payloads, read by the independent tools.
    dumped = tmp_path / "cmdline.bin"
    subprocess.run(
        ["objcopy" if arch == "amd64" else "aarch64-linux-gnu-objcopy",
         f"--dump-section=.cmdline={dumped}", str(uki), str(tmp_path / "scratch.efi")],
        check=True,
    )  # fmt: skip
    assert dumped.read_bytes() == cmdline.encode()
    by_name = {r.name: r for r in reversed(rows)}  # first of each name
    assert payload(uki, by_name[".linux"]) == art.vmlinuz.read_bytes()
    assert payload(uki, by_name[".initrd"]) == art.initramfs.read_bytes()
    assert payload(uki, by_name[".osrel"]) == talos_os_release(version).encode()
    if ".uname" in appended:
        assert payload(uki, by_name[".uname"]) == art.kernel_release.encode()
    assert [r.name for r in rows].count(".sbat") == 1


def test_builds_are_reproducible(
    test_release: Release, tmp_path: Path, pcr_signer: PcrSigner
) -> None:
    cmdline = "console=ttyS0 talos.platform=metal"
    a, b, c = tmp_path / "a.efi", tmp_path / "b.efi", tmp_path / "c.efi"
    build(test_release, "v1.11.3", "amd64", a, cmdline, output="image", pcr=pcr_signer)
    build(test_release, "v1.11.3", "amd64", b, cmdline, output="image", pcr=pcr_signer)
    assert a.read_bytes() == b.read_bytes()
    build(test_release, "v1.11.3", "amd64", c, cmdline, output="image", pcr=pcr_signer,
          source_date_epoch=SOURCE_DATE_EPOCH + 1)  # fmt: skip
    first, third, at = a.read_bytes(), c.read_bytes(), read_pe(a).timestamp_offset
    assert first[at : at + 4] != third[at : at + 4]  # only the TimeDateStamp differs
    assert first[:at] + first[at + 4 :] == third[:at] + third[at + 4 :]


# --- PCR signatures, checked independently ------------------------------------------------------


ORDER = [".linux", ".osrel", ".cmdline", ".initrd", ".ucode", ".splash", ".dtb", ".uname",
         ".sbat", ".pcrpkey", ".profile", ".dtbauto", ".hwids"]  # fmt: skip
TPM_ALG = {"sha256": 0x0B, "sha384": 0x0C, "sha512": 0x0D}


def expected_policy(measured: dict[str, bytes], bank: str) -> bytes:
    """Reference §7.4, written out again: PCR 11 after enter-machined, then TPM2_PolicyPCR."""
    pcr = bytes(hashlib.new(bank).digest_size)
    for data in [
        *(x for name in ORDER if name in measured for x in (name.encode() + b"\0", measured[name])),
        b"enter-initrd", b"leave-initrd", b"enter-machined",
    ]:  # fmt: skip
        pcr = hashlib.new(bank, pcr + hashlib.new(bank, data).digest()).digest()
    selection = struct.pack(">IHB3s", 1, TPM_ALG[bank], 3, b"\x00\x08\x00")  # PCR 11
    return hashlib.sha256(
        bytes(32) + bytes.fromhex("0000017f") + selection + hashlib.sha256(pcr).digest()
    ).digest()


def check_pcrsig(tmp_path: Path, sig_json: bytes, measured: dict[str, bytes]) -> None:
    doc = json.loads(sig_json)
    assert list(doc) == ["sha256", "sha384", "sha512"]
    assert sig_json == json.dumps(doc, separators=(",", ":")).encode()  # Go's compact form
    pubkey = tmp_path / "pcrpkey.pem"
    pubkey.write_bytes(measured[".pcrpkey"])
    pkcs1 = subprocess.run(
        ["openssl", "rsa", "-pubin", "-in", pubkey, "-RSAPublicKey_out", "-outform", "DER"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    for bank, entries in doc.items():
        (entry,) = entries
        assert list(entry) == ["pcrs", "pkfp", "pol", "sig"]
        assert entry["pcrs"] == [11]
        assert entry["pkfp"] == hashlib.sha256(pkcs1).hexdigest()
        policy = expected_policy(measured, bank)
        assert entry["pol"] == policy.hex()
        (tmp_path / "pol.bin").write_bytes(policy)
        (tmp_path / "sig.bin").write_bytes(base64.b64decode(entry["sig"]))
        verified = subprocess.run(
            ["openssl", "dgst", f"-{bank}", "-verify", pubkey, "-signature",
             tmp_path / "sig.bin", tmp_path / "pol.bin"],
            check=False, capture_output=True, text=True,
        )  # fmt: skip
        assert verified.returncode == 0 and "Verified OK" in verified.stdout, verified.stderr


@pytest.mark.parametrize(
    ("version", "output"), [("v1.7.7", "iso"), ("v1.11.3", "iso"), ("v1.12.0-beta.1", "image")]
)
def test_pcr_signatures(
    test_release: Release, tmp_path: Path, pcr_signer: PcrSigner, version: str, output: str
) -> None:
    cmdline = "console=ttyS0 talos.platform=metal lockdown=confidentiality"
    uki = tmp_path / "uki.efi"
    build(test_release, version, "amd64", uki, cmdline, output=output, pcr=pcr_signer)
    rows = objdump_sections(uki)
    data = [(r.name, payload(uki, r)) for r in rows]
    names = [n for n, _ in data]
    first_profile = names.index(".profile") if ".profile" in names else len(names)
    base = {n: d for n, d in data[:first_profile] if n.startswith(".") and n in ORDER}
    assert base[".pcrpkey"] == pcr_signer.public_key_pem()
    assert base[".pcrpkey"].startswith(b"-----BEGIN PUBLIC KEY-----\n")

    if first_profile == len(names):  # < 1.10: one signature, at the very end
        assert names.count(".pcrsig") == 1 and names[-1] == ".pcrsig"
        check_pcrsig(tmp_path, data[-1][1], base)
        return
    # >= 1.10: .profile(main) .pcrsig .profile(reset) .cmdline .pcrsig, each over base + its own
    assert names[first_profile:] == [".profile", ".pcrsig", ".profile", ".cmdline", ".pcrsig"]
    main = {**base, ".profile": data[first_profile][1]}
    reset = {**base, ".profile": data[first_profile + 2][1], ".cmdline": data[first_profile + 3][1]}
    assert main[".profile"] == b"ID=main"
    assert reset[".cmdline"].startswith(cmdline.encode() + b" talos.experimental.wipe=system")
    check_pcrsig(tmp_path, data[first_profile + 1][1], main)
    check_pcrsig(tmp_path, data[first_profile + 4][1], reset)


# --- boots --------------------------------------------------------------------------------------


BOOTS = [
    # version, arch, output: v1.11.3 (trixie stub) carries profiles, the first one must boot
    ("v1.11.3", "amd64", "image"),
    ("v1.7.7", "amd64", "iso"),  # bookworm stub (systemd 252), SectionAlignment 0x200, symbols
    ("v1.11.3", "arm64", "iso"),
]


@pytest.mark.boot
@pytest.mark.parametrize(("version", "arch", "output"), BOOTS)
def test_boot_uki(
    test_release: Release, tmp_path: Path, version: str, arch: str, output: str
) -> None:
    cmdline = f"{CONSOLE[arch]} panic=-1 quiet talos.platform=metal"
    uki = tmp_path / "uki.efi"
    build(test_release, version, arch, uki, cmdline, output=output)
    if version == "v1.11.3":
        assert [s.name for s in read_pe(uki).sections].count(".profile") == 2
    esp = make_esp(tmp_path, {f"EFI/BOOT/{EFI_NAME[arch]}": uki})
    result = boot(arch, tmp_path, firmware=Firmware.UEFI, extra_args=esp_drive(esp), timeout=150,
                  stop_on=["FIXTURE-DONE", "Kernel panic"])  # fmt: skip
    report = parse_markers(result.log)
    assert report.done, result.describe()
    assert report.firmware == "UEFI"
    assert report.cmdline == cmdline  # the main profile's, not the reset entry's
    assert report.rootfs == version
    assert report.secureboot != "enabled"


@pytest.fixture(scope="module")
def snakeoil_keys(tmp_path_factory: pytest.TempPathFactory) -> SecureBootKeys:
    """The ovmf package's PK/KEK/db test key, enrolled in OVMF_VARS_4M.snakeoil.fd."""
    directory = tmp_path_factory.mktemp("snakeoil")
    key = directory / "snakeoil.key"
    subprocess.run(
        ["openssl", "rsa", "-in", "/usr/share/ovmf/PkKek-1-snakeoil.key", "-passin",
         "pass:snakeoil", "-out", key],
        check=True, capture_output=True,
    )  # fmt: skip
    return SecureBootKeys.load(key, Path("/usr/share/ovmf/PkKek-1-snakeoil.pem"))


@pytest.mark.boot
def test_boot_secureboot_signed(
    test_release: Release, tmp_path: Path, snakeoil_keys: SecureBootKeys, pcr_signer: PcrSigner
) -> None:
    # No "quiet": the kernel's own Secure Boot lines are part of the verdict.
    cmdline = "console=ttyS0 panic=-1 talos.platform=metal"
    uki = tmp_path / "uki.efi"
    build(test_release, "v1.11.3", "amd64", uki, cmdline, output="image", pcr=pcr_signer,
          secureboot=snakeoil_keys)  # fmt: skip
    esp = make_esp(tmp_path, {"EFI/BOOT/BOOTX64.EFI": uki})
    result = boot(
        "amd64", tmp_path, firmware=Firmware.UEFI_SECUREBOOT, extra_args=esp_drive(esp),
        timeout=150, stop_on=["FIXTURE-DONE", "Kernel panic", "Access Denied"],
    )  # fmt: skip
    report = parse_markers(result.log)
    assert report.done, result.describe()
    assert report.cmdline == cmdline
    assert "EFI stub: UEFI Secure Boot is enabled." in result.log
    assert "secureboot: Secure boot enabled" in result.log
    assert report.lockdown == "integrity"  # locked down by Secure Boot, not by the cmdline
    assert report.secureboot == "enabled"


@pytest.mark.boot
def test_boot_secureboot_refuses_other_key(test_release: Release, tmp_path: Path) -> None:
    keys = write_secureboot_keys(tmp_path / "keys")
    uki = tmp_path / "uki.efi"
    build(test_release, "v1.11.3", "amd64", uki, "console=ttyS0 panic=-1 quiet",
          secureboot=SecureBootKeys.load(keys.signing_key, keys.signing_cert))  # fmt: skip
    esp = make_esp(tmp_path, {"EFI/BOOT/BOOTX64.EFI": uki})
    result = boot("amd64", tmp_path, firmware=Firmware.UEFI_SECUREBOOT, extra_args=esp_drive(esp),
                  timeout=60, stop_on=["Access Denied", "FIXTURE-BOOT-OK"])  # fmt: skip
    assert result.stopped_on == "Access Denied", result.describe()
    assert not parse_markers(result.log).boot_ok
