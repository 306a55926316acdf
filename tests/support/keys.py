"""Throw-away Secure Boot key material for tests, made with the openssl command."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SecureBootKeys", "write_secureboot_keys"]


@dataclass(frozen=True)
class SecureBootKeys:
    signing_key: Path
    signing_cert: Path
    pcr_key: Path


def write_secureboot_keys(
    directory: Path, common_name: str = "image-service test"
) -> SecureBootKeys:
    directory.mkdir(parents=True, exist_ok=True)
    keys = SecureBootKeys(
        directory / "signing-key.pem", directory / "signing-cert.pem", directory / "pcr-key.pem"
    )
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-days",
            "3650",
            "-subj",
            f"/CN={common_name}/",
            "-keyout",
            str(keys.signing_key),
            "-out",
            str(keys.signing_cert),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            "openssl",
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            str(keys.pcr_key),
        ],
        check=True,
        capture_output=True,
    )
    return keys
