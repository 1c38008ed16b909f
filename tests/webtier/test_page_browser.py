"""The web tier's page in a real browser (Debian's chromium driven by Playwright): the API
tier's answer is on the page, the trace link is `JAEGER_UI_URL/trace/<32 hex>` naming the very
trace the collector stored for that page load, and the page logs no console error.

Both tiers are real processes exporting to a real collector (`netgap collect`, in this process)
on loopback; the browser is the only client of the web tier, so the collector holds exactly one
trace of its page.
"""

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from netgap.collector.server import Collector
from netgap.model import Span
from tests.browser import launched
from tests.harness import SERVER, api_tier, running, web_tier
from tests.netgap.stack import collector, otlp_url

# A test value, not the collector: the href must come from this setting and nothing else. The
# browser never follows the link (.test is reserved, RFC 2606), so nothing is fetched there.
JAEGER_UI_URL = "http://jaeger-ui.test:16686/under-test"
TRACE_LINK = re.compile(re.escape(JAEGER_UI_URL) + r"/trace/([0-9a-f]{32})")
API_BODY = "Hello, from the API tier!"
SPANS_PER_PAGE = 5  # webtier SERVER + CLIENT, apitier SERVER + api-handler + fast-query


@dataclass(frozen=True)
class Stack:
    web_url: str
    collector: Collector


@dataclass
class Visit:
    """One page load and what the browser saw around it."""

    status: int
    traceresponse: str
    errors: list[str]
    requests: list[str]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched() as b:  # installs Debian's chromium if it may, else skips saying why
        yield b


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """Fresh per test, so that the browser's page load is the collector's only web trace."""
    with collector(tmp_path / "traces.db") as c:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_url(c), "OTEL_BSP_SCHEDULE_DELAY": "100"}
        api = api_tier(tmp_path, None, **env)
        with running(api):
            web = web_tier(tmp_path, None, f"{api.url}/", JAEGER_UI_URL=JAEGER_UI_URL, **env)
            with running(web):
                yield Stack(f"{web.url}/", c)


def visit(page: Any, url: str) -> Visit:
    """Listeners first, then the load: an error logged while the page loads counts too."""
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    response = page.goto(url, wait_until="load")
    assert response is not None
    return Visit(response.status, response.headers.get("traceresponse", ""), errors, requests)


def stored_trace(c: Collector, trace_id: str) -> list[Span]:
    """The trace as the collector stored it, once all its spans are in (the tiers export in
    batches every 100 ms; bounded wait)."""
    for _ in range(100):
        spans = c.store.trace(trace_id)
        if len(spans) >= SPANS_PER_PAGE:
            return spans
        time.sleep(0.05)
    raise AssertionError(f"trace {trace_id}: {len(c.store.trace(trace_id))} spans stored in 5 s")


@pytest.mark.timeout(120)
def test_the_page_shows_the_api_answer_and_links_the_stored_trace(
    browser: Any, stack: Stack
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        seen = visit(page, stack.web_url)
        assert seen.status == 200
        body = page.locator("#api-body")
        assert body.is_visible()
        assert body.inner_text() == API_BODY
        links = page.locator("a[href*='/trace/']")
        assert links.count() == 1
        href = links.get_attribute("href")
        match = TRACE_LINK.fullmatch(href or "")
        assert match, f"trace link {href!r} is not {JAEGER_UI_URL}/trace/<32 hex>"
        trace_id = match[1]
        # the page's own response names the same trace (W3C traceresponse: 00-<id>-<span>-<f>)
        assert seen.traceresponse.split("-")[1:2] == [trace_id], seen.traceresponse

        spans = stored_trace(stack.collector, trace_id)
        assert len(spans) == SPANS_PER_PAGE
        assert {s.service for s in spans} == {"webtier", "apitier"}
        (root,) = [s for s in spans if not s.parent_span_id]
        assert (root.service, root.kind, root.name) == ("webtier", SERVER, "GET /")
        # that trace is this browser's page load: its user agent, and no other page was served
        assert "HeadlessChrome" in str(root.attributes.get("user_agent.original")), root
        recent = stack.collector.store.recent_traces(10, service="webtier")
        assert [t.trace_id for t in recent] == [trace_id]

        assert seen.errors == []
        assert {urlsplit(u).hostname for u in seen.requests} == {"127.0.0.1"}, seen.requests
    finally:
        context.close()
