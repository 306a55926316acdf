"""Secure Boot key material: signing EFI binaries, PCR-policy signing, enrolment databases.

Three keys are configured as PEM files (talos-assets.md §13): the UKI signing key and its
certificate, and the PCR signing key. :meth:`SecureBootKeys.load` and :meth:`PcrSigner.load`
read and validate them once, at startup (RSA only; the key must match the certificate).
Encrypted keys are refused. Key material never reaches a log or an error message, and this
module never writes a private key anywhere: the external tools read the configured files.

* :func:`sign_efi` Authenticode-signs systemd-boot and UKIs with ``sbsign`` (§7.3).
* :class:`PcrSigner` holds the PCR key: the ``.pcrpkey`` PEM, the ``pkfp`` fingerprint and
  RSA-PKCS#1 v1.5 signatures over PCR policy digests (used by :mod:`.uki`, §7.4).
* :func:`enrollment_files` writes ``PK.auth``, ``KEK.auth`` and ``db.auth`` for sd-boot's
  ``loader/keys/auto`` (§13): each an EFI signature list holding the signing certificate,
  owned by a name-based UUID of it, wrapped as a time-based authenticated variable signed by
  the same key (``sign-efi-sig-list`` from efitools). Upstream puts the certificate's PEM
  text into the list; firmware (OVMF) rejects that, so the list carries the DER certificate
  while the owner GUID is still derived from the PEM text. The variable timestamp is
  ``SOURCE_DATE_EPOCH`` (upstream: now), which makes the files reproducible.
* ``includeWellKnownCertificates`` adds the Microsoft KEK and db certificates. They are not
  shipped with image-service (no Debian package carries them as files); the operator points
  ``well_known_dir`` at a directory holding the DER files named in §13.
* :meth:`SecureBootKeys.signing_cert_pem` is the body of ``GET /secureboot/signing-cert.pem``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from services.builder.errors import BuildFailed
from services.builder.tools import SOURCE_DATE_EPOCH, run

__all__ = [
    "EFI_CERT_X509_GUID",
    "MICROSOFT_OWNER_GUID",
    "WELL_KNOWN_DB",
    "WELL_KNOWN_KEK",
    "EnrollmentFiles",
    "PcrSigner",
    "SecureBootKeyError",
    "SecureBootKeys",
    "enrollment_files",
    "sign_efi",
    "signature_list",
    "signature_owner",
]

EFI_CERT_X509_GUID = uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
MICROSOFT_OWNER_GUID = uuid.UUID("77fa9abd-0359-4d32-bd60-28f4e78f784b")
WELL_KNOWN_KEK = (
    "MicCorKEKCA2011_2011-06-24.der",
    "microsoft corporation kek 2k ca 2023.der",
)
WELL_KNOWN_DB = (
    "MicCorUEFCA2011_2011-06-27.der",
    "microsoft uefi ca 2023.der",
    "microsoft option rom uefi ca 2023.der",
)
_BANKS: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


class SecureBootKeyError(BuildFailed):
    """A configured key or certificate is missing, unreadable, not RSA, or does not match."""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SecureBootKeyError(f"cannot read the {what} {path}: {exc.strerror}") from None


def _load_rsa_key(path: Path, what: str) -> rsa.RSAPrivateKey:
    data = _read(path, what)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise SecureBootKeyError(
            f"the {what} {path} is encrypted; configure an unencrypted PEM key"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # The parser's message may quote key bytes: never pass it on.
        raise SecureBootKeyError(
            f"the {what} {path} is not a PEM private key (PKCS#1 'RSA PRIVATE KEY' or PKCS#8)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SecureBootKeyError(f"the {what} {path} is not an RSA key; Secure Boot needs RSA")
    return key


@dataclass(frozen=True)
class SecureBootKeys:
    """The UKI signing key (by path) and its certificate, validated by :meth:`load`."""

    key_path: Path
    cert_path: Path
    certificate: x509.Certificate = field(repr=False)

    @classmethod
    def load(cls, key_path: Path, cert_path: Path) -> SecureBootKeys:
        key = _load_rsa_key(key_path, "Secure Boot signing key")
        try:
            cert = x509.load_pem_x509_certificate(_read(cert_path, "Secure Boot certificate"))
        except ValueError:
            raise SecureBootKeyError(
                f"the Secure Boot certificate {cert_path} is not a PEM X.509 certificate"
            ) from None
        public = cert.public_key()
        if not isinstance(public, rsa.RSAPublicKey):
            raise SecureBootKeyError(f"the Secure Boot certificate {cert_path} is not for RSA")
        if public.public_numbers() != key.public_key().public_numbers():
            raise SecureBootKeyError(
                f"the Secure Boot signing key {key_path} does not belong to the certificate "
                f"{cert_path}; configure the key the certificate was issued for"
            )
        return cls(key_path, cert_path, cert)

    def signing_cert_pem(self) -> bytes:
        """The certificate as PEM, as served at ``/secureboot/signing-cert.pem``."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def signing_cert_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


class PcrSigner:
    """The PCR signing key: signs PCR 11 policy digests and names its public half."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._key = key

    def __repr__(self) -> str:
        return f"PcrSigner(rsa{self._key.key_size}, pkfp={self.fingerprint[:16]}…)"

    @classmethod
    def load(cls, path: Path) -> PcrSigner:
        return cls(_load_rsa_key(path, "PCR signing key"))

    def public_key_pem(self) -> bytes:
        """The ``.pcrpkey`` payload: the public key as PEM ``PUBLIC KEY`` (PKIX SPKI)."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def fingerprint(self) -> str:
        """``pkfp``: hex SHA-256 of the PKCS#1 DER public key (what systemd-measure writes)."""
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.PKCS1
        )
        return hashlib.sha256(der).hexdigest()

    def sign(self, message: bytes, bank: str) -> bytes:
        """RSA-PKCS#1 v1.5 over ``H_bank(message)``, ``bank`` one of sha256/sha384/sha512."""
        return self._key.sign(message, padding.PKCS1v15(), _BANKS[bank])


def sign_efi(path: Path, keys: SecureBootKeys, out: Path) -> None:
    """Authenticode-sign the EFI binary ``path`` (systemd-boot or a UKI) into ``out``."""
    run(["sbsign", "--key", keys.key_path, "--cert", keys.cert_path, "--output", out, path])


def signature_owner(certificate: bytes) -> uuid.UUID:
    """Upstream's owner GUID: ``uuid.NewHash(sha256, NameSpaceX500, cert, 4)`` — the first 16
    bytes of SHA-256(namespace ‖ cert) with version 4 and the RFC 4122 variant."""
    digest = bytearray(hashlib.sha256(uuid.NAMESPACE_X500.bytes + certificate).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x40
    digest[8] = (digest[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(digest))


def signature_list(entries: Sequence[tuple[uuid.UUID, bytes]]) -> bytes:
    """EFI signature lists of X.509 certificates, one list per ``(owner, certificate)``.

    ``EFI_SIGNATURE_LIST``: type GUID, list size, header size 0, signature size (owner GUID +
    data), then one ``EFI_SIGNATURE_DATA`` (owner GUID + certificate). GUIDs are little-endian.
    """
    out = bytearray()
    for owner, cert in entries:
        size = 16 + len(cert)
        out += EFI_CERT_X509_GUID.bytes_le
        out += (28 + size).to_bytes(4, "little") + bytes(4) + size.to_bytes(4, "little")
        out += owner.bytes_le + cert
    return bytes(out)


@dataclass(frozen=True)
class EnrollmentFiles:
    pk: Path
    kek: Path
    db: Path


def _well_known(directory: Path | None, names: Sequence[str]) -> list[tuple[uuid.UUID, bytes]]:
    if directory is None:
        raise SecureBootKeyError(
            "includeWellKnownCertificates needs the Microsoft certificates, which image-service "
            "does not ship; configure a directory holding the DER files "
            + ", ".join(repr(n) for n in (*WELL_KNOWN_KEK, *WELL_KNOWN_DB))
        )
    return [(MICROSOFT_OWNER_GUID, _read(directory / n, "well-known certificate")) for n in names]


def enrollment_files(
    keys: SecureBootKeys,
    directory: Path,
    *,
    include_well_known: bool = False,
    well_known_dir: Path | None = None,
    timestamp: int = SOURCE_DATE_EPOCH,
) -> EnrollmentFiles:
    """Write ``PK.auth``, ``KEK.auth`` and ``db.auth`` into ``directory`` (module docstring)."""
    directory.mkdir(parents=True, exist_ok=True)
    # Upstream derives the owner from the PEM text and also puts the PEM text in the list,
    # which OVMF refuses ("Invalid parameter" when sd-boot writes db): the list gets DER.
    own = [(signature_owner(keys.signing_cert_pem()), keys.signing_cert_der())]
    lists = {
        "PK": own,
        "KEK": own + (_well_known(well_known_dir, WELL_KNOWN_KEK) if include_well_known else []),
        "db": own + (_well_known(well_known_dir, WELL_KNOWN_DB) if include_well_known else []),
    }
    when = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")
    for var, entries in lists.items():
        esl = directory / f"{var}.esl"
        esl.write_bytes(signature_list(entries))
        run(
            [
                "sign-efi-sig-list", "-t", when, "-k", keys.key_path, "-c", keys.cert_path,
                var, esl, directory / f"{var}.auth",
            ]
        )  # fmt: skip
        esl.unlink()
    return EnrollmentFiles(directory / "PK.auth", directory / "KEK.auth", directory / "db.auth")
