"""Secure Boot keys, Authenticode signing and enrolment files (reference/talos-assets.md §13).

Signatures are checked with sbsigntool's ``sbverify`` and openssl, signature lists against
efitools' ``cert-to-efi-sig-list``, and the enrolment files end to end: systemd-boot enrols
them into an empty OVMF variable store (setup mode), after which the firmware enforces Secure
Boot with our key and boots our signed systemd-boot and UKI.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

from services.builder.formats.uki import build_uki, talos_os_release
from services.builder.talos.secureboot import (
    MICROSOFT_OWNER_GUID,
    WELL_KNOWN_DB,
    WELL_KNOWN_KEK,
    PcrSigner,
    SecureBootKeyError,
    SecureBootKeys,
    enrollment_files,
    sign_efi,
    signature_list,
    signature_owner,
)
from tests.release import Release
from tests.release.markers import parse_markers
from tests.support.efi import esp_drive, make_esp
from tests.support.keys import SecureBootKeys as KeyFiles
from tests.support.keys import write_secureboot_keys
from tests.support.qemu import Firmware, boot

EFI_GLOBAL_VARIABLE = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
EFI_IMAGE_SECURITY_DATABASE = uuid.UUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
EFI_CERT_TYPE_PKCS7 = uuid.UUID("4aafd29d-68df-49ee-8aa9-347d375665a7")
EFI_CERT_X509 = uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")


def openssl(*args: str | Path, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["openssl", *map(str, args)], input=stdin, check=True, capture_output=True
    ).stdout


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> KeyFiles:
    return write_secureboot_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def keys(key_files: KeyFiles) -> SecureBootKeys:
    return SecureBootKeys.load(key_files.signing_key, key_files.signing_cert)


def sbverify(path: Path, cert: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sbverify", "--cert", str(cert), str(path)], check=False, capture_output=True, text=True
    )


# --- key loading --------------------------------------------------------------------------------


def test_load_accepts_pkcs1_and_pkcs8(key_files: KeyFiles, tmp_path: Path) -> None:
    pkcs1 = tmp_path / "pkcs1.pem"  # what `talosctl gen secureboot uki` writes
    pkcs1.write_bytes(openssl("rsa", "-in", key_files.signing_key, "-traditional"))
    assert pkcs1.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert key_files.signing_key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    for key in (pkcs1, key_files.signing_key):
        loaded = SecureBootKeys.load(key, key_files.signing_cert)
        assert loaded.key_path == key
        assert "PRIVATE" not in repr(loaded)


def test_signing_cert_pem(keys: SecureBootKeys, key_files: KeyFiles) -> None:
    assert keys.signing_cert_pem() == openssl("x509", "-in", key_files.signing_cert)
    assert keys.signing_cert_der() == openssl(
        "x509", "-in", key_files.signing_cert, "-outform", "DER"
    )


def _bad_inputs(tmp: Path, good: KeyFiles) -> dict[str, tuple[Path, Path, str]]:
    other = write_secureboot_keys(tmp / "other", "someone else")
    ec_key = tmp / "ec.pem"
    ec_key.write_bytes(
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
    )
    ec_cert = tmp / "ec.crt"
    ec_cert.write_bytes(
        openssl("req", "-new", "-x509", "-key", ec_key, "-subj", "/CN=ec/", "-days", "1")
    )
    encrypted = tmp / "enc.pem"
    encrypted.write_bytes(
        openssl("pkey", "-in", good.signing_key, "-aes256", "-passout", "pass:secret")
    )
    garbage = tmp / "garbage.pem"
    garbage.write_text("not a key\n")
    return {
        "mismatch": (other.signing_key, good.signing_cert, "does not belong to the certificate"),
        "ec key": (ec_key, good.signing_cert, "not an RSA key"),
        "ec cert": (good.signing_key, ec_cert, "not for RSA"),
        "encrypted": (encrypted, good.signing_cert, "is encrypted"),
        "garbage key": (garbage, good.signing_cert, "not a PEM private key"),
        "garbage cert": (good.signing_key, garbage, "not a PEM X.509 certificate"),
        "missing": (tmp / "nope.pem", good.signing_cert, "cannot read"),
    }


def test_load_rejects_bad_keys(key_files: KeyFiles, tmp_path: Path) -> None:
    secret = key_files.signing_key.read_text().splitlines()[1]
    for case, (key, cert, message) in _bad_inputs(tmp_path, key_files).items():
        with pytest.raises(SecureBootKeyError, match=message) as info:
            SecureBootKeys.load(key, cert)
        text = str(info.value)
        assert str(key) in text or str(cert) in text, case
        assert secret not in text and "BEGIN" not in text, case


def test_pcr_signer(key_files: KeyFiles, tmp_path: Path) -> None:
    signer = PcrSigner.load(key_files.pcr_key)
    assert signer.public_key_pem() == openssl("pkey", "-in", key_files.pcr_key, "-pubout")
    pkcs1 = openssl("rsa", "-in", key_files.pcr_key, "-RSAPublicKey_out", "-outform", "DER")
    assert signer.fingerprint == hashlib.sha256(pkcs1).hexdigest()
    assert "PRIVATE" not in repr(signer) and signer.fingerprint[:16] in repr(signer)
    message = b"\x01policy digest"
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "pub.pem").write_bytes(signer.public_key_pem())
    for bank in ("sha256", "sha384", "sha512"):
        (tmp_path / "sig").write_bytes(signer.sign(message, bank))
        out = openssl(
            "dgst", f"-{bank}", "-verify", tmp_path / "pub.pem", "-signature", tmp_path / "sig",
            tmp_path / "msg",
        )  # fmt: skip
        assert b"Verified OK" in out
    with pytest.raises(SecureBootKeyError, match="not an RSA key"):
        ec = tmp_path / "ec.pem"
        ec.write_bytes(
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
        )
        PcrSigner.load(ec)


# --- Authenticode -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1.7.7", "v1.11.3"])
def test_sign_systemd_boot_and_uki(
    test_release: Release, keys: SecureBootKeys, key_files: KeyFiles, tmp_path: Path, version: str
) -> None:
    art = test_release.version(version).arches["amd64"]
    signed = tmp_path / "systemd-boot.efi.signed"
    sign_efi(art.systemd_boot, keys, signed)
    assert sbverify(signed, key_files.signing_cert).returncode == 0
    unsigned = sbverify(art.systemd_boot, key_files.signing_cert)
    assert unsigned.returncode != 0 and "No signature table present" in unsigned.stderr

    uki, plain = tmp_path / "vmlinuz.efi.signed", tmp_path / "vmlinuz.efi"
    args = (art.systemd_stub, art.vmlinuz, art.initramfs, "console=ttyS0", "ID=talos\n", None)
    build_uki(*args, uki, secureboot=keys)
    build_uki(*args, plain)
    ok = sbverify(uki, key_files.signing_cert)
    assert ok.returncode == 0 and "Signature verification OK" in ok.stdout, ok.stderr
    assert "gaps between PE/COFF sections" not in ok.stderr  # the layout is gap-free
    assert sbverify(plain, key_files.signing_cert).returncode != 0
    other = write_secureboot_keys(tmp_path / "other", "someone else")
    assert sbverify(uki, other.signing_cert).returncode != 0
    assert not list(tmp_path.glob("*.unsigned"))


# --- enrolment files ----------------------------------------------------------------------------


def test_signature_owner_is_upstreams_name_based_uuid() -> None:
    # google/uuid NewHash(sha256.New(), NameSpaceX500, data, 4), written out again.
    data = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    raw = bytearray(
        hashlib.sha256(bytes.fromhex("6ba7b8149dad11d180b400c04fd430c8") + data).digest()
    )
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    owner = signature_owner(data)
    assert owner.bytes == bytes(raw[:16])
    assert owner.version == 4 and owner.variant == uuid.RFC_4122


def test_signature_list_matches_efitools(
    keys: SecureBootKeys, key_files: KeyFiles, tmp_path: Path
) -> None:
    owner = uuid.UUID("12345678-9abc-4def-8123-456789abcdef")
    esl = tmp_path / "db.esl"
    subprocess.run(
        ["cert-to-efi-sig-list", "-g", str(owner), str(key_files.signing_cert), str(esl)],
        check=True, capture_output=True,
    )  # fmt: skip
    assert signature_list([(owner, keys.signing_cert_der())]) == esl.read_bytes()


def parse_auth(data: bytes) -> tuple[bytes, bytes, bytes]:
    """EFI_VARIABLE_AUTHENTICATION_2 → (EFI_TIME, PKCS#7 SignedData, payload)."""
    length, revision, cert_type = struct.unpack_from("<IHH", data, 16)
    assert (revision, cert_type) == (0x0200, 0x0EF1)  # WIN_CERT_TYPE_EFI_GUID
    assert uuid.UUID(bytes_le=data[24:40]) == EFI_CERT_TYPE_PKCS7
    return data[:16], data[40 : 16 + length], data[16 + length :]


def parse_esl(data: bytes) -> list[tuple[uuid.UUID, uuid.UUID, bytes]]:
    """EFI signature lists → [(type, owner, certificate)]."""
    out = []
    while data:
        kind = uuid.UUID(bytes_le=data[:16])
        list_size, header_size, sig_size = struct.unpack_from("<III", data, 16)
        body = data[28 + header_size : list_size]
        for i in range(0, len(body), sig_size):
            out.append((kind, uuid.UUID(bytes_le=body[i : i + 16]), body[i + 16 : i + sig_size]))
        data = data[list_size:]
    return out


def verify_pkcs7(tmp_path: Path, signed_data: bytes, content: bytes, cert: Path) -> None:
    """Wrap the bare SignedData in a ContentInfo and let openssl check the detached signature."""

    def der(tag: int, body: bytes) -> bytes:
        n = len(body)
        size = (
            bytes([n])
            if n < 0x80
            else bytes([0x80 | ((n.bit_length() + 7) // 8)])
            + n.to_bytes((n.bit_length() + 7) // 8, "big")
        )
        return bytes([tag]) + size + body

    oid = bytes.fromhex("06092a864886f70d010702")  # 1.2.840.113549.1.7.2 signedData
    (tmp_path / "p7.der").write_bytes(der(0x30, oid + der(0xA0, signed_data)))
    (tmp_path / "content.bin").write_bytes(content)
    openssl(
        "cms", "-verify", "-binary", "-inform", "DER", "-in", tmp_path / "p7.der", "-content",
        tmp_path / "content.bin", "-noverify", "-certfile", cert, "-out", tmp_path / "out.bin",
    )  # fmt: skip
    signer = openssl("pkcs7", "-inform", "DER", "-in", tmp_path / "p7.der", "-print_certs")
    assert openssl("x509", "-in", cert, "-noout", "-fingerprint") == openssl(
        "x509", "-noout", "-fingerprint", stdin=signer
    )


def test_enrollment_files(keys: SecureBootKeys, key_files: KeyFiles, tmp_path: Path) -> None:
    files = enrollment_files(keys, tmp_path / "a")
    again = enrollment_files(keys, tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["KEK.auth", "PK.auth", "db.auth"]
    owner = signature_owner(keys.signing_cert_pem())
    for var, path, vendor in [
        ("PK", files.pk, EFI_GLOBAL_VARIABLE),
        ("KEK", files.kek, EFI_GLOBAL_VARIABLE),
        ("db", files.db, EFI_IMAGE_SECURITY_DATABASE),
    ]:
        data = path.read_bytes()
        assert data == (tmp_path / "b" / path.name).read_bytes()  # SOURCE_DATE_EPOCH timestamps
        time, signed_data, payload = parse_auth(data)
        # EFI_TIME of 2019-06-01 21:34:52 UTC (SOURCE_DATE_EPOCH 1559424892).
        assert time == struct.pack("<HBBBBBBIhBB", 2019, 6, 1, 21, 34, 52, 0, 0, 0, 0, 0)
        assert parse_esl(payload) == [(EFI_CERT_X509, owner, keys.signing_cert_der())]
        attributes = struct.pack("<I", 0x27)  # NV | BS | RT | time-based authenticated write
        content = var.encode("utf-16-le") + vendor.bytes_le + attributes + time + payload
        verify_pkcs7(tmp_path, signed_data, content, key_files.signing_cert)
    assert again.pk.name == "PK.auth"


def test_enrollment_well_known_certificates(keys: SecureBootKeys, tmp_path: Path) -> None:
    with pytest.raises(SecureBootKeyError, match="does not ship") as info:
        enrollment_files(keys, tmp_path / "out", include_well_known=True)
    for name in (*WELL_KNOWN_KEK, *WELL_KNOWN_DB):
        assert name in str(info.value)

    # Stand-in certificates under the reference's file names.
    certs = tmp_path / "ms"
    certs.mkdir()
    for i, name in enumerate((*WELL_KNOWN_KEK, *WELL_KNOWN_DB)):
        stand_in = write_secureboot_keys(tmp_path / f"k{i}", f"stand-in {i}")
        (certs / name).write_bytes(openssl("x509", "-in", stand_in.signing_cert, "-outform", "DER"))
    files = enrollment_files(keys, tmp_path / "out", include_well_known=True, well_known_dir=certs)
    own = (EFI_CERT_X509, signature_owner(keys.signing_cert_pem()), keys.signing_cert_der())
    ms = [(EFI_CERT_X509, MICROSOFT_OWNER_GUID, (certs / n).read_bytes()) for n in WELL_KNOWN_KEK]
    assert parse_esl(parse_auth(files.kek.read_bytes())[2]) == [own, *ms]
    ms = [(EFI_CERT_X509, MICROSOFT_OWNER_GUID, (certs / n).read_bytes()) for n in WELL_KNOWN_DB]
    assert parse_esl(parse_auth(files.db.read_bytes())[2]) == [own, *ms]
    assert parse_esl(parse_auth(files.pk.read_bytes())[2]) == [own]


@pytest.mark.boot
def test_boot_enrolls_keys_then_enforces_them(
    test_release: Release, keys: SecureBootKeys, key_files: KeyFiles, tmp_path: Path
) -> None:
    """sd-boot (systemd 257) enrols our PK/KEK/db into an empty OVMF store, then the firmware
    runs our signed sd-boot and UKI with Secure Boot enforced."""
    art = test_release.version("v1.11.3").arches["amd64"]
    sdboot, uki = tmp_path / "systemd-boot.efi.signed", tmp_path / "vmlinuz.efi.signed"
    sign_efi(art.systemd_boot, keys, sdboot)
    cmdline = "console=ttyS0 panic=-1 talos.platform=metal"
    build_uki(art.systemd_stub, art.vmlinuz, art.initramfs, cmdline,
              talos_os_release("v1.11.3"), None, uki, secureboot=keys)  # fmt: skip
    auth = enrollment_files(keys, tmp_path / "auth")
    esp = make_esp(tmp_path, {
        "EFI/BOOT/BOOTX64.EFI": sdboot,
        "EFI/Linux/Talos-v1.11.3.efi": uki,
        "loader/loader.conf": b"timeout 0\nsecure-boot-enroll if-safe\n",
        "loader/keys/auto/PK.auth": auth.pk,
        "loader/keys/auto/KEK.auth": auth.kek,
        "loader/keys/auto/db.auth": auth.db,
    })  # fmt: skip

    setup_vars = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")  # no keys: setup mode
    first = boot("amd64", tmp_path, firmware=Firmware.UEFI_SECUREBOOT, vars_template=setup_vars,
                 extra_args=esp_drive(esp), timeout=90, name="enroll",
                 stop_on=["FIXTURE-DONE", "Failed to write"])  # fmt: skip
    assert "Custom Secure Boot keys successfully enrolled" in first.log, first.describe()
    assert not parse_markers(first.log).boot_ok  # it reboots right after enrolling

    enrolled = tmp_path / "enrolled-vars.fd"
    shutil.copyfile(tmp_path / "enroll-vars.fd", enrolled)
    second = boot("amd64", tmp_path, firmware=Firmware.UEFI_SECUREBOOT, vars_template=enrolled,
                  extra_args=esp_drive(esp), timeout=120, name="enforced",
                  stop_on=["FIXTURE-DONE", "Access Denied", "Kernel panic"])  # fmt: skip
    report = parse_markers(second.log)
    assert report.done, second.describe()
    assert report.cmdline == cmdline
    assert "secureboot: Secure boot enabled" in second.log
    assert report.lockdown == "integrity"

    # The same store refuses a UKI signed by anyone else.
    other = write_secureboot_keys(tmp_path / "other", "someone else")
    stranger = tmp_path / "stranger.efi"
    build_uki(art.systemd_stub, art.vmlinuz, art.initramfs, cmdline, "ID=talos\n", None, stranger,
              secureboot=SecureBootKeys.load(other.signing_key, other.signing_cert))  # fmt: skip
    esp2 = make_esp(tmp_path, {"EFI/BOOT/BOOTX64.EFI": stranger}, name="esp2.img")
    third = boot("amd64", tmp_path, firmware=Firmware.UEFI_SECUREBOOT, vars_template=enrolled,
                 extra_args=esp_drive(esp2), timeout=60, name="stranger",
                 stop_on=["Access Denied", "FIXTURE-BOOT-OK"])  # fmt: skip
    assert third.stopped_on == "Access Denied", third.describe()
