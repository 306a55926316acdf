"""Drive Debian's real Chromium, headless, through Playwright's sync API — for the web UI tests.

Playwright's own browser download cannot work here (no network but the package registries), so
``launch_chromium`` always starts ``/usr/bin/chromium``, installed by ``scripts/setup``. We run
as root, hence ``--no-sandbox``; the background-networking flags keep Chromium from calling home
on the closed network (update checks, sync, QUIC probes).

``new_page`` opens a page in a fresh context (JavaScript on or off, a given viewport) and collects
its console errors and uncaught page errors, so a test can assert there were none.
``unlabelled_controls`` lists every visible form control without an accessible name.
``serve_app`` runs an ASGI app with uvicorn on a free loopback port in a background thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright

from tests.support.registry import free_port

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "ChromiumMissing",
    "WatchedPage",
    "launch_chromium",
    "new_page",
    "require_chromium",
    "serve_app",
    "unlabelled_controls",
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class ChromiumMissing(RuntimeError):
    """Debian's chromium is not installed where the harness expects it."""


def require_chromium() -> None:
    """Raise ``ChromiumMissing``, saying to run scripts/setup, unless ``/usr/bin/chromium`` runs."""
    if not os.access(CHROMIUM, os.X_OK):
        raise ChromiumMissing(
            f"{CHROMIUM} not found: run scripts/setup to install Debian's chromium "
            "(Playwright's own browser download cannot work here)"
        )


@contextmanager
def launch_chromium() -> Iterator[Browser]:
    """Start headless ``/usr/bin/chromium`` via Playwright; close it (and Playwright) on exit."""
    require_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class WatchedPage:
    """A page in its own browser context, with the errors it reported so far."""

    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        """Console errors and uncaught exceptions together."""
        return [*self.console_errors, *self.page_errors]

    def close(self) -> None:
        self.page.context.close()

    def __enter__(self) -> WatchedPage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def new_page(browser: Browser, *, javascript: bool, width: int, height: int) -> WatchedPage:
    """A page in a fresh context with JavaScript on or off and a ``width`` x ``height`` viewport,
    whose console errors and page errors are collected. Close it (or use it in ``with``)."""
    context = browser.new_context(
        java_script_enabled=javascript, viewport={"width": width, "height": height}
    )
    watched = WatchedPage(context.new_page())

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            location = message.location
            watched.console_errors.append(f"{message.text} ({location.get('url', '')})")

    def on_page_error(error: Error) -> None:
        watched.page_errors.append(f"{error.name}: {error.message}")

    watched.page.on("console", on_console)
    watched.page.on("pageerror", on_page_error)
    return watched


# Runs in the page; does not need the page's own JavaScript to be enabled (Playwright evaluates in
# an isolated world even when the context disables scripts).
_UNLABELLED_JS = """
() => {
  const text = (node) => (node ? (node.textContent || "").trim() : "");
  const visible = (el) => {
    const style = getComputedStyle(el);
    return el.getClientRects().length > 0 && style.visibility !== "hidden"
      && style.display !== "none";
  };
  const named = (el) => {
    const labelledby = (el.getAttribute("aria-labelledby") || "").split(/\\s+/).filter(Boolean);
    if (labelledby.some((id) => text(document.getElementById(id)))) return true;
    if ((el.getAttribute("aria-label") || "").trim()) return true;
    if (Array.from(el.labels || []).some((label) => text(label))) return true;
    const type = (el.getAttribute("type") || "").toLowerCase();
    if (el.tagName === "BUTTON") return text(el) !== "";
    if (el.tagName === "INPUT" && ["submit", "reset", "button"].includes(type)) {
      return (el.getAttribute("value") || "").trim() !== "" || type !== "button";
    }
    if (el.tagName === "INPUT" && type === "image") return (el.getAttribute("alt") || "").trim();
    return false;
  };
  const describe = (el) => {
    const attrs = ["type", "name", "id"].filter((a) => el.hasAttribute(a))
      .map((a) => `${a}="${el.getAttribute(a)}"`);
    return `<${el.tagName.toLowerCase()}${attrs.length ? " " + attrs.join(" ") : ""}>`;
  };
  return Array.from(document.querySelectorAll(
    "input:not([type=hidden]), select, textarea, button"
  )).filter((el) => visible(el) && !named(el)).map(describe);
}
"""


def unlabelled_controls(page: Page) -> list[str]:
    """Every visible input, select, textarea and button that has no accessible name (from
    ``aria-labelledby``, ``aria-label``, a ``<label for>`` or wrapping ``<label>``, a button's
    text, or a submit/reset input's value), each described like ``<input type="text" name="q">``.
    A radio or checkbox needs its own label; a fieldset's legend names the group, not the box."""
    result: Any = page.evaluate(_UNLABELLED_JS)
    return [str(item) for item in result]


@contextmanager
def serve_app(app: Any, timeout: float = 10.0) -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn on a free loopback port in a background thread and
    yield its base URL; stop the server and join the thread on exit."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
