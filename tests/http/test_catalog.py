"""Versions, extensions and overlays read from the test release in a real local registry.

The expected lists are written from upstream's rules (reference/api.md §11) applied to what the
test release holds: the offered versions by hand, the extension records from the catalogue the
fixture pushed (name, tag, digest, author, description) with refs rewritten to the configured
registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.release import Release, push_release
from tests.support.registry import LocalRegistry
from tests.support.service import ServiceProcess, release_service

pytestmark = pytest.mark.registry

EXPECTED_VERSIONS = ["v1.7.7", "v1.11.3", "v1.12.0-beta.1"]


def start_service(tmp: Path, registry_host: str) -> ServiceProcess:
    return release_service(tmp, registry_host, secureboot=False)


@pytest.fixture(scope="module")
def catalog_service(
    release_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    proc = start_service(tmp_path_factory.mktemp("catalog"), release_registry.host)
    yield proc
    assert proc.stop() == 0


def test_versions(catalog_service: ServiceProcess) -> None:
    answer = httpx.get(f"{catalog_service.url}/versions")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == EXPECTED_VERSIONS


@pytest.mark.parametrize("version", ["v1.7.7", "1.11.3", "v1.12.0-beta.1"])
def test_extensions(
    catalog_service: ServiceProcess,
    test_release: Release,
    release_registry: LocalRegistry,
    version: str,
) -> None:
    answer = httpx.get(f"{catalog_service.url}/version/{version}/extensions/official")
    assert answer.status_code == 200
    expected = [
        {
            "name": ext.name,
            "ref": f"{release_registry.host}/{ext.name}:{ext.tag}",
            "digest": ext.digest,
            "author": ext.author,
            "description": ext.description,
        }
        for ext in test_release.version(version).extensions
    ]
    assert len(expected) >= 4
    assert answer.json() == expected
    assert "ghcr.io" not in answer.text


def test_overlays(
    catalog_service: ServiceProcess, test_release: Release, release_registry: LocalRegistry
) -> None:
    for version in ("v1.7.7", "v1.11.3"):
        answer = httpx.get(f"{catalog_service.url}/version/{version}/overlays/official")
        assert answer.status_code == 200
        expected = [
            {
                "name": o.name,
                "image": o.image,
                "ref": f"ghcr.io/{o.image}:{o.tag}",  # overlays keep the catalogue's reference
                "digest": o.digest,
            }
            for o in test_release.version(version).overlays
        ]
        assert expected
        assert answer.json() == expected


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/version/v1.9.0/extensions/official", 404, "version 1.9.0 is not available\n"),
        ("/version/1.4.0/overlays/official", 404, "version 1.4.0 is not available\n"),
        ("/version/v1.10.0-beta.1/extensions/official", 404, "version 1.10.0-beta.1 is not"),
        ("/version/1.11/extensions/official", 400, "error parsing version"),
        ("/version/latest/overlays/official", 400, "error parsing version"),
    ],
)
def test_bad_versions(
    catalog_service: ServiceProcess, path: str, status: int, message: str
) -> None:
    answer = httpx.get(f"{catalog_service.url}{path}")
    assert answer.status_code == status
    assert answer.text.startswith(message)


def test_registry_outage_is_503_and_recovers(test_release: Release, tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    registry.start()
    push_release(test_release, registry.host)
    registry.stop()
    service = start_service(tmp_path, registry.host)
    try:
        down = httpx.get(f"{service.url}/versions", timeout=60)
        assert down.status_code == 503
        assert registry.host in down.text
        assert down.headers["retry-after"]
        down = httpx.get(f"{service.url}/version/v1.11.3/extensions/official", timeout=60)
        assert down.status_code == 503
        registry.start()
        up = httpx.get(f"{service.url}/versions", timeout=60)
        assert up.status_code == 200
        assert up.json() == EXPECTED_VERSIONS
        assert httpx.get(f"{service.url}/version/v1.11.3/extensions/official").status_code == 200
    finally:
        assert service.stop() == 0
        registry.stop()
