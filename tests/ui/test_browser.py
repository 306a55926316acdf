"""The browser harness end to end: real Chromium against a real uvicorn server on loopback.

Page one is clean (labelled controls, no console errors); page two is broken on purpose, so the
test also proves that the checks can fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tests.support.browser import new_page, serve_app, unlabelled_controls

GOOD = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Harness check</title><link rel="icon" href="data:,"></head>
<body>
<h1>Harness check</h1>
<form method="get" action="/">
  <label for="name">Name</label> <input id="name" name="name" type="text">
  <fieldset><legend>Arch</legend>
    <label><input type="radio" name="arch" value="amd64" checked> amd64</label>
    <label><input type="radio" name="arch" value="arm64"> arm64</label>
  </fieldset>
  <input type="hidden" name="step" value="1">
  <button type="submit">Next</button>
</form>
</body>
</html>
"""

BAD = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Broken</title><link rel="icon" href="data:,"></head>
<body>
<h1>Broken</h1>
<input name="nolabel" type="text">
<script>console.error("deliberate failure");</script>
</body>
</html>
"""


async def good(request: Request) -> Response:
    return HTMLResponse(GOOD)


async def bad(request: Request) -> Response:
    return HTMLResponse(BAD)


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    app = Starlette(routes=[Route("/", good), Route("/bad", bad)])
    with serve_app(app) as url:
        yield url


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "nojs"])
def test_clean_page_has_no_errors_and_no_unlabelled_controls(
    browser: Browser, site: str, javascript: bool
) -> None:
    with new_page(browser, javascript=javascript, width=1280, height=800) as watched:
        response = watched.page.goto(f"{site}/")
        assert response is not None and response.ok
        assert watched.page.title() == "Harness check"
        assert watched.page.locator("html").get_attribute("lang") == "en"
        assert watched.page.locator("h1").count() == 1
        assert unlabelled_controls(watched.page) == []
        assert watched.errors == []


def test_broken_page_reports_console_error_and_unlabelled_control(
    browser: Browser, site: str
) -> None:
    with new_page(browser, javascript=True, width=1280, height=800) as watched:
        watched.page.goto(f"{site}/bad")
        assert unlabelled_controls(watched.page) == ['<input type="text" name="nolabel">']
        assert len(watched.console_errors) == 1
        assert "deliberate failure" in watched.console_errors[0]
    # With JavaScript off the script does not run, so only the unlabelled input is reported.
    with new_page(browser, javascript=False, width=360, height=740) as watched:
        watched.page.goto(f"{site}/bad")
        assert unlabelled_controls(watched.page) == ['<input type="text" name="nolabel">']
        assert watched.errors == []


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (360, 740)])
def test_screenshot(browser: Browser, site: str, tmp_path: Path, width: int, height: int) -> None:
    with new_page(browser, javascript=True, width=width, height=height) as watched:
        watched.page.goto(f"{site}/")
        path = tmp_path / f"page-{width}x{height}.png"
        watched.page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 1000
    assert watched.errors == []
