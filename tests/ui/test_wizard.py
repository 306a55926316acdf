"""The web wizard in a real browser (Debian's Chromium via Playwright), JavaScript on and off.

A person's path is clicked through, not typed as a URL: radio buttons, checkboxes, the kernel
args field, Next. Every page is checked for an accessible name on every control, one ``h1``, no
console errors; the final page's ID must equal ``POST /schematics`` of the document built by
upstream's rules (extensions sorted, kernel args split on spaces), and a reload of its URL in a
fresh context must give the same page. With ``IMAGE_SERVICE_SCREENSHOTS=<dir>`` the metal path
saves a desktop and a narrow screenshot of every step there (``scripts/screenshots`` does this
for ``docs/``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, Page

from tests.support.browser import WatchedPage, new_page, unlabelled_controls
from tests.support.registry import LocalRegistry
from tests.support.service import ServiceProcess, release_service

pytestmark = pytest.mark.registry

DESKTOP = (1280, 900)
NARROW = (360, 780)


@pytest.fixture(scope="module")
def service(
    release_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    proc = release_service(tmp_path_factory.mktemp("ui"), release_registry.host)
    yield proc
    assert proc.stop() == 0


def check_page(watched: WatchedPage) -> str:
    page = watched.page
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.title()
    assert page.locator("h1").count() == 1
    assert unlabelled_controls(page) == []
    assert watched.errors == []
    return page.locator("h1").inner_text()


def shoot(page: Page, name: str) -> None:
    target = os.environ.get("IMAGE_SERVICE_SCREENSHOTS")
    if not target:
        return
    folder = Path(target)
    folder.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"] if page.viewport_size else 0
    kind = "narrow" if width < 600 else "desktop"
    page.screenshot(path=str(folder / f"{name}-{kind}.png"), full_page=True)


def next_step(watched: WatchedPage) -> str:
    watched.page.get_by_role("button", name="Next").click()
    watched.page.wait_for_load_state()
    return check_page(watched)


def created_id(service: ServiceProcess, document: dict[str, object]) -> str:
    answer = httpx.post(f"{service.url}/schematics", content=yaml.safe_dump(document), timeout=30)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def extension_names(service: ServiceProcess, version: str) -> list[str]:
    answer = httpx.get(f"{service.url}/version/{version}/extensions/official", timeout=30)
    return sorted(e["name"] for e in answer.json())


def final_links_answer(page: Page, flavor_id: str) -> None:
    hrefs = page.locator("a[href^='/image/']").evaluate_all("els => els.map(e => e.href)")
    assert hrefs
    for href in hrefs:
        assert f"/image/{flavor_id}/" in href
        # HEAD builds (or finds) the asset and answers its headers: 200 means it exists.
        answer = httpx.head(href, timeout=600)
        assert answer.status_code == 200, (href, answer.text)


@pytest.mark.slow
@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
@pytest.mark.parametrize("viewport", [DESKTOP, NARROW], ids=["desktop", "narrow"])
def test_metal_with_two_extensions_and_a_kernel_arg(
    browser: Browser, service: ServiceProcess, javascript: bool, viewport: tuple[int, int]
) -> None:
    two = extension_names(service, "v1.11.3")[:2]
    with new_page(browser, javascript=javascript, width=viewport[0], height=viewport[1]) as w:
        page = w.page
        page.goto(f"{service.url}/")
        assert check_page(w) == "Hardware Type"
        shoot(page, "1-hardware")
        page.get_by_label("Bare-metal Machine").check()
        assert next_step(w) == "Choose Talos Linux Version"
        shoot(page, "2-version")
        page.get_by_label("Talos Linux version").select_option("1.11.3")
        assert next_step(w) == "Machine Architecture"
        shoot(page, "3-architecture")
        page.get_by_label("amd64").check()
        assert next_step(w) == "System Extensions"
        shoot(page, "4-extensions")
        for name in reversed(two):
            page.get_by_label(name, exact=True).check()
        assert next_step(w) == "Customization"
        page.get_by_label("Extra kernel command line arguments").fill("net.ifnames=0")
        shoot(page, "5-customization")
        assert next_step(w) == "Schematic Ready"
        shoot(page, "6-final")
        flavor_id = page.locator("#schematic-id").inner_text()
        expected = created_id(
            service,
            {
                "customization": {
                    "extraKernelArgs": ["net.ifnames=0"],
                    "systemExtensions": {"officialExtensions": two},
                }
            },
        )
        assert flavor_id == expected
        final_url = page.url
        text = page.locator("main").inner_text()
        if javascript and viewport == DESKTOP:
            final_links_answer(page, flavor_id)
    # A bookmark: the same URL in a fresh context gives the same page.
    with new_page(browser, javascript=javascript, width=viewport[0], height=viewport[1]) as w:
        w.page.goto(final_url)
        assert check_page(w) == "Schematic Ready"
        assert w.page.locator("main").inner_text() == text


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_cloud_platform(browser: Browser, service: ServiceProcess, javascript: bool) -> None:
    with new_page(browser, javascript=javascript, width=DESKTOP[0], height=DESKTOP[1]) as w:
        page = w.page
        page.goto(f"{service.url}/")
        page.get_by_label("Cloud Server").check()
        next_step(w)
        page.get_by_label("Talos Linux version").select_option("1.11.3")
        assert next_step(w) == "Cloud Platform"
        shoot(page, "3-cloud-platform")
        page.get_by_label("Amazon Web Services (AWS)", exact=True).check()
        assert next_step(w) == "Machine Architecture"
        page.get_by_label("arm64").check()
        assert next_step(w) == "System Extensions"
        assert next_step(w) == "Customization"
        assert next_step(w) == "Schematic Ready"
        flavor_id = page.locator("#schematic-id").inner_text()
        assert flavor_id == created_id(service, {"customization": {}})
        link = page.get_by_role("link", name="Disk image")
        assert link.get_attribute("href") == f"/image/{flavor_id}/v1.11.3/aws-arm64.raw.xz"


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_sbc_board(browser: Browser, service: ServiceProcess, javascript: bool) -> None:
    overlays = httpx.get(f"{service.url}/version/v1.11.3/overlays/official", timeout=30).json()
    board = overlays[0]
    with new_page(browser, javascript=javascript, width=NARROW[0], height=NARROW[1]) as w:
        page = w.page
        page.goto(f"{service.url}/")
        page.get_by_label("Single Board Computer").check()
        next_step(w)
        page.get_by_label("Talos Linux version").select_option("1.11.3")
        assert next_step(w) == "Single Board Computer"
        shoot(page, "3-board")
        page.get_by_label(board["name"]).check()
        assert next_step(w) == "System Extensions"
        assert next_step(w) == "Customization"
        page.get_by_label("Overlay options (YAML)").fill("configTxtAppend: dtoverlay=vc4\n")
        shoot(page, "5-customization-sbc")
        assert next_step(w) == "Schematic Ready"
        flavor_id = page.locator("#schematic-id").inner_text()
        expected = created_id(
            service,
            {
                "overlay": {
                    "image": board["image"],
                    "name": board["name"],
                    "options": {"configTxtAppend": "dtoverlay=vc4"},
                },
                "customization": {},
            },
        )
        assert flavor_id == expected
        disk = page.get_by_role("link", name="Disk image")
        assert disk.get_attribute("href") == f"/image/{flavor_id}/v1.11.3/metal-arm64.raw.xz"


def test_secure_boot_path(browser: Browser, service: ServiceProcess) -> None:
    with new_page(browser, javascript=True, width=DESKTOP[0], height=DESKTOP[1]) as w:
        page = w.page
        page.goto(f"{service.url}/?target=metal&version=1.11.3")
        assert check_page(w) == "Machine Architecture"
        page.get_by_label("amd64").check()
        page.get_by_label("Secure Boot", exact=True).check()
        next_step(w)
        next_step(w)
        assert next_step(w) == "Schematic Ready"
        flavor_id = page.locator("#schematic-id").inner_text()
        iso = page.get_by_role("link", name="ISO")
        assert iso.get_attribute("href") == f"/image/{flavor_id}/v1.11.3/metal-amd64-secureboot.iso"
        assert "/installer-secureboot/" in page.locator("#installer").inner_text()
        assert page.get_by_role("link", name="Kernel").count() == 0


def test_filter_box_filters_live_with_javascript(browser: Browser, service: ServiceProcess) -> None:
    names = extension_names(service, "v1.11.3")
    needle = names[0].split("/")[-1]
    with new_page(browser, javascript=True, width=DESKTOP[0], height=DESKTOP[1]) as w:
        page = w.page
        page.goto(f"{service.url}/?target=metal&version=1.11.3&arch=amd64")
        assert check_page(w) == "System Extensions"
        page.get_by_label("Filter extensions").fill(needle)
        visible = page.locator("#extension-list li:visible input[type=checkbox]")
        shown = visible.evaluate_all("els => els.map(e => e.value)")
        assert shown and all(needle in name for name in shown)
        assert len(shown) < len(names)
        assert page.url.endswith("arch=amd64")  # filtered in place, no navigation
        assert w.errors == []


def test_filter_box_without_javascript_submits(browser: Browser, service: ServiceProcess) -> None:
    names = extension_names(service, "v1.11.3")
    needle = names[-1].split("/")[-1]
    with new_page(browser, javascript=False, width=NARROW[0], height=NARROW[1]) as w:
        page = w.page
        page.goto(f"{service.url}/?target=metal&version=1.11.3&arch=amd64")
        page.get_by_label("Filter extensions").fill(needle)
        page.get_by_role("button", name="Filter").click()
        page.wait_for_load_state()
        assert check_page(w) == "System Extensions"
        shown = page.locator("#extension-list input[type=checkbox]").evaluate_all(
            "els => els.map(e => e.value)"
        )
        assert shown and all(needle in name for name in shown)


def test_bad_query_rerenders_with_a_message(browser: Browser, service: ServiceProcess) -> None:
    with new_page(browser, javascript=True, width=NARROW[0], height=NARROW[1]) as w:
        response = w.page.goto(f"{service.url}/?target=metal&version=0.0.1")
        assert response is not None and response.status == 400
        assert w.page.locator("h1").inner_text() == "Choose Talos Linux Version"
        assert "v0.0.1" in w.page.get_by_role("alert").inner_text()
        # The 400 itself is logged by Chromium as a failed resource; nothing else may be.
        assert all("400" in e for e in w.errors)


def test_progress_view_reaches_ready_for_a_cold_asset(
    browser: Browser, service: ServiceProcess
) -> None:
    query = "target=metal&version=1.11.3&arch=amd64&extensions=-&cmdline-set=true"
    with new_page(browser, javascript=True, width=DESKTOP[0], height=DESKTOP[1]) as w:
        page = w.page
        page.goto(f"{service.url}/?{query}&cmdline=ui.progress%3Dcold")
        assert check_page(w) == "Schematic Ready"
        link = page.get_by_role("link", name="UKI")
        status = page.locator("li", has=link).locator(".progress")
        seen: list[str] = []

        def record(text: str) -> None:
            seen.append(text)

        page.expose_function("recordStatus", record)
        status.evaluate(
            "el => new MutationObserver(() => window.recordStatus(el.textContent))"
            ".observe(el, {childList: true, characterData: true, subtree: true})"
        )
        with page.expect_download(timeout=300_000) as download:
            link.click()
        assert status.inner_text() == "ready"
        assert seen[0] == "queued" and "building" in seen and seen[-1] == "ready"
        assert download.value.suggested_filename == "metal-amd64-uki.efi"
        assert w.errors == []
