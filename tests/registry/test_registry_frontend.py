"""``/v2``: installer images pulled by real OCI clients from a service on the test release.

skopeo copies ``installer/<flavor>:<version>`` for both arches (reference/verification.md §6)
and oras-py reads the same manifests; the pulled layers must hold what talos-assets.md §12 and
api.md §10.8 say (the base's installer binary; the UKI and systemd-boot for ≥ 1.10, the kernel
and initramfs before). Digests must stay the same across pulls and across a restart on the same
data directory; ten clients pulling one uncached image at once must cause one build per arch
(the builder's Prometheus counters); errors are OCI JSON envelopes with upstream's texts.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import oras.client
import pytest

from frontends.registry.app import Ping, RegistryPath, Resource, UnknownPath, parse_v2_path
from image_service.errors import InvalidInput
from services.builder.registry_images import InstallerRepo, parse_image
from tests.release import Release
from tests.support.registry import LocalRegistry
from tests.support.service import ServiceProcess, release_service

EMPTY = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
UNKNOWN = "0" * 64
REPO = f"/v2/installer/{EMPTY}"
DIGEST = "sha256:" + "a" * 64
NO_FLAVOR = f'schematic ID "{UNKNOWN}" not found'
UNKNOWN_PATH = 'unknown registry path: "/installer/manifests/v1"'
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TIMEOUT = 600.0

# --- the pure parts ------------------------------------------------------------------------------


def target(image: str, resource: Resource, reference: str) -> RegistryPath:
    return RegistryPath(image, "abc", resource, reference)


def unknown(path: str, code: str = "NAME_UNKNOWN") -> UnknownPath:
    return UnknownPath(f'unknown registry path: "{path}"', code)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", Ping()),
        ("/", Ping()),
        ("installer/abc/manifests/v1", target("installer", Resource.MANIFESTS, "v1")),
        ("/aws-installer/abc/blobs/sha256:x/", target("aws-installer", Resource.BLOBS, "sha256:x")),
        ("installer/abc/referrers/sha256:x", target("installer", Resource.REFERRERS, "sha256:x")),
        ("installer/manifests/v1", unknown("/installer/manifests/v1")),
        ("a/b/c/manifests/v1", unknown("/a/b/c/manifests/v1")),
        ("a/b/tags/list", unknown("/a/b/tags/list", "UNSUPPORTED")),
        ("_catalog", unknown("/_catalog")),
    ],
)
def test_parse_v2_path(path: str, expected: object) -> None:
    assert parse_v2_path(path) == expected


@pytest.mark.parametrize(
    ("image", "platform", "secureboot", "path"),
    [
        ("installer", "metal", False, "installer-arm64.tar"),
        ("installer-secureboot", "metal", True, "installer-arm64-secureboot.tar"),
        ("metal-installer", "metal", False, "metal-installer-arm64.tar"),
        ("aws-installer", "aws", False, "aws-installer-arm64.tar"),
        ("digital-ocean-installer", "digital-ocean", False, "digital-ocean-installer-arm64.tar"),
        ("metal-installer-secureboot", "metal", True, "metal-installer-arm64-secureboot.tar"),
    ],
)
def test_parse_image(image: str, platform: str, secureboot: bool, path: str) -> None:
    repo = parse_image(image)
    assert repo == InstallerRepo(image, platform, secureboot)
    assert repo.asset_path("arm64") == path


@pytest.mark.parametrize(
    "image", ["imager", "installers", "-installer", "nope-installer", "Installer"]
)
def test_parse_image_rejects(image: str) -> None:
    with pytest.raises(InvalidInput, match=f"^invalid image: {image}$"):
        parse_image(image)


# --- the service ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(
    release_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    proc = release_service(tmp_path_factory.mktemp("registry-frontend"), release_registry.host)
    assert create(proc, "customization: {}\n") == EMPTY
    yield proc
    assert proc.stop() == 0


def host(service: ServiceProcess) -> str:
    return f"127.0.0.1:{service.port}"


def create(service: ServiceProcess, document: str) -> str:
    answer = httpx.post(f"{service.url}/schematics", content=document)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def skopeo(*args: str) -> str:
    result = subprocess.run(
        ["skopeo", "--insecure-policy", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def manifest_head(service: ServiceProcess, repo: str, ref: str) -> httpx.Response:
    return httpx.head(f"{service.url}/v2/{repo}/manifests/{ref}", timeout=TIMEOUT)


def metric(service: ServiceProcess, name: str, kind: str) -> float:
    text = httpx.get(f"{service.url}/metrics").text
    for line in text.splitlines():
        if line.startswith(f'{name}{{kind="{kind}"}} '):
            return float(line.split()[-1])
    return 0.0


def layout_image(layout: Path) -> tuple[dict[str, Any], dict[str, Any], list[bytes]]:
    """(manifest, config, layer blobs) of the one image in an OCI layout."""

    def blob(digest: str) -> bytes:
        return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()

    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    return manifest, config, [blob(layer["digest"]) for layer in manifest["layers"]]


def tar_files(blob: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.registry
def test_ping(service: ServiceProcess) -> None:
    for path in ("/v2", "/v2/"):
        answer = httpx.get(service.url + path)
        assert answer.status_code == 200
        assert answer.content == b""
        assert answer.headers["docker-distribution-api-version"] == "registry/2.0"


@pytest.mark.registry
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_skopeo_pulls_the_unified_installer(
    service: ServiceProcess, test_release: Release, tmp_path: Path, arch: str
) -> None:
    layout = tmp_path / "oci"
    skopeo(
        "--override-arch",
        arch,
        "copy",
        "--src-tls-verify=false",
        f"docker://{host(service)}/installer/{EMPTY}:v1.11.3",
        f"oci:{layout}:v1.11.3",
    )
    _, config, layers = layout_image(layout)
    assert (config["architecture"], config["os"]) == (arch, "linux")
    assert config["config"]["Entrypoint"] == ["/bin/installer"]
    assert config["config"]["Labels"] == {"alpha.talos.dev/version": "v1.11.3"}
    assert len(layers) == 2
    assert "usr/bin/installer" in tar_files(layers[0])
    artifacts = tar_files(layers[1])
    assert sorted(artifacts) == [
        f"usr/install/{arch}/systemd-boot.efi",
        f"usr/install/{arch}/vmlinuz.efi",
    ]
    expected_boot = test_release.version("v1.11.3").arches[arch].systemd_boot.read_bytes()
    assert artifacts[f"usr/install/{arch}/systemd-boot.efi"] == expected_boot
    assert artifacts[f"usr/install/{arch}/vmlinuz.efi"][:2] == b"MZ"  # a PE: the UKI


@pytest.mark.registry
def test_skopeo_pulls_the_legacy_installer(
    service: ServiceProcess, test_release: Release, tmp_path: Path
) -> None:
    layout = tmp_path / "oci"
    skopeo(
        "copy",
        "--src-tls-verify=false",
        f"docker://{host(service)}/installer/{EMPTY}:v1.7.7",
        f"oci:{layout}:v1.7.7",
    )
    _, config, layers = layout_image(layout)
    assert config["architecture"] == "amd64"
    assert len(layers) == 2
    assert "bin/installer" in tar_files(layers[0])
    artifacts = tar_files(layers[1])
    assert sorted(artifacts) == ["usr/install/amd64/initramfs.xz", "usr/install/amd64/vmlinuz"]
    art = test_release.version("v1.7.7").arches["amd64"]
    assert artifacts["usr/install/amd64/vmlinuz"] == art.vmlinuz.read_bytes()


@pytest.mark.registry
def test_secureboot_installer_is_signed(service: ServiceProcess, tmp_path: Path) -> None:
    """Both boot files of a Secure Boot installer verify against the service's certificate.

    (Legacy < 1.10 Secure Boot installers name the UKI ``vmlinuz.efi.signed``; the test
    release's v1.7.7 systemd-stub 252 has no ``.sbat``, so no UKI is built for it here.)
    """
    image, version, uki = "metal-installer-secureboot", "v1.11.3", "vmlinuz.efi"
    layout = tmp_path / "oci"
    skopeo(
        "copy",
        "--src-tls-verify=false",
        f"docker://{host(service)}/{image}/{EMPTY}:{version}",
        f"oci:{layout}:{version}",
    )
    _, _, layers = layout_image(layout)
    assert len(layers) == 2
    artifacts = tar_files(layers[1])
    assert sorted(artifacts) == [
        "usr/install/amd64/systemd-boot.efi",
        f"usr/install/amd64/{uki}",
    ]
    cert = tmp_path / "cert.pem"
    cert.write_bytes(httpx.get(f"{service.url}/secureboot/signing-cert.pem").content)
    for name, data in artifacts.items():
        path = tmp_path / Path(name).name
        path.write_bytes(data)
        result = subprocess.run(
            ["sbverify", "--cert", str(cert), str(path)],
            check=False,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


@pytest.mark.registry
def test_index_manifests_and_blobs_are_consistent(service: ServiceProcess) -> None:
    """skopeo and oras-py read the same index and manifests; every blob has its digest."""
    repo = f"installer/{EMPTY}"
    raw = skopeo(
        "inspect", "--raw", "--tls-verify=false", f"docker://{host(service)}/{repo}:v1.11.3"
    )
    index = json.loads(raw)
    answer = httpx.get(f"{service.url}/v2/{repo}/manifests/v1.11.3", timeout=TIMEOUT)
    assert answer.status_code == 200
    assert answer.content == raw.encode()
    assert answer.headers["content-type"] == OCI_INDEX
    assert answer.headers["docker-content-digest"] == sha256(answer.content)
    assert index["mediaType"] == OCI_INDEX
    assert [m["platform"] for m in index["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux"},
    ]
    client = oras.client.OrasClient(hostname=host(service), insecure=True)
    assert (
        client.get_manifest(f"{host(service)}/{repo}:v1.11.3", allowed_media_type=[OCI_INDEX])
        == index
    )
    for entry in index["manifests"]:
        manifest = client.get_manifest(f"{host(service)}/{repo}@{entry['digest']}")
        assert manifest["mediaType"] == OCI_MANIFEST
        head = httpx.head(f"{service.url}/v2/{repo}/manifests/{entry['digest']}")
        assert head.status_code == 200
        assert head.headers["content-type"] == OCI_MANIFEST
        assert int(head.headers["content-length"]) == entry["size"]
        for blob in (manifest["config"], *manifest["layers"]):
            url = f"{service.url}/v2/{repo}/blobs/{blob['digest']}"
            head = httpx.head(url)
            assert head.status_code == 200
            assert head.content == b""
            assert int(head.headers["content-length"]) == blob["size"]
            assert head.headers["docker-content-digest"] == blob["digest"]
            got = httpx.get(url, timeout=TIMEOUT)
            assert sha256(got.content) == blob["digest"]
        ranged = httpx.get(
            f"{service.url}/v2/{repo}/blobs/{manifest['layers'][1]['digest']}",
            headers={"Range": "bytes=0-1"},
        )
        assert ranged.status_code == 206
        assert ranged.content == b"\x1f\x8b"  # gzip
    # A blob of this repository is not one of another repository.
    other = httpx.head(
        f"{service.url}/v2/metal-installer-secureboot/{EMPTY}/blobs/{index['manifests'][0]['digest']}"
    )
    assert other.status_code == 404


@pytest.mark.registry
def test_digests_are_stable_and_latest_is_newest_stable(
    service: ServiceProcess, test_release: Release
) -> None:
    repo = f"installer/{EMPTY}"
    first = manifest_head(service, repo, "v1.11.3")
    second = manifest_head(service, repo, "v1.11.3")
    assert first.status_code == second.status_code == 200
    assert first.headers["docker-content-digest"] == second.headers["docker-content-digest"]
    newest = max(
        (v for v in test_release.offered_versions if "-" not in v),
        key=lambda v: tuple(int(x) for x in v.lstrip("v").split(".")),
    )
    assert newest == "v1.11.3"
    latest = manifest_head(service, repo, "latest")
    assert latest.headers["docker-content-digest"] == first.headers["docker-content-digest"]


@pytest.mark.registry
def test_digests_survive_a_restart(release_registry: LocalRegistry, tmp_path: Path) -> None:
    proc = release_service(tmp_path, release_registry.host, secureboot=False)
    try:
        assert create(proc, "customization: {}\n") == EMPTY
        before = manifest_head(proc, f"metal-installer/{EMPTY}", "v1.11.3")
        assert before.status_code == 200, before.text
        proc.stop()
        proc.start()
        after = manifest_head(proc, f"metal-installer/{EMPTY}", "v1.11.3")
        assert after.headers["docker-content-digest"] == before.headers["docker-content-digest"]
        assert metric(proc, "image_factory_assets_built_total", "installer") == 0
    finally:
        proc.stop()


@pytest.mark.registry
def test_concurrent_pulls_build_once(service: ServiceProcess) -> None:
    flavor_id = create(service, "customization:\n  extraKernelArgs: [concurrent-pulls=1]\n")
    built = metric(service, "image_factory_assets_built_total", "installer")
    converted = metric(service, "image_factory_assets_built_total", "installer-image")
    url = f"{service.url}/v2/metal-installer/{flavor_id}/manifests/v1.11.3"
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: httpx.get(url, timeout=TIMEOUT), range(10)))
    assert [a.status_code for a in answers] == [200] * 10, answers[0].text
    assert len({a.headers["docker-content-digest"] for a in answers}) == 1
    assert metric(service, "image_factory_assets_built_total", "installer") == built + 2  # arches
    assert metric(service, "image_factory_assets_built_total", "installer-image") == converted + 1


def oci_error(answer: httpx.Response) -> tuple[int, str, str]:
    assert answer.headers["content-type"] == "application/json"
    (error,) = answer.json()["errors"]
    return answer.status_code, error["code"], error["message"]


@pytest.mark.registry
@pytest.mark.parametrize(
    ("method", "path", "status", "code", "message"),
    [
        ("GET", f"/v2/installer/{UNKNOWN}/manifests/v1.11.3", 404, "NAME_UNKNOWN", NO_FLAVOR),
        ("GET", f"/v2/nope/{UNKNOWN}/manifests/v1.11.3", 404, "NAME_UNKNOWN", NO_FLAVOR),
        (
            "GET",
            f"/v2/imager/{EMPTY}/manifests/v1.11.3",
            400,
            "NAME_INVALID",
            "invalid image: imager",
        ),
        (
            "GET",
            f"/v2/x-installer/{EMPTY}/blobs/{DIGEST}",
            400,
            "NAME_INVALID",
            "invalid image: x-",
        ),
        (
            "GET",
            f"{REPO}/manifests/v9.9.9",
            404,
            "MANIFEST_UNKNOWN",
            "version 9.9.9 is not available",
        ),
        ("GET", f"{REPO}/manifests/v1.11", 400, "UNSUPPORTED", "error parsing version"),
        ("GET", f"{REPO}/manifests/1.11.3", 404, "MANIFEST_UNKNOWN", "tag '1.11.3' is never built"),
        ("GET", f"{REPO}/manifests/{DIGEST}", 404, "MANIFEST_UNKNOWN", "unknown"),
        ("GET", f"{REPO}/blobs/{DIGEST}", 404, "BLOB_UNKNOWN", "unknown"),
        ("GET", f"{REPO}/blobs/sha256:abc", 400, "DIGEST_INVALID", "invalid digest"),
        ("GET", f"{REPO}/blobs/latest", 400, "DIGEST_INVALID", "invalid digest"),
        ("GET", "/v2/installer/manifests/v1", 404, "NAME_UNKNOWN", UNKNOWN_PATH),
        ("GET", f"{REPO}/tags/list", 404, "UNSUPPORTED", "unknown registry path"),
        ("GET", "/v2/siderolabs/imager/manifests/v1", 404, "UNSUPPORTED", "source-image proxy"),
        ("POST", f"{REPO}/blobs/uploads/", 405, "UNSUPPORTED", "read-only"),
        ("PUT", f"{REPO}/manifests/v1.11.3", 405, "UNSUPPORTED", "read-only"),
        ("DELETE", f"{REPO}/manifests/{DIGEST}", 405, "UNSUPPORTED", "read-only"),
        ("PATCH", f"{REPO}/blobs/uploads/x", 405, "UNSUPPORTED", "read-only"),
    ],
)
def test_oci_errors(
    service: ServiceProcess, method: str, path: str, status: int, code: str, message: str
) -> None:
    answer = httpx.request(method, service.url + path, timeout=TIMEOUT)
    got_status, got_code, got_message = oci_error(answer)
    assert (got_status, got_code) == (status, code), got_message
    assert message in got_message
    assert answer.headers["docker-distribution-api-version"] == "registry/2.0"
    if status == 405:
        assert answer.headers["allow"] == "GET, HEAD"


@pytest.mark.registry
def test_head_errors_have_no_body(service: ServiceProcess) -> None:
    answer = httpx.head(f"{service.url}/v2/installer/{EMPTY}/blobs/sha256:{'b' * 64}")
    assert answer.status_code == 404
    assert answer.content == b""
    assert answer.headers["content-type"] == "application/json"


@pytest.mark.registry
def test_referrers_are_an_empty_index(service: ServiceProcess) -> None:
    answer = httpx.get(f"{service.url}/v2/installer/{EMPTY}/referrers/sha256:{'a' * 64}")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == OCI_INDEX
    assert answer.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    unknown = httpx.get(f"{service.url}/v2/installer/{UNKNOWN}/referrers/sha256:{'a' * 64}")
    assert oci_error(unknown)[:2] == (404, "NAME_UNKNOWN")
