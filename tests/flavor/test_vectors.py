"""The public compatibility vectors of ``schematic.md`` §7: canonical bytes, lengths and IDs.

Every value here is copied from the spec (which took them from upstream tests); none was
produced by the code under test.
"""

from __future__ import annotations

import pytest

from image_service.flavor.canonical import canonical_yaml, flavor_id
from image_service.flavor.decode import decode_flavor
from image_service.flavor.model import (
    Bootloader,
    Customization,
    DiskImage,
    Flavor,
    MetaValue,
    Overlay,
    SecureBoot,
)

# (vector number, the flavor, canonical bytes, length, ID)
VECTORS = [
    (
        1,
        Flavor(),
        b"customization: {}\n",
        18,
        "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba",
    ),
    (
        2,
        Flavor(customization=Customization(extra_kernel_args=("noapic", "nolapic"))),
        b"customization:\n    extraKernelArgs:\n        - noapic\n        - nolapic\n",
        71,
        "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
    ),
    (
        3,
        Flavor(customization=Customization(meta=(MetaValue(10, "foo"),))),
        b"customization:\n    meta:\n        - key: 10\n          value: foo\n",
        64,
        "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f",
    ),
    (
        4,
        Flavor(
            customization=Customization(secureboot=SecureBoot(include_well_known_certificates=True))
        ),
        b"customization:\n    secureboot:\n        includeWellKnownCertificates: true\n",
        74,
        "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6",
    ),
    (
        5,
        Flavor(customization=Customization(disk_image=DiskImage(sector_size=4096))),
        b"customization:\n    diskImage:\n        sectorSize: 4096\n",
        55,
        "92833e9ddd9bb9e11b2464fa5525429f01866306d52ebd882ee08d7918f6d1ea",
    ),
    (
        6,
        Flavor(overlay=Overlay(image="siderolabs/sbc-raspberrypi", name="rpi_generic")),
        b"overlay:\n    image: siderolabs/sbc-raspberrypi\n    name: rpi_generic\n"
        b"customization: {}\n",
        87,
        "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
    ),
    (
        8,
        Flavor(
            customization=Customization(
                system_extensions=(
                    "siderolabs/amd-ucode",
                    "siderolabs/gvisor",
                    "siderolabs/gasket-driver",
                )
            )
        ),
        b"customization:\n    systemExtensions:\n        officialExtensions:\n"
        b"            - siderolabs/amd-ucode\n            - siderolabs/gvisor\n"
        b"            - siderolabs/gasket-driver\n",
        171,
        "51ff3e49313773332729a5c04e57af0dbe2e6d3f65ff638e6d4c3a05065fefff",
    ),
    (
        10,
        Flavor(customization=Customization(bootloader=Bootloader.GRUB)),
        b"customization:\n    bootloader: grub\n",
        36,
        "39d496b2cbdb6265d3b714514c5334bf010f1b4d31b23b9e38c80fb2f3ad7ecb",
    ),
]

VECTOR_IDS = {number: vector_id for number, _, _, _, vector_id in VECTORS}


@pytest.mark.parametrize(("number", "flavor", "canonical", "length", "vector_id"), VECTORS)
def test_vector_canonical_bytes(
    number: int, flavor: Flavor, canonical: bytes, length: int, vector_id: str
) -> None:
    assert canonical_yaml(flavor) == canonical
    assert len(canonical) == length


@pytest.mark.parametrize(("number", "flavor", "canonical", "length", "vector_id"), VECTORS)
def test_vector_id(
    number: int, flavor: Flavor, canonical: bytes, length: int, vector_id: str
) -> None:
    assert flavor_id(canonical) == vector_id
    assert flavor_id(canonical_yaml(flavor)) == vector_id


@pytest.mark.parametrize(("number", "flavor", "canonical", "length", "vector_id"), VECTORS)
def test_vector_decodes_to_itself(
    number: int, flavor: Flavor, canonical: bytes, length: int, vector_id: str
) -> None:
    decoded = decode_flavor(canonical)
    assert decoded == flavor
    assert canonical_yaml(decoded) == canonical


# schematic.md §7 "Inputs that upstream tests decode to these same IDs".
INPUTS = [
    (b"{}", 1),
    (b"customization: {}", 1),
    (b'customization: {"extraKernelArgs": []}', 1),
    (b'{"customization": {"extraKernelArgs": ["noapic", "nolapic"]}}', 2),
    (b'{"customization": {"extraKernelArgs": ["noapic", "nolapic"], "systemExtensions": {}}}', 2),
    (
        b'{"customization": {"meta": [{"key": 10, "value": "foo"}], "extraKernelArgs": [],'
        b' "systemExtensions": {}}}',
        3,
    ),
    (b'{"customization":{"secureboot": {"includeWellKnownCertificates": true}}}', 4),
    (b'{"overlay": {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi"}}', 6),
    (
        b'{"overlay": {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi"},'
        b'"customization":{}}',
        6,
    ),
]


@pytest.mark.parametrize(("body", "number"), INPUTS)
def test_upstream_inputs_decode_to_vector_ids(body: bytes, number: int) -> None:
    assert flavor_id(canonical_yaml(decode_flavor(body))) == VECTOR_IDS[number]


# The same documents in other YAML spellings (§3: key order, JSON vs block, notation).
EQUIVALENT_SPELLINGS = [
    (b"customization:\n  extraKernelArgs:\n  - noapic\n  - nolapic\n", 2),
    (b"customization: {extraKernelArgs: [noapic, 'nolapic']}\n", 2),
    (b"---\ncustomization:\n    meta:\n        - value: foo\n          key: 0xa\n...\n", 3),
    (b'customization:\n  meta: [{key: 0o12, value: "foo"}]\n', 3),
    (b"customization:\n  meta: [{key: 0b1010, value: foo}]\n", 3),
    (b"customization:\n  secureboot:\n    includeWellKnownCertificates: yes\n", 4),
    (b"customization:\n  diskImage: {sectorSize: 0x1000}\n", 5),
    (b"overlay: {name: rpi_generic, image: siderolabs/sbc-raspberrypi, options: {}}\n", 6),
    (
        b"customization:\n  bootloader: GRUB\n"
        b"  secureboot: {includeWellKnownCertificates: false}\n",
        10,
    ),
    (b"customization:\n  bootloader: grub\n  diskImage: {sectorSize: 0}\n", 10),
    (b"{}\n---\nsomething: else\n", 1),
    (b"null\n", 1),
    (b"---\n", 1),
    (b"customization: {bootloader: none}\n", 1),
]


@pytest.mark.parametrize(("body", "number"), EQUIVALENT_SPELLINGS)
def test_equivalent_spellings_share_the_vector_id(body: bytes, number: int) -> None:
    assert flavor_id(canonical_yaml(decode_flavor(body))) == VECTOR_IDS[number]
