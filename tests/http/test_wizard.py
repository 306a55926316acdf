"""The web wizard over real HTTP: steps, bookmarkable URLs, bad input, and the final page.

One ``image-service serve`` on the test release (with Secure Boot keys) serves every test. The
golden schematics are written from upstream's wizard rules (reference/ui.md): extensions sorted
alphabetically, the kernel-args field split on spaces, the overlay from the chosen board; the
final page's ID must equal what ``POST /schematics`` answers for that document.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser

import httpx
import pytest
import yaml

from tests.support.registry import LocalRegistry
from tests.support.service import ServiceProcess, release_service

pytestmark = pytest.mark.registry

METAL_ARCH = [("target", "metal"), ("version", "1.11.3"), ("arch", "amd64")]
SBC_BOARD = [("target", "sbc"), ("version", "1.11.3"), ("board", "rpi_generic")]


@pytest.fixture(scope="module")
def wizard(
    release_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    proc = release_service(tmp_path_factory.mktemp("wizard"), release_registry.host)
    yield proc
    assert proc.stop() == 0


@pytest.fixture(scope="module")
def plain(
    release_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """The same release without Secure Boot keys."""
    proc = release_service(
        tmp_path_factory.mktemp("wizard-plain"), release_registry.host, secureboot=False
    )
    yield proc
    assert proc.stop() == 0


@pytest.fixture(scope="module")
def plain_no_release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A service whose release registry (the ghcr.io default) cannot be reached from here."""
    tmp = tmp_path_factory.mktemp("wizard-no-release")
    proc = ServiceProcess(["serve", "--data-dir", str(tmp / "data")], tmp / "service.log")
    proc.args += ["--listen", f"127.0.0.1:{proc.port}"]
    proc.start()
    yield proc
    assert proc.stop() == 0


class Page(HTMLParser):
    """What the tests look at in a page: headings, links, named controls, texts by id."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.lang: str | None = None
        self.h1: list[str] = []
        self.links: list[str] = []
        self.controls: list[dict[str, str | None]] = []
        self.by_id: dict[str, str] = {}
        self._open: list[tuple[str, str | None]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        if tag == "a" and a.get("href"):
            self.links.append(str(a["href"]))
        if tag in {"input", "select", "textarea", "button"}:
            self.controls.append({"tag": tag, **a})
        self._open.append((tag, a.get("id")))
        if a.get("id"):
            self.by_id.setdefault(str(a["id"]), "")

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for _tag, ident in self._open:
            if ident:
                self.by_id[ident] += data
        if self._open and self._open[-1][0] == "h1":
            self.h1.append(data.strip())

    def hidden(self, name: str) -> list[str]:
        return [
            str(c.get("value"))
            for c in self.controls
            if c.get("type") == "hidden" and c.get("name") == name
        ]


def get(service: ServiceProcess, query: list[tuple[str, str]] | str = "") -> httpx.Response:
    return httpx.get(f"{service.url}/", params=query, timeout=30)


def official(service: ServiceProcess, version: str, kind: str) -> list[dict[str, str]]:
    answer = httpx.get(f"{service.url}/version/{version}/{kind}/official", timeout=30)
    assert answer.status_code == 200
    return list(answer.json())


def created_id(service: ServiceProcess, document: dict[str, object]) -> str:
    answer = httpx.post(f"{service.url}/schematics", content=yaml.safe_dump(document), timeout=30)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def test_first_page_is_the_hardware_step(wizard: ServiceProcess) -> None:
    answer = get(wizard)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    csp = answer.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    page = Page(answer.text)
    assert page.lang == "en"
    assert page.h1 == ["Hardware Type"]
    for label in ("Bare-metal Machine", "Cloud Server", "Single Board Computer"):
        assert label in answer.text
    assert "<title>" in answer.text


def test_first_page_needs_no_catalog(plain_no_release: ServiceProcess) -> None:
    answer = get(plain_no_release)
    assert answer.status_code == 200
    assert Page(answer.text).h1 == ["Hardware Type"]


def test_static_files_are_served_from_this_origin(wizard: ServiceProcess) -> None:
    page = get(wizard).text
    for src in re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', page):
        assert httpx.get(f"{wizard.url}{src}").status_code == 200
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page.split("<main>")[0])


def test_version_step_preselects_the_newest_stable(wizard: ServiceProcess) -> None:
    page = get(wizard, [("target", "metal")]).text
    assert re.search(r'<option value="1.11.3" selected>v1.11.3</option>', page)
    assert "v1.12.0-beta.1 (pre-release)" in page


def test_metal_with_two_extensions_and_a_kernel_arg(wizard: ServiceProcess) -> None:
    names = [e["name"] for e in official(wizard, "v1.11.3", "extensions")]
    two = sorted(names)[:2][::-1]  # chosen in reverse order: the wizard sorts them
    query = [
        ("target", "metal"),
        ("version", "1.11.3"),
        ("arch", "amd64"),
        *[("extensions", name) for name in two],
        ("cmdline", "net.ifnames=0 console=ttyS0"),
        ("cmdline-set", "true"),
    ]
    answer = get(wizard, query)
    assert answer.status_code == 200, answer.text
    page = Page(answer.text)
    expected = created_id(
        wizard,
        {
            "customization": {
                "extraKernelArgs": ["net.ifnames=0", "console=ttyS0"],
                "systemExtensions": {"officialExtensions": sorted(two)},
            }
        },
    )
    assert page.by_id["schematic-id"] == expected
    for suffix in (
        "metal-amd64.iso",
        "metal-amd64.raw.zst",
        "kernel-amd64",
        "initramfs-amd64.xz",
        "metal-amd64-uki.efi",
    ):
        assert f"/image/{expected}/v1.11.3/{suffix}" in page.links
    assert f"{wizard.url}/pxe/{expected}/v1.11.3/metal-amd64" in page.links
    host = wizard.url.removeprefix("http://")
    assert page.by_id["installer"] == f"{host}/installer/{expected}:v1.11.3"
    assert page.by_id["upgrade"] == f"talosctl upgrade --image {host}/installer/{expected}:v1.11.3"
    kernel = httpx.get(f"{wizard.url}/image/{expected}/v1.11.3/kernel-amd64", timeout=120)
    assert kernel.status_code == 200


def test_every_step_in_order_with_back_links(wizard: ServiceProcess) -> None:
    steps = [
        ([], "Hardware Type"),
        ([("target", "cloud")], "Choose Talos Linux Version"),
        ([("version", "1.11.3")], "Cloud Platform"),
        ([("platform", "aws")], "Machine Architecture"),
        ([("arch", "arm64")], "System Extensions"),
        ([("extensions", "-")], "Customization"),
        ([("cmdline", ""), ("cmdline-set", "true")], "Schematic Ready"),
    ]
    query: list[tuple[str, str]] = []
    previous_url = None
    for added, heading in steps:
        query += added
        answer = get(wizard, query)
        assert answer.status_code == 200, answer.text
        page = Page(answer.text)
        assert page.h1 == [heading]
        if previous_url is not None and heading != "Schematic Ready":
            back = [link for link in page.links if link.startswith("/?")]
            assert back, f"no Back link on {heading}"
        previous_url = answer.url
    assert any(link.endswith("/v1.11.3/aws-arm64.raw.xz") for link in page.links)
    assert page.by_id["schematic-id"] == created_id(wizard, {"customization": {}})


def test_sbc_board(wizard: ServiceProcess) -> None:
    boards = official(wizard, "v1.11.3", "overlays")
    board = boards[0]
    query = [
        ("target", "sbc"),
        ("version", "1.11.3"),
        ("board", board["name"]),
        ("extensions", "-"),
        ("overlay-options", "configTxtAppend: dtoverlay=vc4-kms-v3d\n"),
        ("cmdline-set", "true"),
    ]
    answer = get(wizard, query)
    assert answer.status_code == 200, answer.text
    page = Page(answer.text)
    expected = created_id(
        wizard,
        {
            "overlay": {
                "image": board["image"],
                "name": board["name"],
                "options": {"configTxtAppend": "dtoverlay=vc4-kms-v3d"},
            },
            "customization": {},
        },
    )
    assert page.by_id["schematic-id"] == expected
    assert f"/image/{expected}/v1.11.3/metal-arm64.raw.xz" in page.links


def test_secure_boot_with_and_without_keys(wizard: ServiceProcess, plain: ServiceProcess) -> None:
    arch_step = [("target", "metal"), ("version", "1.11.3")]
    with_keys = Page(get(wizard, arch_step).text)
    box = next(c for c in with_keys.controls if c.get("name") == "secureboot")
    assert "disabled" not in box
    without = get(plain, arch_step).text
    assert "this service has no Secure Boot signing keys" in without
    box = next(c for c in Page(without).controls if c.get("name") == "secureboot")
    assert "disabled" in box

    query = [*arch_step, ("arch", "amd64"), ("secureboot", "true"), ("extensions", "-")]
    answer = get(wizard, [*query, ("cmdline-set", "true")])
    page = Page(answer.text)
    flavor_id = page.by_id["schematic-id"]
    assert f"/image/{flavor_id}/v1.11.3/metal-amd64-secureboot.iso" in page.links
    assert f"/image/{flavor_id}/v1.11.3/kernel-amd64" not in page.links
    assert "/installer-secureboot/" in page.by_id["installer"]
    refused = get(plain, [*query, ("cmdline-set", "true")])
    assert refused.status_code == 400
    assert Page(refused.text).h1 == ["Machine Architecture"]


@pytest.mark.parametrize(
    ("query", "heading", "message"),
    [
        ([("target", "laptop")], "Hardware Type", "unknown hardware type"),
        ([("target", "metal"), ("version", "9.9.9")], "Choose Talos Linux Version", "v9.9.9"),
        (
            [("target", "cloud"), ("version", "1.11.3"), ("platform", "mars")],
            "Cloud Platform",
            "unknown cloud platform",
        ),
        (
            [("target", "sbc"), ("version", "1.11.3"), ("board", "nope")],
            "Single Board Computer",
            "unknown board",
        ),
        (
            [("target", "metal"), ("version", "1.11.3"), ("arch", "s390x")],
            "Machine Architecture",
            "unknown architecture",
        ),
        (
            [*METAL_ARCH, ("extensions", "siderolabs/does-not-exist")],
            "System Extensions",
            "siderolabs/does-not-exist",
        ),
        (
            [*METAL_ARCH, ("extensions", "-"), ("cmdline", "a\nb"), ("cmdline-set", "true")],
            "Customization",
            "control characters",
        ),
        (
            [
                *SBC_BOARD,
                ("extensions", "-"),
                ("overlay-options", "[1, 2"),
                ("cmdline-set", "true"),
            ],
            "Customization",
            "not valid YAML",
        ),
    ],
)
def test_bad_input_rerenders_the_step(
    wizard: ServiceProcess, query: list[tuple[str, str]], heading: str, message: str
) -> None:
    answer = get(wizard, query)
    assert answer.status_code == 400
    page = Page(answer.text)
    assert page.h1 == [heading]
    assert message in page.by_id["error"]


def test_values_are_escaped(wizard: ServiceProcess) -> None:
    query = [("target", "metal"), ("version", "1.11.3"), ("arch", "amd64")]
    answer = get(wizard, [*query, ("search", '"><script>alert(1)</script>'), ("filter", "1")])
    assert answer.status_code == 200
    assert "<script>alert(1)" not in answer.text
    assert "&lt;script&gt;" in answer.text or "&#34;&gt;&lt;script" in answer.text


def test_search_without_javascript_filters_and_keeps_the_step(wizard: ServiceProcess) -> None:
    names = [e["name"] for e in official(wizard, "v1.11.3", "extensions")]
    needle = names[0].split("/")[-1]
    query = [("target", "metal"), ("version", "1.11.3"), ("arch", "amd64")]
    answer = get(wizard, [*query, ("search", needle), ("filter", "1")])
    page = Page(answer.text)
    assert page.h1 == ["System Extensions"]
    shown = [c.get("value") for c in page.controls if c.get("type") == "checkbox"]
    assert shown and all(needle in str(name) for name in shown)
    assert len(shown) < len(names)
