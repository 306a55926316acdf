"""Bad input gets a 4xx with a reason, never a 500, changes nothing, and the service goes on."""

from __future__ import annotations

import http.client
from pathlib import Path

import httpx
import pytest

from tests.support.service import ServiceProcess

EMPTY_ID = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

BAD_DOCUMENTS = [
    ("", "EOF"),
    ("customization: [unclosed", "yaml:"),
    ("something: 1", "field something not found in type schematic.Schematic"),
    ("customization:\n  extraKernelArgs: foo\n", "cannot unmarshal !!str"),
    ("customization:\n  meta:\n    - key: 256\n      value: x\n", "256"),
    ("customization:\n  meta:\n    - key: -1\n      value: x\n", "-1"),
    ('customization:\n  meta:\n    - key: "10"\n      value: x\n', "cannot unmarshal"),
    ("customization:\n  bootloader: auto\n", "does not belong to BootloaderKind values"),
    ("owner: alice\n", "owner field is only supported in Enterprise edition"),
    ("customization: {}\ncustomization: {}\n", "customization"),
    ("\x00\x01\x02", ""),
]


@pytest.mark.registry
@pytest.mark.parametrize(("body", "reason"), BAD_DOCUMENTS)
def test_bad_document(service: ServiceProcess, body: str, reason: str) -> None:
    answer = httpx.post(f"{service.url}/schematics", content=body.encode())
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert answer.text.endswith("\n")
    assert reason in answer.text
    assert answer.text.strip()
    assert httpx.get(f"{service.url}/healthz").status_code == 200


@pytest.mark.registry
def test_ten_mib_body_is_refused(service: ServiceProcess) -> None:
    body = b"customization:\n  extraKernelArgs:\n" + b"    - x\n" * (10 * 1024 * 1024 // 8)
    answer = httpx.post(f"{service.url}/schematics", content=body, timeout=60)
    assert answer.status_code == 413
    assert "larger than the limit" in answer.text


@pytest.mark.registry
def test_chunked_oversized_body_is_refused(service: ServiceProcess) -> None:
    def chunks():  # no Content-Length: the limit must hold while streaming
        for _ in range(2048):
            yield b"#" * 1024

    answer = httpx.post(f"{service.url}/schematics", content=chunks(), timeout=60)
    assert answer.status_code == 413


@pytest.mark.registry
@pytest.mark.parametrize(
    "flavor_id",
    [
        "0" * 64,  # well-formed, unknown
        "not-hex",
        "A" * 64,  # upper case is not an ID
        "../" * 10,
        "%2e%2e%2f" * 8,
        "f" * 63,
        "f" * 65,
    ],
)
def test_unknown_or_malformed_ids(service: ServiceProcess, flavor_id: str) -> None:
    # http.client sends the path as written; httpx would resolve "../" before sending it.
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    try:
        connection.request("GET", f"/schematics/{flavor_id}")
        answer = connection.getresponse()
        status, text = answer.status, answer.read().decode()
    finally:
        connection.close()
    assert status == 404
    assert text in {"schematic not found\n", "404 page not found\n"}


def stored_state(service: ServiceProcess) -> object:
    """Everything the service has stored: files on disk, or tags in the storage registry."""
    args = service.args
    if "--storage-registry" in args:
        host = args[args.index("--storage-registry") + 1]
        prefix = args[args.index("--storage-repository") + 1]
        answer = httpx.get(f"http://{host}/v2/{prefix}/schematics/tags/list")
        return sorted(answer.json().get("tags") or []) if answer.status_code == 200 else []
    data = Path(args[args.index("--data-dir") + 1])
    return sorted(str(p.relative_to(data)) for p in data.rglob("*"))


@pytest.mark.registry
def test_bad_input_changes_nothing(service: ServiceProcess) -> None:
    before = stored_state(service)
    for body, _ in BAD_DOCUMENTS:
        assert httpx.post(f"{service.url}/schematics", content=body.encode()).status_code == 400
    big = b"customization: {}\n" + b"#" * (2 * 1024 * 1024)
    assert httpx.post(f"{service.url}/schematics", content=big).status_code == 413
    assert stored_state(service) == before
    created = httpx.post(f"{service.url}/schematics", content="{}")
    assert created.status_code == 201
    assert created.json()["id"] == EMPTY_ID


@pytest.mark.registry
def test_router_errors(service: ServiceProcess) -> None:
    unknown = httpx.get(f"{service.url}/no/such/route")
    assert unknown.status_code == 404
    assert unknown.text == "404 page not found\n"
    wrong_method = httpx.delete(f"{service.url}/schematics")
    assert wrong_method.status_code == 405
    assert "POST" in wrong_method.headers["allow"]


@pytest.mark.registry
def test_options_float_is_normalised_not_refused(service: ServiceProcess) -> None:
    body = "overlay:\n  name: rpi_generic\n  options:\n    ratio: 2.0\n"
    answer = httpx.post(f"{service.url}/schematics", content=body)
    assert answer.status_code == 201
    assert "ratio: 2\n" in answer.json()["schematic"]


@pytest.mark.registry
def test_unreadable_canonical_form_is_refused(service: ServiceProcess) -> None:
    # upstream's emitter writes " x\ny" in a sequence with a |4 header it cannot read back
    body = '{"customization": {"extraKernelArgs": [" leading\\nsecond"]}}'
    answer = httpx.post(f"{service.url}/schematics", content=body)
    assert answer.status_code == 400
    assert "canonical form" in answer.text
