"""Asset downloads through ``/image`` from a service pulling the test release from a registry.

Expected cmdlines are written from upstream's rules (reference/talos-assets.md §5), expected
bytes come from the test release's own files, error texts from reference/api.md §2.4.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.release import Release
from tests.support.registry import LocalRegistry
from tests.support.service import ServiceProcess, release_service

pytestmark = pytest.mark.registry

EMPTY = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

DEFAULTS_17 = (
    "init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 "
    "printk.devkmsg=on ima_template=ima-ng ima_appraise=fix ima_hash=sha512"
)
DEFAULTS_111 = (
    "init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 "
    "printk.devkmsg=on selinux=1"
)
META_SHORT = "talos.environment=INSTALLER_META_BASE64=MHhjPWhlbGxvOzB4ZD13b3JsZA=="

FLAVORS = {
    "empty": "customization: {}\n",
    "args": "customization:\n  extraKernelArgs: [console=ttyS1, -init_on_alloc, foo=bar]\n",
    "meta": (
        "customization:\n  meta:\n    - {key: 0xc, value: hello}\n    - {key: 0xd, value: world}\n"
    ),
}

CMDLINES = [
    (
        "v1.7.7",
        "empty",
        "metal-amd64",
        f"talos.platform=metal console=ttyS0 console=tty0 {DEFAULTS_17}",
    ),
    ("v1.11.3", "empty", "metal-amd64", f"talos.platform=metal console=tty0 {DEFAULTS_111}"),
    (
        "v1.7.7",
        "args",
        "metal-amd64",
        "talos.platform=metal console=ttyS1 slab_nomerge pti=on consoleblank=0 "
        "nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng "
        "ima_appraise=fix ima_hash=sha512 foo=bar",
    ),
    (
        "v1.11.3",
        "args",
        "metal-amd64",
        "talos.platform=metal console=ttyS1 slab_nomerge pti=on consoleblank=0 "
        "nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 foo=bar",
    ),
    (
        "v1.11.3",
        "meta",
        "metal-amd64",
        f"talos.platform=metal console=tty0 {DEFAULTS_111} {META_SHORT}",
    ),
    (
        "v1.7.7",
        "meta",
        "metal-amd64",
        f"talos.platform=metal console=ttyS0 console=tty0 {DEFAULTS_17} {META_SHORT}",
    ),
    (
        "v1.11.3",
        "empty",
        "metal-amd64-secureboot",
        f"talos.platform=metal console=tty0 {DEFAULTS_111} lockdown=confidentiality",
    ),
    (
        "v1.7.7",
        "empty",
        "metal-amd64-secureboot",
        f"talos.platform=metal console=ttyS0 console=tty0 {DEFAULTS_17} lockdown=confidentiality",
    ),
    (
        "v1.11.3",
        "empty",
        "aws-amd64",
        f"talos.platform=aws console=tty1 console=ttyS0 net.ifnames=0 {DEFAULTS_111}",
    ),
    (
        "v1.7.7",
        "empty",
        "gcp-amd64",
        "talos.platform=gcp console=ttyS0 net.ifnames=0 talos.dashboard.disabled=1 "
        f"sysctl.kernel.kexec_load_disabled=1 {DEFAULTS_17}",
    ),
    (
        "v1.11.3",
        "empty",
        "azure-amd64",
        "talos.platform=azure console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300 "
        "net.ifnames=0 talos.dashboard.disabled=1 sysctl.kernel.kexec_load_disabled=1 "
        f"{DEFAULTS_111}",
    ),
    (
        "v1.7.7",
        "empty",
        "aws-amd64",
        f"talos.platform=aws console=tty1 console=ttyS0 net.ifnames=0 {DEFAULTS_17}",
    ),
    (
        "v1.11.3",
        "empty",
        "gcp-amd64",
        "talos.platform=gcp console=ttyS0 net.ifnames=0 talos.dashboard.disabled=1 "
        f"sysctl.kernel.kexec_load_disabled=1 {DEFAULTS_111}",
    ),
    (
        "v1.7.7",
        "empty",
        "azure-amd64",
        "talos.platform=azure console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300 "
        "net.ifnames=0 talos.dashboard.disabled=1 sysctl.kernel.kexec_load_disabled=1 "
        f"{DEFAULTS_17}",
    ),
    (
        "v1.12.0-beta.1",
        "empty",
        "metal-arm64",
        f"talos.platform=metal console=ttyAMA0 console=tty0 {DEFAULTS_111} module.sig_enforce=1",
    ),
]


@pytest.fixture(scope="module")
def service(
    release_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    proc = release_service(tmp_path_factory.mktemp("image"), release_registry.host)
    yield proc
    assert proc.stop() == 0


def create(service: ServiceProcess, name: str) -> str:
    answer = httpx.post(f"{service.url}/schematics", content=FLAVORS[name])
    assert answer.status_code == 201
    return str(answer.json()["id"])


def metric(service: ServiceProcess, name: str, kind: str) -> float:
    text = httpx.get(f"{service.url}/metrics").text
    match = re.search(rf'^{name}{{kind="{kind}"}} ([0-9.e+]+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize(("version", "flavor", "target", "expected"), CMDLINES)
def test_cmdline(
    service: ServiceProcess, version: str, flavor: str, target: str, expected: str
) -> None:
    flavor_id = create(service, flavor)
    answer = httpx.get(f"{service.url}/image/{flavor_id}/{version}/cmdline-{target}", timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.text == expected
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.headers["content-disposition"] == f'attachment; filename="cmdline-{target}"'


@pytest.mark.parametrize("version", ["v1.7.7", "v1.11.3"])
def test_long_meta_is_gzipped(service: ServiceProcess, version: str) -> None:
    value = "x" * 300  # rendered "0xc=xxx…" is longer than 256 bytes: gzip from 1.6.3 on
    answer = httpx.post(
        f"{service.url}/schematics",
        content=f"customization:\n  meta:\n    - key: 12\n      value: {value}\n",
    )
    flavor = answer.json()["id"]
    cmdline = httpx.get(f"{service.url}/image/{flavor}/{version}/cmdline-metal-amd64").text
    prefix, token = cmdline.rsplit(" ", 1)
    assert (
        prefix
        == {
            "v1.7.7": f"talos.platform=metal console=ttyS0 console=tty0 {DEFAULTS_17}",
            "v1.11.3": f"talos.platform=metal console=tty0 {DEFAULTS_111}",
        }[version]
    )
    key, _, encoded = token.partition("=INSTALLER_META_BASE64=")
    assert key == "talos.environment"
    raw = base64.b64decode(encoded, validate=True)
    assert raw[:2] == b"\x1f\x8b"  # gzip magic, as Talos detects it
    assert gzip.decompress(raw) == f"0xc={value}".encode()


@pytest.mark.parametrize(("version", "arch"), [("v1.7.7", "amd64"), ("v1.11.3", "arm64")])
def test_kernel_is_shipped_as_is(
    service: ServiceProcess, test_release: Release, version: str, arch: str
) -> None:
    expected = test_release.version(version).arches[arch].vmlinuz.read_bytes()
    answer = httpx.get(f"{service.url}/image/{EMPTY}/{version}/kernel-{arch}", timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.content == expected
    digest = "sha256:" + hashlib.sha256(expected).hexdigest()
    assert answer.headers["etag"] == f'"{digest}"'
    assert answer.headers["content-length"] == str(len(expected))
    assert answer.headers["content-type"] == "application/octet-stream"


def test_download_headers_ranges_and_conditionals(
    service: ServiceProcess, test_release: Release
) -> None:
    expected = test_release.version("v1.11.3").arches["amd64"].vmlinuz.read_bytes()
    base = f"{service.url}/image/{EMPTY}/1.11.3"
    full = httpx.get(f"{base}/kernel-x86_64?filename=vmlinuz", timeout=120)
    assert full.status_code == 200
    assert full.content == expected
    assert full.headers["content-disposition"] == 'attachment; filename="vmlinuz"'
    etag = full.headers["etag"]

    head = httpx.head(f"{base}/kernel-amd64")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(expected))
    assert head.headers["etag"] == etag

    assert httpx.get(f"{base}/kernel-amd64", headers={"If-None-Match": etag}).status_code == 304

    part = httpx.get(f"{base}/kernel-amd64", headers={"Range": "bytes=100-1123"})
    assert part.status_code == 206
    assert part.content == expected[100:1124]
    assert part.headers["content-range"] == f"bytes 100-1123/{len(expected)}"
    suffix = httpx.get(f"{base}/kernel-amd64", headers={"Range": "bytes=-10"})
    assert suffix.content == expected[-10:]
    outside = httpx.get(f"{base}/kernel-amd64", headers={"Range": f"bytes={len(expected)}-"})
    assert outside.status_code == 416
    weird = httpx.get(f"{base}/kernel-amd64", headers={"Range": "bytes=0-1,5-6"})
    assert weird.status_code == 200
    assert weird.content == expected


@pytest.mark.parametrize(
    ("path", "status", "text"),
    [
        (f"/image/{'0' * 64}/v1.11.3/kernel-amd64", 404, f'schematic ID "{"0" * 64}" not found'),
        ("/image/not-an-id/v1.11.3/kernel-amd64", 404, 'schematic ID "not-an-id" not found'),
        (f"/image/{EMPTY}/v1.9.0/kernel-amd64", 404, "version 1.9.0 is not available"),
        (f"/image/{EMPTY}/1.11/kernel-amd64", 400, "error parsing version"),
        (
            f"/image/{EMPTY}/v1.11.3/kernel-foo",
            400,
            'error parsing profile from path: invalid architecture: "foo"',
        ),
        (
            f"/image/{EMPTY}/v1.11.3/metal-amd64.img",
            400,
            'error parsing profile from path: invalid profile path: "metal-amd64.img"',
        ),
        (
            f"/image/{EMPTY}/v1.11.3/cmdline-metal",
            400,
            'error parsing profile from path: invalid platform-arch: "metal"',
        ),
        (
            f"/image/{EMPTY}/v1.11.3/kernel-amd64.sha256",
            402,
            "enterprise not enabled: checksum endpoint is not available",
        ),
    ],
)
def test_errors(service: ServiceProcess, path: str, status: int, text: str) -> None:
    answer = httpx.get(f"{service.url}{path}", timeout=60)
    assert answer.status_code == status, answer.text
    assert answer.text.startswith(text)
    assert httpx.get(f"{service.url}/healthz").status_code == 200


def test_unknown_extension_is_400(service: ServiceProcess) -> None:
    answer = httpx.post(
        f"{service.url}/schematics",
        content="customization:\n  systemExtensions:\n    officialExtensions: [siderolabs/nope]\n",
    )
    flavor_id = answer.json()["id"]
    failed = httpx.get(f"{service.url}/image/{flavor_id}/v1.11.3/initramfs-amd64.xz", timeout=60)
    assert failed.status_code == 400
    assert failed.text == (
        "error enhancing profile from schematic: official extension "
        '"siderolabs/nope" is not available for Talos version v1.11.3\n'
    )


def test_concurrent_requests_build_once(service: ServiceProcess, test_release: Release) -> None:
    url = f"{service.url}/image/{EMPTY}/v1.7.7/kernel-arm64"
    built_before = metric(service, "image_factory_assets_built_total", "kernel")

    async def fetch_all() -> list[bytes]:
        async with httpx.AsyncClient(timeout=120) as client:
            answers = await asyncio.gather(*(client.get(url) for _ in range(20)))
        assert all(a.status_code == 200 for a in answers)
        return [a.content for a in answers]

    bodies = asyncio.run(fetch_all())
    assert len(set(bodies)) == 1
    assert bodies[0] == test_release.version("v1.7.7").arches["arm64"].vmlinuz.read_bytes()
    assert metric(service, "image_factory_assets_built_total", "kernel") == built_before + 1


def test_disconnected_client_does_not_cancel_the_build(service: ServiceProcess) -> None:
    url = f"{service.url}/image/{EMPTY}/v1.12.0-beta.1/kernel-amd64"
    built_before = metric(service, "image_factory_assets_built_total", "kernel")
    hits_before = metric(service, "image_factory_assets_delivered_cached_total", "kernel")
    with pytest.raises(httpx.TimeoutException):
        httpx.get(url, timeout=0.05)
    deadline = time.monotonic() + 60

    def finished() -> bool:
        started = metric(service, "image_factory_assets_built_total", "kernel")
        done = metric(service, "image_factory_assets_build_latency_seconds_count", "kernel")
        return started == built_before + 1 and done == started

    while not finished():  # the abandoned build runs to the end on its own
        assert time.monotonic() < deadline
        time.sleep(0.05)
    answer = httpx.get(url, timeout=60)
    assert answer.status_code == 200
    assert metric(service, "image_factory_assets_built_total", "kernel") == built_before + 1
    assert (
        metric(service, "image_factory_assets_delivered_cached_total", "kernel") >= hits_before + 1
    )


def test_metrics_and_bytes_served(service: ServiceProcess) -> None:
    text = httpx.get(f"{service.url}/metrics").text
    assert "image_factory_assets_built_total" in text
    assert "image_service_assets_served_bytes_total" in text
