"""Unified kernel images: systemd-stub + kernel + initramfs + cmdline (talos-assets.md §7).

:func:`build_uki` lays out the sections the Talos imager appends to the stub (§7.1), in its
order: ``.osrel`` (:func:`talos_os_release`), ``.cmdline``, ``.uname`` (from :func:`kernel_version`;
omitted when unknown, as on arm64), ``.splash`` (only if given: Talos' splash image is not
shipped), ``.pcrpkey`` (with a PCR key), ``.linux``, ``.initrd``, then the UKI profiles
(targets ≥ 1.10, :func:`uki_profiles`): ``.profile`` ``ID=main`` and each reset profile's
``.profile`` plus its own ``.cmdline``. The stub's ``.sbat`` is measured but not appended.
:func:`services.builder.formats.pe.assemble` writes the PE; with Secure Boot keys the result is
Authenticode-signed (:func:`services.builder.talos.secureboot.sign_efi`).

PCR 11 prediction (§7.4), systemd-measure compatible: per bank (SHA-256/384/512), starting
from zeros, ``extend(d) = H(d ‖ H(data))`` with ``H(name NUL)`` and the section bytes of each
present section in :data:`MEASURE_ORDER`, then the phases ``enter-initrd``, ``leave-initrd``,
``enter-machined``; only the final value is signed. The policy is ``TPM2_PolicyPCR`` (SHA-256
policy hash) over ``sha256(pcr value)`` and the selection {bank, PCR 11}; the signature is
RSA-PKCS#1 v1.5 with the bank's hash over the policy digest. The JSON (Go's compact
``json.Marshal`` of upstream's struct) goes into ``.pcrsig``: once at the very end without
profiles, otherwise one per profile right after that profile's sections, each measuring the
base sections plus that profile's (its ``.cmdline`` replacing the base one).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.builder.errors import BuildFailed
from services.builder.formats.pe import AddedSection, PeImage, assemble, read_pe, section_data
from services.builder.talos.quirks import Quirks
from services.builder.talos.secureboot import PcrSigner, SecureBootKeys, sign_efi
from services.builder.tools import SOURCE_DATE_EPOCH

__all__ = [
    "MAIN_PROFILE",
    "MEASURE_ORDER",
    "PCR_BANKS",
    "PHASES",
    "UKI_PCR",
    "UkiProfile",
    "build_uki",
    "kernel_version",
    "pcr_signature",
    "policy_pcr_digest",
    "predict_pcr",
    "talos_os_release",
    "uki_profiles",
]

log = logging.getLogger(__name__)

UKI_PCR = 11
# systemd's uki.h order; .pcrsig is never measured.
MEASURE_ORDER = (
    ".linux", ".osrel", ".cmdline", ".initrd", ".ucode", ".splash", ".dtb", ".uname", ".sbat",
    ".pcrpkey", ".profile", ".dtbauto", ".hwids",
)  # fmt: skip
PHASES = ("enter-initrd", "leave-initrd", "enter-machined")
PCR_BANKS = ("sha256", "sha384", "sha512")
_TPM_ALG = {"sha256": 0x000B, "sha384": 0x000C, "sha512": 0x000D}
_TPM_CC_POLICY_PCR = 0x0000017F
_CHUNK = 1 << 20

_WIPE = "talos.experimental.wipe"


@dataclass(frozen=True)
class UkiProfile:
    """One UKI profile: its ``.profile`` text and, unless empty, its own ``.cmdline``."""

    id: str
    title: str = ""
    cmdline: str = ""

    def section_text(self) -> str:
        """``ID=<id>`` plus ``\\nTITLE=<title>`` when titled, without a trailing newline."""
        return f"ID={self.id}" + (f"\nTITLE={self.title}" if self.title else "")


MAIN_PROFILE = UkiProfile("main")


def uki_profiles(quirks: Quirks, output: str, cmdline: str) -> tuple[UkiProfile, ...]:
    """The profiles of a UKI built for ``output`` (``iso``, ``image``, ``installer`` or ``uki``)
    with base ``cmdline``: none before 1.10, else ``main`` then the reset entry of §5.8."""
    if not quirks.uki_profiles:
        return ()
    if output == "iso":
        return MAIN_PROFILE, UkiProfile("reset", "Reset system disk", f"{cmdline} {_WIPE}=system")
    if output in ("image", "installer"):
        return MAIN_PROFILE, UkiProfile(
            "reset-maintenance",
            "Reset to maintenance mode",
            f"{cmdline} {_WIPE}=system:EPHEMERAL,STATE",
        )
    return (MAIN_PROFILE,)


def talos_os_release(version: str) -> str:
    """The ``.osrel`` text for Talos ``version`` (a tag such as ``v1.11.3``)."""
    return (
        'NAME="Talos"\n'
        "ID=talos\n"
        f"VERSION_ID={version}\n"
        f'PRETTY_NAME="Talos ({version})"\n'
        'HOME_URL="https://www.talos.dev/"\n'
        'BUG_REPORT_URL="https://github.com/siderolabs/talos/issues"\n'
        'VENDOR_NAME="Sidero Labs"\n'
        'VENDOR_URL="https://www.siderolabs.com/"\n'
    )


def kernel_version(kernel: Path) -> str | None:
    """The version in an x86 bzImage header (``HdrS`` at 0x202; string at 0x200 + the u16 at
    0x20E), up to the first space; ``None`` when absent (e.g. an arm64 ``Image``)."""
    with kernel.open("rb") as f:
        header = f.read(1024)
        if len(header) < 0x210 or header[0x202:0x206] != b"HdrS":
            return None
        (offset,) = struct.unpack_from("<H", header, 0x20E)
        if offset == 0 or offset > header[0x1F1] * 0x200:
            return None
        f.seek(offset + 0x200)
        text = f.read(256)
    end = text.find(b"\0")
    if end < 0:
        return None
    return text[:end].decode("ascii", "replace").split(" ", 1)[0] or None


# --- PCR 11 prediction --------------------------------------------------------------------------

Payload = Path | bytes


def _digest(bank: str, payload: Payload) -> bytes:
    h = hashlib.new(bank)
    if isinstance(payload, bytes):
        h.update(payload)
    else:
        with payload.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    return h.digest()


def predict_pcr(sections: Mapping[str, Payload], bank: str) -> dict[str, bytes]:
    """PCR 11 after each phase of :data:`PHASES`, for the UKI ``sections`` (name → payload)."""
    value = bytes(hashlib.new(bank).digest_size)

    def extend(data_digest: bytes) -> bytes:
        return hashlib.new(bank, value + data_digest).digest()

    for name in MEASURE_ORDER:
        if name in sections:
            value = extend(hashlib.new(bank, name.encode() + b"\0").digest())
            value = extend(_digest(bank, sections[name]))
    after = {}
    for phase in PHASES:
        value = extend(hashlib.new(bank, phase.encode()).digest())
        after[phase] = value
    return after


def policy_pcr_digest(pcr_value: bytes, bank: str, pcr: int = UKI_PCR) -> bytes:
    """``TPM2_PolicyPCR`` from an empty SHA-256 policy: ``H(0³² ‖ TPM_CC_PolicyPCR ‖
    TPML_PCR_SELECTION{bank, 3-byte mask of pcr} ‖ sha256(pcr_value))``."""
    mask = bytearray(3)
    mask[pcr >> 3] |= 1 << (pcr & 7)
    selection = struct.pack(">IHB", 1, _TPM_ALG[bank], 3) + bytes(mask)
    command = struct.pack(">I", _TPM_CC_POLICY_PCR)
    return hashlib.sha256(
        bytes(32) + command + selection + hashlib.sha256(pcr_value).digest()
    ).digest()


def pcr_signature(sections: Mapping[str, Payload], signer: PcrSigner) -> bytes:
    """The ``.pcrsig`` JSON for one set of measured sections."""
    banks = {}
    for bank in PCR_BANKS:
        policy = policy_pcr_digest(predict_pcr(sections, bank)[PHASES[-1]], bank)
        banks[bank] = [
            {
                "pcrs": [UKI_PCR],
                "pkfp": signer.fingerprint,
                "pol": policy.hex(),
                "sig": base64.b64encode(signer.sign(policy, bank)).decode(),
            }
        ]
    return json.dumps(banks, separators=(",", ":")).encode()


# --- assembly -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Section:
    name: str
    payload: Payload
    append: bool = True


def _measured(sections: Iterable[_Section]) -> dict[str, Payload]:
    """Name → payload; a later section of the same name (a profile's ``.cmdline``) wins."""
    return {s.name: s.payload for s in sections}


def _with_signatures(
    base: list[_Section], groups: list[list[_Section]], pcr: PcrSigner | None
) -> list[_Section]:
    """The sections in final order, with the ``.pcrsig`` sections placed (module docstring)."""
    if pcr is None:
        return base + [s for group in groups for s in group]
    if not groups:
        return [*base, _Section(".pcrsig", pcr_signature(_measured(base), pcr))]
    out = list(base)
    for group in groups:
        out += [*group, _Section(".pcrsig", pcr_signature(_measured(base + group), pcr))]
    return out


# The positional parameters are the pipeline's contract.
def build_uki(  # noqa: PLR0917
    stub: Path,
    kernel: Path,
    initrd: Path,
    cmdline: str,
    os_release: str,
    uname: str | None,
    out: Path,
    *,
    profiles: Sequence[UkiProfile] = (),
    splash: Path | None = None,
    pcr: PcrSigner | None = None,
    secureboot: SecureBootKeys | None = None,
    source_date_epoch: int = SOURCE_DATE_EPOCH,
) -> PeImage:
    """Assemble the UKI at ``out`` and return its headers (module docstring for the layout).

    ``uname`` ``None`` or empty omits ``.uname``; ``profiles`` is the full list from
    :func:`uki_profiles` (empty: no ``.profile`` sections); ``pcr`` adds ``.pcrpkey`` and the
    ``.pcrsig`` sections; ``secureboot`` signs the result. Raises ``BuildFailed``.
    """
    sbat_section = read_pe(stub).section(".sbat")
    if sbat_section is None:
        raise BuildFailed(f"{stub}: the systemd-stub has no .sbat section")
    if profiles and profiles[0] != MAIN_PROFILE:
        raise BuildFailed("the first UKI profile must be the plain 'main' profile")
    if any(p.id == MAIN_PROFILE.id for p in profiles[1:]):
        raise BuildFailed("UKI profile ID 'main' is reserved for the first profile")

    base = [
        _Section(".sbat", section_data(stub, sbat_section), append=False),
        _Section(".osrel", os_release.encode()),
        _Section(".cmdline", cmdline.encode()),
    ]
    if uname:
        base.append(_Section(".uname", uname.encode()))
    if splash is not None:
        base.append(_Section(".splash", splash))
    if pcr is not None:
        base.append(_Section(".pcrpkey", pcr.public_key_pem()))
    base += [_Section(".linux", kernel), _Section(".initrd", initrd)]
    groups = []
    for profile in profiles:
        group = [_Section(".profile", profile.section_text().encode())]
        if profile.cmdline:
            group.append(_Section(".cmdline", profile.cmdline.encode()))
        groups.append(group)

    added = [
        AddedSection(s.name, s.payload) for s in _with_signatures(base, groups, pcr) if s.append
    ]
    if secureboot is None:
        image = assemble(stub, added, out, timestamp=source_date_epoch)
    else:
        unsigned = out.with_name(out.name + ".unsigned")
        try:
            assemble(stub, added, unsigned, timestamp=source_date_epoch)
            sign_efi(unsigned, secureboot, out)
        finally:
            unsigned.unlink(missing_ok=True)
        image = read_pe(out)
    log.debug("UKI %s: %s", out, " ".join(s.name for s in image.sections))
    return image
