"""iPXE scripts through ``/pxe`` from a service pulling the test release from a registry.

Golden scripts are upstream's integration-test vectors (reference/api.md §9.4) with ``ENDPOINT``,
``CONFIG`` and ``VERSION`` filled in; the v1.7.7 cmdlines equal upstream's v1.5.0 ones (the rules
that change them start at 1.8), the v1.11.3 ones are api.md's v1.11.0 table. The boot test chains
the script with QEMU's own iPXE ROM over slirp HTTP (reference/verification.md §5), so the guest
downloads kernel and initramfs through ``/image`` from the URLs the script names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from frontends.pxe.app import Target, parse_target, render_script
from tests.release.markers import parse_markers
from tests.support.qemu import boot
from tests.support.registry import LocalRegistry, free_port
from tests.support.service import ServiceProcess, release_service

EMPTY = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
DEFAULT_EXTERNAL_URL = "https://factory.example.com/prefix"  # no trailing slash on purpose

# api.md §9.4, Talos v1.5.0 (equal for v1.7.7).
UPSTREAM_150 = {
    "metal-amd64": (
        "#!ipxe\n\nimgfree\nkernel ENDPOINT/image/CONFIG/VERSION/kernel-amd64 talos.platform=metal"
        " console=ttyS0 console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0"
        " nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng ima_appraise=fix"
        " ima_hash=sha512\ninitrd ENDPOINT/image/CONFIG/VERSION/initramfs-amd64.xz\nboot\n"
    ),
    "equinixMetal-amd64": (
        "#!ipxe\n\nimgfree\nkernel ENDPOINT/image/CONFIG/VERSION/kernel-amd64"
        " talos.platform=equinixMetal console=ttyS1,115200n8 init_on_alloc=1 slab_nomerge pti=on"
        " consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng"
        " ima_appraise=fix ima_hash=sha512\ninitrd ENDPOINT/image/CONFIG/VERSION/initramfs-amd64.xz"
        "\nboot\n"
    ),
    "metal-amd64-secureboot": (
        "#!ipxe\n\nimgfree\nkernel ENDPOINT/image/CONFIG/VERSION/metal-amd64-secureboot-uki.efi"
        " talos.platform=metal console=ttyS0 console=tty0 init_on_alloc=1 slab_nomerge pti=on"
        " consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng"
        " ima_appraise=fix ima_hash=sha512 lockdown=confidentiality\nboot\n"
    ),
}
# api.md §9.4, the v1.11.0 cmdline table put into the same templates.
DEFAULTS_111 = (
    "init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 "
    "printk.devkmsg=on selinux=1"
)
UPSTREAM_111 = {
    "metal-amd64": (
        "#!ipxe\n\nimgfree\nkernel ENDPOINT/image/CONFIG/VERSION/kernel-amd64 talos.platform=metal"
        f" console=tty0 {DEFAULTS_111}\ninitrd ENDPOINT/image/CONFIG/VERSION/initramfs-amd64.xz"
        "\nboot\n"
    ),
    "equinixMetal-amd64": (
        "#!ipxe\n\nimgfree\nkernel ENDPOINT/image/CONFIG/VERSION/kernel-amd64"
        f" talos.platform=equinixMetal console=ttyS1,115200n8 {DEFAULTS_111}"
        "\ninitrd ENDPOINT/image/CONFIG/VERSION/initramfs-amd64.xz\nboot\n"
    ),
    "metal-amd64-secureboot": (
        "#!ipxe\n\nimgfree\nkernel ENDPOINT/image/CONFIG/VERSION/metal-amd64-secureboot-uki.efi"
        f" talos.platform=metal console=tty0 {DEFAULTS_111} lockdown=confidentiality\nboot\n"
    ),
}
# talos-assets.md §5: metal arm64 consoles, module.sig_enforce=1 from 1.12.
ARM64_112 = (
    "#!ipxe\n\nimgfree\nkernel ENDPOINT/image/CONFIG/VERSION/kernel-arm64 talos.platform=metal"
    f" console=ttyAMA0 console=tty0 {DEFAULTS_111} module.sig_enforce=1"
    "\ninitrd ENDPOINT/image/CONFIG/VERSION/initramfs-arm64.xz\nboot\n"
)
# extraKernelArgs: "-init_on_alloc" removes a default, console=ttyS1 replaces the consoles.
ARGS_FLAVOR = "customization:\n  extraKernelArgs: [console=ttyS1, -init_on_alloc, foo=bar]\n"
ARGS_111 = (
    "#!ipxe\n\nimgfree\nkernel ENDPOINT/image/CONFIG/VERSION/kernel-amd64 talos.platform=metal"
    " console=ttyS1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295"
    " printk.devkmsg=on selinux=1 foo=bar"
    "\ninitrd ENDPOINT/image/CONFIG/VERSION/initramfs-amd64.xz\nboot\n"
)
EXTENSIONS_FLAVOR = (
    "customization:\n  systemExtensions:\n"
    "    officialExtensions: [siderolabs/gvisor, siderolabs/gasket-driver]\n"
)


def golden(template: str, endpoint: str, config: str, version: str) -> str:
    return (
        template.replace("ENDPOINT", endpoint).replace("CONFIG", config).replace("VERSION", version)
    )


# --- the pure rendering (no service) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("metal-amd64", Target("metal", "amd64", False)),
        ("metal-x86_64", Target("metal", "amd64", False)),
        ("metal-i386", Target("metal", "amd64", False)),
        ("metal-arm64-secureboot", Target("metal", "arm64", True)),
        ("equinixMetal-amd64", Target("equinixMetal", "amd64", False)),
        ("digital-ocean-amd64", Target("digital-ocean", "amd64", False)),
        ("metal-x86_64-secureboot", Target("metal", "amd64", True)),
    ],
)
def test_parse_target(path: str, expected: Target) -> None:
    assert parse_target(path) == expected


@pytest.mark.parametrize(
    ("base", "endpoint"),
    [
        ("http://10.0.2.2:8080/", "http://10.0.2.2:8080"),
        ("http://10.0.2.2:8080", "http://10.0.2.2:8080"),
        ("https://h/factory/", "https://h/factory"),
        ("https://h/factory", "https://h/factory"),
    ],
)
@pytest.mark.parametrize("path", sorted(UPSTREAM_150))
def test_render_matches_upstream_vectors(base: str, endpoint: str, path: str) -> None:
    cmdline = re.search(r"^kernel \S+ (.*)$", UPSTREAM_150[path], re.MULTILINE)
    assert cmdline is not None
    script = render_script(base, EMPTY, "v1.5.0", parse_target(path), cmdline.group(1).encode())
    assert script.decode() == golden(UPSTREAM_150[path], endpoint, EMPTY, "v1.5.0")


# --- the real service ----------------------------------------------------------------------------


def _start(
    tmp: Path, release_registry: LocalRegistry, *, secureboot: bool, pxe_url: str | None
) -> ServiceProcess:
    port = free_port()
    if pxe_url is None:
        extra = ["--external-url", DEFAULT_EXTERNAL_URL]
    else:
        extra = ["--external-pxe-url", pxe_url.format(port=port)]
    proc = release_service(tmp, release_registry.host, *extra, secureboot=secureboot, port=port)
    assert create(proc, "customization: {}\n") == EMPTY
    return proc


@pytest.fixture(scope="module")
def service(
    release_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """Secure Boot on; scripts point at the host as a QEMU slirp guest sees it (10.0.2.2)."""
    proc = _start(
        tmp_path_factory.mktemp("pxe"),
        release_registry,
        secureboot=True,
        pxe_url="http://10.0.2.2:{port}/",
    )
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def default_service(
    release_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """Secure Boot off; no PXE URL, so scripts use the external URL (with a path prefix)."""
    proc = _start(
        tmp_path_factory.mktemp("pxe-default"), release_registry, secureboot=False, pxe_url=None
    )
    yield proc
    assert proc.stop() == 0, proc.log()


def endpoint(service: ServiceProcess) -> str:
    return f"http://10.0.2.2:{service.port}"


def create(service: ServiceProcess, document: str) -> str:
    answer = httpx.post(f"{service.url}/schematics", content=document)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def script(service: ServiceProcess, flavor_id: str, version: str, path: str) -> httpx.Response:
    return httpx.get(f"{service.url}/pxe/{flavor_id}/{version}/{path}", timeout=60)


SCRIPTS = [
    ("v1.7.7", "metal-amd64", UPSTREAM_150["metal-amd64"]),
    ("v1.7.7", "metal-x86_64", UPSTREAM_150["metal-amd64"]),
    ("v1.7.7", "equinixMetal-amd64", UPSTREAM_150["equinixMetal-amd64"]),
    ("v1.7.7", "metal-amd64-secureboot", UPSTREAM_150["metal-amd64-secureboot"]),
    ("v1.11.3", "metal-amd64", UPSTREAM_111["metal-amd64"]),
    ("v1.11.3", "metal-i386", UPSTREAM_111["metal-amd64"]),
    ("v1.11.3", "equinixMetal-amd64", UPSTREAM_111["equinixMetal-amd64"]),
    ("v1.11.3", "metal-amd64-secureboot", UPSTREAM_111["metal-amd64-secureboot"]),
    ("v1.11.3", "metal-x86_64-secureboot", UPSTREAM_111["metal-amd64-secureboot"]),
    ("v1.12.0-beta.1", "metal-arm64", ARM64_112),
]


@pytest.mark.registry
@pytest.mark.parametrize(("version", "path", "template"), SCRIPTS)
def test_script_equals_upstream(
    service: ServiceProcess, version: str, path: str, template: str
) -> None:
    answer = script(service, EMPTY, version, path)
    assert answer.status_code == 200, answer.text
    assert answer.text == golden(template, endpoint(service), EMPTY, version)
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert answer.headers["x-request-id"]
    assert "content-disposition" not in answer.headers


@pytest.mark.registry
def test_version_without_v_gets_one_in_urls(service: ServiceProcess) -> None:
    answer = script(service, EMPTY, "1.11.3", "metal-amd64")
    assert answer.status_code == 200, answer.text
    assert answer.text == golden(UPSTREAM_111["metal-amd64"], endpoint(service), EMPTY, "v1.11.3")


@pytest.mark.registry
def test_flavor_customization_reaches_the_script(service: ServiceProcess) -> None:
    flavor_id = create(service, ARGS_FLAVOR)
    answer = script(service, flavor_id, "v1.11.3", "metal-amd64")
    assert answer.status_code == 200, answer.text
    assert answer.text == golden(ARGS_111, endpoint(service), flavor_id, "v1.11.3")


@pytest.mark.registry
def test_pxe_url_changes_only_the_script_urls(
    service: ServiceProcess, default_service: ServiceProcess
) -> None:
    with_pxe = script(service, EMPTY, "v1.11.3", "metal-amd64")
    without = script(default_service, EMPTY, "v1.11.3", "metal-amd64")
    assert with_pxe.status_code == without.status_code == 200
    # Without --external-pxe-url the external URL is the base; its path prefix is kept, no "//".
    expected = golden(UPSTREAM_111["metal-amd64"], DEFAULT_EXTERNAL_URL, EMPTY, "v1.11.3")
    assert without.text == expected
    assert with_pxe.text.replace(endpoint(service), DEFAULT_EXTERNAL_URL) == expected


@pytest.mark.registry
def test_script_urls_download_directly(service: ServiceProcess) -> None:
    """As upstream's tests: every URL on the kernel and initrd lines answers 200, no redirect."""
    flavor_id = create(service, EXTENSIONS_FLAVOR)
    answer = script(service, flavor_id, "v1.7.7", "metal-amd64")
    assert answer.status_code == 200, answer.text
    urls = re.findall(r"^(?:kernel|initrd) (\S+)", answer.text, re.MULTILINE)
    assert len(urls) == 2
    for url in urls:
        local = url.replace(endpoint(service), service.url)
        fetched = httpx.get(local, timeout=300, follow_redirects=False)
        assert fetched.status_code == 200, f"{url}: {fetched.status_code} {fetched.text[:200]}"
        assert int(fetched.headers["content-length"]) > 0


ERRORS = [
    (f"{'0' * 64}/v1.11.3/metal-amd64", 404, f'schematic ID "{"0" * 64}" not found'),
    ("not-an-id/v1.11.3/metal-amd64", 404, 'schematic ID "not-an-id" not found'),
    (f"{EMPTY}/v1.9.0/metal-amd64", 404, "version 1.9.0 is not available"),
    (f"{EMPTY}/1.9.0/metal-amd64", 404, "version 1.9.0 is not available"),
    (
        f"{EMPTY}/v1.11.3/metal",
        400,
        'error parsing profile from path: invalid platform-arch: "metal"',
    ),
    (
        f"{EMPTY}/v1.11.3/metal-riscv64",
        400,
        'error parsing profile from path: invalid architecture: "riscv64"',
    ),
    (
        f"{EMPTY}/v1.11.3/metal-amd64.iso",
        400,
        'error parsing profile from path: invalid architecture: "amd64.iso"',
    ),
]


@pytest.mark.registry
@pytest.mark.parametrize(("path", "status", "text"), ERRORS)
def test_errors(service: ServiceProcess, path: str, status: int, text: str) -> None:
    answer = httpx.get(f"{service.url}/pxe/{path}", timeout=60)
    assert answer.status_code == status, answer.text
    assert answer.text == text + "\n"
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.mark.registry
def test_secureboot_disabled(default_service: ServiceProcess) -> None:
    answer = script(default_service, EMPTY, "v1.11.3", "metal-amd64-secureboot")
    assert answer.status_code == 400
    assert answer.text == "error enhancing profile from schematic: secure boot is disabled\n"


@pytest.mark.registry
@pytest.mark.parametrize("method", ["HEAD", "POST"])
def test_only_get(service: ServiceProcess, method: str) -> None:
    answer = httpx.request(method, f"{service.url}/pxe/{EMPTY}/v1.11.3/metal-amd64")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET"


@pytest.mark.registry
@pytest.mark.boot
def test_ipxe_boots_the_script(service: ServiceProcess, tmp_path: Path) -> None:
    """QEMU's iPXE ROM (SeaBIOS) fetches ``…/metal-${buildarch}`` from /pxe, then kernel and
    initramfs (with the flavor's extensions) from /image, and the fixture init reports."""
    flavor_id = create(service, EXTENSIONS_FLAVOR)
    expected = script(service, flavor_id, "v1.7.7", "metal-i386")  # BIOS iPXE's ${buildarch}
    assert expected.status_code == 200, expected.text
    cmdline = re.search(r"^kernel \S+ (.*)$", expected.text, re.MULTILINE)
    assert cmdline is not None
    bootfile = f"{endpoint(service)}/pxe/{flavor_id}/v1.7.7/metal-${{buildarch}}"
    netboot = [
        "-netdev", f"user,id=n0,bootfile={bootfile}",
        "-device", "virtio-net-pci,netdev=n0",
        "-boot", "n",
    ]  # fmt: skip
    result = boot(
        "amd64",
        tmp_path,
        extra_args=netboot,
        stop_on=["FIXTURE-DONE", "Kernel panic", "No bootable device", "Could not boot"],
        timeout=240,
        name="ipxe-bios",
    )
    report = parse_markers(result.log)
    assert report.done, result.describe()
    assert report.boot_ok
    assert report.firmware == "BIOS"
    assert report.cmdline == cmdline.group(1)
    assert report.rootfs == "v1.7.7"
    assert report.extension_failures == []
    names = {(e.name, e.version) for e in report.extensions}
    assert {
        ("gvisor", "20231214.0"),
        ("gasket-driver", "97aeba5-v1.7.7"),
        ("schematic", flavor_id),
    } <= names, report.lines
    assert report.schematics == [flavor_id]
    assert report.kmods.get("dummy") == "loaded"
