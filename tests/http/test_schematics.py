"""Flavors through the real HTTP API: upstream's vectors, both storage backends, exact bytes.

Golden IDs and canonical bytes are the compatibility vectors of the upstream Image Factory
(reference/schematic.md §7), not output of this code.
"""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from tests.support.service import ServiceProcess

VECTORS = {
    1: (
        "customization: {}\n",
        "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba",
    ),
    2: (
        "customization:\n    extraKernelArgs:\n        - noapic\n        - nolapic\n",
        "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
    ),
    3: (
        "customization:\n    meta:\n        - key: 10\n          value: foo\n",
        "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f",
    ),
    4: (
        "customization:\n    secureboot:\n        includeWellKnownCertificates: true\n",
        "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6",
    ),
    5: (
        "customization:\n    diskImage:\n        sectorSize: 4096\n",
        "92833e9ddd9bb9e11b2464fa5525429f01866306d52ebd882ee08d7918f6d1ea",
    ),
    6: (
        "overlay:\n    image: siderolabs/sbc-raspberrypi\n    name: rpi_generic\n"
        "customization: {}\n",
        "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
    ),
    8: (
        "customization:\n    systemExtensions:\n        officialExtensions:\n"
        "            - siderolabs/amd-ucode\n            - siderolabs/gvisor\n"
        "            - siderolabs/gasket-driver\n",
        "51ff3e49313773332729a5c04e57af0dbe2e6d3f65ff638e6d4c3a05065fefff",
    ),
    10: (
        "customization:\n    bootloader: grub\n",
        "39d496b2cbdb6265d3b714514c5334bf010f1b4d31b23b9e38c80fb2f3ad7ecb",
    ),
}

# JSON renderings of the same documents (JSON is YAML flow syntax; upstream accepts it).
JSON_INPUTS = {
    1: {},
    2: {"customization": {"extraKernelArgs": ["noapic", "nolapic"]}},
    3: {"customization": {"meta": [{"value": "foo", "key": 10}]}},
    4: {"customization": {"secureboot": {"includeWellKnownCertificates": True}}},
    5: {"customization": {"diskImage": {"sectorSize": 4096}}},
    6: {"overlay": {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi"}},
    8: {
        "customization": {
            "systemExtensions": {
                "officialExtensions": [
                    "siderolabs/amd-ucode",
                    "siderolabs/gvisor",
                    "siderolabs/gasket-driver",
                ]
            }
        }
    },
    10: {"customization": {"bootloader": "grub"}},
}

# Inputs upstream's own tests decode to these IDs (reference/schematic.md §7).
UPSTREAM_INPUTS = [
    ("{}", 1),
    ("customization: {}", 1),
    ('customization: {"extraKernelArgs": []}', 1),
    ('{"customization": {"extraKernelArgs": ["noapic", "nolapic"]}}', 2),
    ('{"customization": {"extraKernelArgs": ["noapic", "nolapic"], "systemExtensions": {}}}', 2),
    (
        '{"customization": {"meta": [{"key": 10, "value": "foo"}], "extraKernelArgs": [], '
        '"systemExtensions": {}}}',
        3,
    ),
    ('{"customization":{"secureboot": {"includeWellKnownCertificates": true}}}', 4),
    ('{"overlay": {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi"}}', 6),
    (
        '{"overlay": {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi"},'
        '"customization":{}}',
        6,
    ),
]


def test_vectors_are_self_consistent() -> None:
    for canonical, vector_id in VECTORS.values():
        assert hashlib.sha256(canonical.encode()).hexdigest() == vector_id


@pytest.mark.registry
@pytest.mark.parametrize("number", sorted(VECTORS))
@pytest.mark.parametrize("form", ["yaml", "json"])
def test_vector_through_http(service: ServiceProcess, number: int, form: str) -> None:
    canonical, vector_id = VECTORS[number]
    body = canonical if form == "yaml" else json.dumps(JSON_INPUTS[number])
    created = httpx.post(f"{service.url}/schematics", content=body)
    assert created.status_code == 201, created.text
    assert created.headers["content-type"] == "application/json"
    assert created.json() == {"id": vector_id, "schematic": canonical}
    assert list(created.json()) == ["id", "schematic"]

    fetched = httpx.get(f"{service.url}/schematics/{vector_id}")
    assert fetched.status_code == 200
    assert fetched.headers["content-type"] == "application/yaml"
    assert fetched.content == canonical.encode()


@pytest.mark.registry
@pytest.mark.parametrize(("body", "number"), UPSTREAM_INPUTS)
def test_upstream_inputs(service: ServiceProcess, body: str, number: int) -> None:
    created = httpx.post(f"{service.url}/schematics", content=body)
    assert created.status_code == 201
    assert created.json()["id"] == VECTORS[number][1]


@pytest.mark.registry
def test_seed_flavors_endpoint(service: ServiceProcess) -> None:
    body = "customization:\n  extraKernelArgs: [noapic, nolapic]\n"
    created = httpx.post(f"{service.url}/flavors", content=body)
    assert created.status_code == 201
    assert created.content == f'{{"id":"{VECTORS[2][1]}"}}\n'.encode()


@pytest.mark.registry
def test_create_is_idempotent(service: ServiceProcess) -> None:
    first = httpx.post(f"{service.url}/schematics", content="customization: {}")
    second = httpx.post(f"{service.url}/schematics", content="{}")
    assert first.status_code == second.status_code == 201
    assert first.content == second.content


@pytest.mark.registry
def test_common_headers(service: ServiceProcess) -> None:
    answer = httpx.get(f"{service.url}/healthz")
    assert "Image Factory" in answer.headers["server"]
    assert "Enterprise" not in answer.headers["server"]
    generated = answer.headers["x-request-id"]
    assert len(generated) == 36 and generated.count("-") == 4
    echoed = httpx.get(f"{service.url}/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    missing = httpx.get(f"{service.url}/schematics/{'0' * 64}")
    assert missing.headers["x-request-id"]
    assert "Image Factory" in missing.headers["server"]


@pytest.mark.registry
def test_readyz(service: ServiceProcess) -> None:
    assert httpx.get(f"{service.url}/readyz").status_code == 200
