"""Build progress as server-sent events, read over a real socket with httpx.

A cold asset reports ``queued``, the builder's stages, then ``ready`` with the download URL,
whose body then has the announced size and digest; a warm one ends ``ready`` with the digest the
download's ``ETag`` names; bad input
is a plain 4xx before any event, as on ``/image``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import httpx
import pytest
import yaml

from tests.support.registry import LocalRegistry
from tests.support.service import ServiceProcess, release_service

pytestmark = pytest.mark.registry


@pytest.fixture(scope="module")
def service(
    release_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    proc = release_service(tmp_path_factory.mktemp("builds"), release_registry.host)
    yield proc
    assert proc.stop() == 0


def events(service: ServiceProcess, path: str) -> list[tuple[str, dict[str, object]]]:
    out: list[tuple[str, dict[str, object]]] = []
    with httpx.stream("GET", f"{service.url}/builds/{path}", timeout=300) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in answer.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                out.append((name, json.loads(line.removeprefix("data: "))))
    return out


def flavor(service: ServiceProcess, args: list[str]) -> str:
    document = yaml.safe_dump({"customization": {"extraKernelArgs": args}})
    answer = httpx.post(f"{service.url}/schematics", content=document, timeout=30)
    assert answer.status_code == 201
    return str(answer.json()["id"])


def test_cold_asset_reports_stages_then_ready(service: ServiceProcess) -> None:
    flavor_id = flavor(service, ["progress=cold"])
    path = f"{flavor_id}/v1.11.3/metal-amd64-uki.efi"
    seen = events(service, path)
    names = [name for name, _ in seen]
    stages = [data["stage"] for name, data in seen if name == "progress"]
    assert names[-1] == "ready"
    assert stages[0] == "queued"
    assert "building" in stages
    ready = seen[-1][1]
    assert ready["url"] == f"/image/{path}"
    body = httpx.get(f"{service.url}{ready['url']}", timeout=300)
    assert body.status_code == 200
    assert len(body.content) == ready["size"]
    assert ready["digest"] == "sha256:" + hashlib.sha256(body.content).hexdigest()


def test_warm_asset_is_ready_with_the_stored_digest(service: ServiceProcess) -> None:
    flavor_id = flavor(service, ["progress=warm"])
    path = f"{flavor_id}/v1.11.3/kernel-amd64"
    download = httpx.get(f"{service.url}/image/{path}", timeout=300)
    assert download.status_code == 200
    seen = events(service, path)
    assert seen[0] == ("progress", {"stage": "queued", "message": "waiting for the builder"})
    name, ready = seen[-1]
    assert name == "ready"
    assert f'"{ready["digest"]}"' == download.headers["etag"]


@pytest.mark.parametrize(
    "path",
    [
        "0" * 64 + "/v1.11.3/kernel-amd64",
        "{flavor}/v1.11.3/metal-amd64.nonsense",
        "{flavor}/v0.0.1/kernel-amd64",
    ],
    ids=["unknown-flavor", "bad-path", "unknown-version"],
)
def test_bad_input_is_the_download_error_before_any_event(
    service: ServiceProcess, path: str
) -> None:
    path = path.format(flavor=flavor(service, ["progress=bad"]))
    download = httpx.get(f"{service.url}/image/{path}", timeout=60)
    answer = httpx.get(f"{service.url}/builds/{path}", timeout=60)
    assert 400 <= answer.status_code < 500
    assert (answer.status_code, answer.text) == (download.status_code, download.text)
    assert answer.headers["content-type"].startswith("text/plain")
