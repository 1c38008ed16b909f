"""Debian's chromium driven by Playwright, for the tests that check a page by what it draws.
Playwright's own browser download is not used: it needs a host this machine cannot reach."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.system_packages import ensure

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """Debian's chromium, installed here if we may (root with apt-get), else a skip."""
    if not ensure(Path(CHROMIUM).exists, "chromium"):
        pytest.skip("Debian's chromium is not installed and could not be installed here")
    return CHROMIUM


@contextmanager
def launched() -> Iterator[Any]:
    """A headless chromium (Playwright's Browser), closed on the way out."""
    executable = chromium()
    from playwright.sync_api import sync_playwright  # only the browser tests pay its import

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser: Any, url: str) -> tuple[Any, Any, list[str], list[str]]:
    """A new context and page at `url`, with the console errors, page errors and requests it
    makes from then on: (context, page, errors, requests)."""
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url)
    return context, page, errors, requests
