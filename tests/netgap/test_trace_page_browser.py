"""The trace page in a real browser (Debian's chromium driven by Playwright), reached from the
web page's own trace link."""

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.harness import api_tier, running, web_tier
from tests.netgap.stack import collector, otlp_url, query_url

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
    if not Path(CHROMIUM).exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"],
            capture_output=True,
            timeout=600,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed and could not be installed here")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    logdir = tmp_path_factory.mktemp("browser")
    with collector(logdir / "traces.db") as c:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_url(c), "OTEL_BSP_SCHEDULE_DELAY": "100"}
        api = api_tier(logdir, None, **env)
        with running(api):
            web = web_tier(logdir, None, f"{api.url}/", JAEGER_UI_URL=query_url(c), **env)
            with running(web):
                yield f"{web.url}/", query_url(c)


def wait_for_spans(query: str, trace_id: str, count: int) -> None:
    """Until the batch processors have delivered the trace (polled outside the browser, so
    the page is loaded once)."""
    for _ in range(100):
        found = httpx.get(f"{query}/api/v3/traces/{trace_id}")
        if found.status_code == 200 and found.text.count('"spanId"') >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"trace {trace_id} did not arrive")


def open_page(browser: Any, url: str) -> tuple[Any, Any, list[str], list[str]]:
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url)
    return context, page, errors, requests


def test_trace_link_leads_to_a_waterfall_with_the_gap(browser: Any, stack: tuple[str, str]) -> None:
    web_url, query = stack
    context, page, errors, requests = open_page(browser, web_url)
    try:
        assert "Hello, from the API tier!" in page.inner_text("#api-body")
        link = page.get_attribute("a[href*='/trace/']", "href")
        assert link is not None
        assert link.startswith(f"{query}/trace/")
        wait_for_spans(query, link.rsplit("/", 1)[1], 5)
        response = page.goto(link)
        assert response is not None
        assert response.status == 200
        assert page.locator("tr[data-span]").count() == 5
        gap = page.locator("tr[data-gap]")
        assert gap.count() == 1
        assert "remote calls webtier->apitier" in gap.inner_text()
        assert "webtier->apitier remote" in page.inner_text("#split")
        page.click("tr[data-span] summary")  # attributes open on click
        assert page.locator("details[open] dl").count() == 1
        hosts = {urlsplit(u).hostname for u in requests}
        assert hosts <= {"127.0.0.1"}, requests
        assert errors == []
    finally:
        context.close()


@pytest.mark.parametrize("trace_id", ["0" * 31 + "1", "not-a-trace-id", "f" * 40])
def test_unknown_or_malformed_trace_id_is_a_404_page(
    browser: Any, stack: tuple[str, str], trace_id: str
) -> None:
    _, query = stack
    context = browser.new_context()
    try:
        page = context.new_page()
        response = page.goto(f"{query}/trace/{trace_id}")
        assert response is not None
        assert response.status == 404
        assert "Not found" in page.inner_text("h1")
    finally:
        context.close()


def test_recent_traces_page_lists_the_trace(browser: Any, stack: tuple[str, str]) -> None:
    web_url, query = stack
    context, page, errors, _ = open_page(browser, web_url)
    try:
        # This page's own trace, once stored: not one another test happened to leave.
        link = page.get_attribute("a[href*='/trace/']", "href")
        assert link is not None
        trace_id = link.rsplit("/", 1)[1]
        wait_for_spans(query, trace_id, 5)
        page.goto(f"{query}/")
        assert page.locator(f"#traces a[href='/trace/{trace_id}']").count() == 1
        assert errors == []
    finally:
        context.close()
