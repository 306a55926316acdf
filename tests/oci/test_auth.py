"""Anonymous bearer-token auth: parsing (pure) and the full flow through a real token front."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from image_service.oci import (
    EMPTY_JSON_DESCRIPTOR,
    OCI_MANIFEST,
    BlobCache,
    Manifest,
    RegistryAuthError,
    RegistryClient,
)
from image_service.oci.auth import TokenCache, parse_challenge, parse_token_response, scope_for
from tests.oci.layout import sha256, skopeo
from tests.oci.servers import HttpServer, Reply, Request, TokenFront
from tests.support.registry import LocalRegistry

GHCR_CHALLENGE = 'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:siderolabs/imager:pull"'


def test_parse_ghcr_challenge() -> None:
    challenge = parse_challenge([GHCR_CHALLENGE])
    assert challenge is not None
    assert challenge.scheme == "bearer"
    assert (challenge.realm, challenge.service, challenge.scope) == (
        "https://ghcr.io/token",
        "ghcr.io",
        "repository:siderolabs/imager:pull",
    )


@pytest.mark.parametrize(
    ("headers", "scheme", "params"),
    [
        (['Basic realm="Registry Realm"'], "basic", {"realm": "Registry Realm"}),
        (['Basic realm="x"', 'Bearer realm="https://a/t"'], "bearer", {"realm": "https://a/t"}),
        (
            ['Bearer realm="https://a/t",error="insufficient_scope"'],
            "bearer",
            {"realm": "https://a/t", "error": "insufficient_scope"},
        ),
        (
            ["Bearer realm=https://a/t, service=reg"],
            "bearer",
            {"realm": "https://a/t", "service": "reg"},
        ),
        (['Bearer realm="quote\\"d"'], "bearer", {"realm": 'quote"d'}),
    ],
)
def test_parse_challenge_variants(headers: list[str], scheme: str, params: dict[str, str]) -> None:
    challenge = parse_challenge(headers)
    assert challenge is not None and challenge.scheme == scheme and dict(challenge.params) == params


def test_scopes_and_token_cache() -> None:
    assert scope_for("siderolabs/imager") == "repository:siderolabs/imager:pull"
    assert scope_for("a/b", push=True) == "repository:a/b:pull,push"
    tokens = TokenCache()
    tokens.put(scope_for("a/b", push=True), "push-token", 300)
    assert tokens.get(scope_for("a/b")) == "push-token"  # a push token also pulls
    assert tokens.get(scope_for("c/d")) is None
    tokens.discard(scope_for("a/b"))
    assert tokens.get(scope_for("a/b", push=True)) is None
    tokens.put(
        scope_for("a/b"), "short", 5
    )  # shorter than the refresh margin: still usable briefly
    assert tokens.get(scope_for("a/b")) == "short"


def test_parse_token_response() -> None:
    assert parse_token_response(b'{"token":"t","expires_in":300}', realm="r") == ("t", 300.0)
    assert parse_token_response(b'{"access_token":"t"}', realm="r") == ("t", 60.0)
    with pytest.raises(RegistryAuthError, match="without a token"):
        parse_token_response(b'{"expires_in":3}', realm="r")
    with pytest.raises(RegistryAuthError, match="invalid JSON"):
        parse_token_response(b"<html>", realm="r")


@pytest.fixture
def front(registry: LocalRegistry) -> Iterator[TokenFront]:
    with TokenFront(registry.url) as front:
        yield front


@pytest.mark.anyio
@pytest.mark.registry
async def test_push_and_pull_through_token_auth(
    front: TokenFront, registry: LocalRegistry, repo: str, cache: BlobCache
) -> None:
    async with RegistryClient(front.host, insecure=True, cache=cache) as client:
        blob = await client.push_blob(repo, b"kernel bytes", "application/vnd.example.kernel")
        empty = await client.push_blob(repo, b"{}", EMPTY_JSON_DESCRIPTOR.media_type)
        digest = await client.put_manifest(
            repo, "v1", Manifest(empty, (blob,)).encode(), OCI_MANIFEST
        )
        fetched = await client.get_manifest(repo, "v1")
        path = await client.fetch_blob(repo, blob.digest)
        tags = await client.list_tags(repo)

    assert empty == EMPTY_JSON_DESCRIPTOR
    assert fetched.digest == digest and path.read_bytes() == b"kernel bytes" and tags == ["v1"]
    # One anonymous token request: the push token also served every pull.
    assert [r.query["scope"] for r in front.realm.requests] == [[f"repository:{repo}:pull,push"]]
    assert [r.query["service"] for r in front.realm.requests] == [["test-front"]]
    assert all("authorization" not in r.headers for r in front.realm.requests)
    # Only the very first registry request went without a token.
    unauthenticated = [r for r in front.front.requests if "authorization" not in r.headers]
    assert len(unauthenticated) == 1
    # The content really is in the registry behind the front.
    inspected = json.loads(
        skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{repo}:v1")
    )
    assert inspected["layers"][0]["digest"] == blob.digest


@pytest.mark.anyio
@pytest.mark.registry
async def test_expired_token_is_refreshed_once(front: TokenFront, repo: str) -> None:
    async with RegistryClient(front.host, insecure=True) as client:
        await client.push_blob(repo, b"x")
        front.revoke()  # as if every token expired at the registry
        assert await client.blob_exists(repo, sha256(b"x"))
        assert await client.blob_exists(repo, sha256(b"x"))
    assert len(front.realm.requests) == 2


@pytest.mark.anyio
@pytest.mark.registry
async def test_denied_push_raises_auth_error(registry: LocalRegistry, repo: str) -> None:
    with TokenFront(registry.url, grant_push=False) as front:
        async with RegistryClient(front.host, insecure=True) as client:
            assert not await client.blob_exists(repo, sha256(b"not allowed"))  # pulls work
            with pytest.raises(RegistryAuthError) as denied:
                await client.push_blob(repo, b"not allowed")
    message = str(denied.value)
    assert f"{front.host}/{repo}" in message and "HTTP 401" in message and "DENIED" in message


@pytest.mark.anyio
@pytest.mark.registry
async def test_token_is_not_sent_to_redirect_target(
    registry: LocalRegistry, repo: str, cache: BlobCache
) -> None:
    payload = b"served by the CDN"
    with HttpServer(lambda r: Reply(200, body=payload)) as cdn:

        def redirect_blobs(request: Request) -> Reply | None:
            if request.method == "GET" and "/blobs/sha256:" in request.path:
                return Reply(307, {"Location": f"{cdn.url}/blob?sig=abc"})
            return None

        with TokenFront(registry.url, before_proxy=redirect_blobs) as front:
            async with RegistryClient(front.host, insecure=True, cache=cache) as client:
                path = await client.fetch_blob(repo, sha256(payload))
    assert path.read_bytes() == payload
    assert [r.query for r in cdn.requests] == [{"sig": ["abc"]}]
    assert "authorization" not in cdn.requests[0].headers
    assert front.front.requests[-1].headers["authorization"].startswith("Bearer ")


@pytest.mark.anyio
async def test_basic_auth_challenge_is_reported() -> None:
    challenge = {"WWW-Authenticate": 'Basic realm="private"'}
    with HttpServer(lambda r: Reply(401, challenge, b"")) as server:
        async with RegistryClient(server.host, insecure=True) as client:
            with pytest.raises(RegistryAuthError) as failed:
                await client.get_manifest("private/image", "v1")
    assert len(server.requests) == 1
    assert f"{server.host}/private/image:v1" in str(failed.value)
    assert "Basic credentials" in str(failed.value)
