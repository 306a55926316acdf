import httpx

from tests.support.registry import LocalRegistry


def test_registry_answers_v2(registry: LocalRegistry) -> None:
    response = httpx.get(f"{registry.url}/v2/")
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
