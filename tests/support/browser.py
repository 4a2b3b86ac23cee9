"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by Playwright
(``playwright install`` cannot download a browser here), reaching nothing beyond loopback.

The storefront's and the admin pages' browser tests both launch it from here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REQUIRE_BROWSER = os.environ.get("REQUIRE_BROWSER") == "1"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
#: Headless, and nothing beyond loopback: no background updates, sync, QUIC or name lookups.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def missing(what: str) -> None:
    """Skip, or fail under REQUIRE_BROWSER=1 (scripts/test sets it, hence CI)."""
    if REQUIRE_BROWSER:
        pytest.fail(f"{what} and REQUIRE_BROWSER=1")
    pytest.skip(f"{what} (REQUIRE_BROWSER=1 makes this a failure)")


@contextmanager
def chromium() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package is not installed")
    if not Path(CHROMIUM).is_file():
        missing(f"chromium not found at {CHROMIUM}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
