"""Fixtures for the browser tests: one headless Debian Chromium per test module.

Module scope, not session scope: Playwright's sync API keeps an asyncio loop running while it is
open, and the other modules of the same xdist worker run their own loops (``asyncio.run``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.support.browser import ChromiumMissing, launch_chromium, require_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless ``/usr/bin/chromium`` via Playwright. Fails (never skips) when it is missing."""
    try:
        require_chromium()
    except ChromiumMissing as exc:
        pytest.fail(str(exc))
    with launch_chromium() as launched:
        yield launched
