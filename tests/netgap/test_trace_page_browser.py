"""The trace page in a real browser (Debian's chromium driven by Playwright), reached from the
web page's own trace link."""

import math
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from netgap.address import Address
from netgap.fault.spec import Faults
from netgap.model import CLIENT, INTERNAL, SERVER, Span
from netgap.otlp_json import spans_from_json
from tests.browser import launched, open_page
from tests.harness import api_tier, running, web_tier
from tests.netgap.fault.conftest import running_proxy
from tests.netgap.pixels import Segment, check_line, columns, image, rgb
from tests.netgap.stack import collector, otlp_url, query_url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched() as b:
        yield b


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


@pytest.fixture(scope="module")
def faulted_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """As `stack`, with the fault proxy between the tiers adding 100 ms each way."""
    logdir = tmp_path_factory.mktemp("browser-faulted")
    with collector(logdir / "traces.db") as c:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_url(c), "OTEL_BSP_SCHEDULE_DELAY": "100"}
        api = api_tier(logdir, None, **env)
        with running(api):
            port = int(urlsplit(api.url).port or 0)
            upstream = Address("127.0.0.1", port)
            with running_proxy(upstream, Faults(latency_s=0.1)) as proxy:
                web = web_tier(logdir, None, f"http://{proxy.address}/", **env)
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


def test_recent_traces_page_plots_one_mark_per_listed_trace_where_it_belongs(
    browser: Any, stack: tuple[str, str]
) -> None:
    """Its scatter plot, as drawn: a dot of the gap's colour at each listed trace's start and
    remote time (log scale), and nothing of that colour anywhere else in the plot."""
    web_url, query = stack
    for _ in range(6):  # a few more traces, spread out in time
        traced_request(web_url)
        time.sleep(0.3)
    time.sleep(0.5)  # the batch processors' delay
    context, page, errors, _ = open_page(browser, f"{query}/?lookback=10m")
    try:
        page.set_viewport_size(VIEWPORT)
        cells = page.locator("#traces tbody tr")
        listed = [
            (
                cells.nth(i).get_attribute("data-trace"),
                page.locator(
                    f"tr[data-trace='{cells.nth(i).get_attribute('data-trace')}'] td"
                ).first.inner_text(),
                float(cells.nth(i).locator("td[data-remote-ms]").get_attribute("data-remote-ms")),
            )
            for i in range(cells.count())
        ]
        assert len(listed) >= 6, page.inner_text("body")[:3000]
        spans = {t: stored_spans(query, t) for t, _, _ in listed}
        starts = {t: min(s.start_ns for s in trace) for t, trace in spans.items()}
        box = page.locator("#scatter").bounding_box()
        picture = image(page.screenshot(full_page=True))
        colour = css_colours(page)["gap"]
        expected = scatter_positions(starts, {t: r for t, _, r in listed}, box)
        problems = []
        for trace_id, (x, y) in expected.items():
            near = columns(picture, y, x - 2, x + 2, colour)
            if not near:
                problems.append(f"no mark for {trace_id} at ({x:.0f}, {y:.0f})")
        stray = [
            (x, y)
            for y in range(int(box["y"]), int(box["y"] + box["height"]))
            for x in columns(picture, y, box["x"], box["x"] + box["width"], colour)
            if not any(abs(x - ex) <= 6 and abs(y - ey) <= 6 for ex, ey in expected.values())
        ]
        assert not problems, "\n".join(problems)
        assert not stray, f"marks where no trace is: {stray[:5]}"
        assert errors == []
    finally:
        context.close()


def scatter_positions(
    starts: dict[str, int], remote_ms: dict[str, float], box: dict[str, float]
) -> dict[str, tuple[float, float]]:
    """Where each trace's dot belongs: x linear in its start across the listed traces' span,
    y by log10 of its remote time between the decades around them (the plot's margins:
    64 px left, 40 right, 12 top, 30 bottom)."""
    lo_t, hi_t = min(starts.values()), max(starts.values())
    logs = {t: math.log10(max(ms * 1e6, 1000)) for t, ms in remote_ms.items()}
    lo_y, hi_y = math.floor(min(logs.values())), math.ceil(max(logs.values()))
    hi_y += hi_y == lo_y
    width, height = box["width"] - 64 - 40, box["height"] - 12 - 30
    return {
        t: (
            box["x"] + 64 + width * (starts[t] - lo_t) / (hi_t - lo_t),
            box["y"] + 12 + height * (hi_y - logs[t]) / (hi_y - lo_y),
        )
        for t in starts
    }


# -- the picture: bars where the spans put them ---------------------------------------------

VIEWPORT = {"width": 1600, "height": 1000}
COLOURS = ("web", "client", "api", "other", "gap", "connect", "request", "waiting", "response",
           "rest", "mark")  # fmt: skip
KIND_COLOUR = {SERVER: "web", CLIENT: "client", INTERNAL: "api"}
PHASE_COLOUR = {"other": "rest"}  # the phase "other" is drawn in --rest
MIN_SHARE = 0.002  # the page draws no bar thinner than 0.2% of the timeline


def traced_request(web_url: str) -> str:
    """One request to the web tier; its trace id (from its traceresponse header)."""
    response = httpx.get(web_url, timeout=30)
    assert response.status_code == 200
    return response.headers["traceresponse"].split("-")[1]


def stored_spans(query: str, trace_id: str) -> list[Span]:
    """The trace as the query API gives it: what the page is drawn from, read the other way."""
    wait_for_spans(query, trace_id, 5)
    return spans_from_json(httpx.get(f"{query}/api/v3/traces/{trace_id}").json())


def css_colours(page: Any) -> dict[str, tuple[int, int, int]]:
    values = page.evaluate(
        "names => { const s = getComputedStyle(document.documentElement);"
        " return names.map(n => s.getPropertyValue('--' + n)); }",
        list(COLOURS),
    )
    return {name: rgb(value) for name, value in zip(COLOURS, values, strict=True)}


def gap_pieces(client: Span, server: Span) -> list[tuple[str, int, int]]:
    """(phase, start, end) of a call's untraced time, as the trace page is to draw it: the
    connection phases from the client's events (waiting split around the server span), or
    without them the time before and after the server span."""
    times = {e.name: e.time_ns for e in client.events}

    def around(lo: int, hi: int, untraced: int) -> list[tuple[int, int]]:
        before, after = server.start_ns - lo, hi - server.end_ns
        if before < 0 or after < 0 or before + after != untraced:
            before = untraced // 2
            after = untraced - before
        return [(lo, lo + before), (hi - after, hi)]

    if not {"request sent", "first byte", "body done"} <= times.keys():
        untraced = client.duration_ns - server.duration_ns
        return [("gap", lo, hi) for lo, hi in around(client.start_ns, client.end_ns, untraced)]
    connected = times.get("connect", client.start_ns)
    sent, first, done = times["request sent"], times["first byte"], times["body done"]
    waiting = around(sent, first, first - sent - server.duration_ns)
    return [
        ("connect", client.start_ns, connected),
        ("request", connected, sent),
        ("waiting", *waiting[0]),
        ("waiting", *waiting[1]),
        ("response", first, done),
        ("other", done, client.end_ns),
    ]


def bar(what: str, lo: int, hi: int, origin: int, horizon: int, box: dict[str, float],
        colour: tuple[int, int, int]) -> Segment:  # fmt: skip
    width = box["width"]
    left = box["x"] + width * (lo - origin) / horizon
    return Segment(what, left, left + width * max((hi - lo) / horizon, MIN_SHARE), colour)


def check_waterfall(page: Any, spans: list[Span]) -> list[str]:
    """Everything wrong with the waterfall's picture: each span's bar, each gap's pieces in
    their colours, each CLIENT span's phase marks (empty: all drawn where they belong)."""
    picture = image(page.screenshot(full_page=True))
    colour = css_colours(page)
    origin = min(s.start_ns for s in spans)
    horizon = max(s.end_ns for s in spans) - origin
    by_id = {s.span_id: s for s in spans}
    problems: list[str] = []
    for span in spans:
        box = page.locator(f"tr[data-span='{span.span_id}'] .timeline").bounding_box()
        y = box["y"] + box["height"] / 2
        shade = colour[KIND_COLOUR.get(span.kind, "other")]
        own = bar(f"span {span.name}", span.start_ns, span.end_ns, origin, horizon, box, shade)
        right = box["x"] + box["width"]
        problems += check_line(picture, y, box["x"], right, [own], on_top=colour["mark"])
        marks = [e for e in span.events if e.name in PHASE_EVENTS] if span.kind == CLIENT else []
        drawn = columns(picture, y, box["x"], box["x"] + box["width"], colour["mark"])
        for event in marks:
            x = box["x"] + box["width"] * (event.time_ns - origin) / horizon
            if not any(abs(c - x) <= 3 for c in drawn):
                problems.append(f"no mark for {event.name} at {x:.0f} px (marks at {drawn})")
    calls = [(by_id[s.parent_span_id], s) for s in spans if s.parent_span_id in by_id]
    calls = [(c, s) for c, s in calls if c.kind == CLIENT and c.service != s.service]
    gaps = page.locator("tr[data-gap] .timeline")
    assert gaps.count() == len(calls)
    for index, (client, server) in enumerate(calls):
        box = gaps.nth(index).bounding_box()
        pieces = [
            bar(f"gap {phase}", lo, hi, origin, horizon, box,
                colour[PHASE_COLOUR.get(phase, phase)])
            for phase, lo, hi in gap_pieces(client, server)
            if hi > lo
        ]  # fmt: skip
        y = box["y"] + box["height"] / 2
        problems += check_line(picture, y, box["x"], box["x"] + box["width"], pieces)
    return problems


PHASE_EVENTS = ("connect", "request sent", "first byte", "body done")


def test_the_trace_page_draws_every_bar_and_the_gap_where_the_spans_put_them(
    browser: Any, stack: tuple[str, str]
) -> None:
    web_url, query = stack
    trace_id = traced_request(web_url)
    spans = stored_spans(query, trace_id)
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.goto(f"{query}/trace/{trace_id}")
        problems = check_waterfall(page, spans)
        assert not problems, "\n".join(problems)
    finally:
        context.close()


def kernel_line(page: Any) -> dict[str, Any]:
    """What the page says under the gap row: each end's testimony (as its data attributes
    carry it, and as it reads), and the diagnosis' sentence."""
    line = page.locator("tr[data-kernel]")
    assert line.count() == 1
    ends = line.locator(".end[data-role]")
    return {
        "ends": {
            ends.nth(i).get_attribute("data-role"): {
                "service": ends.nth(i).get_attribute("data-service"),
                "srtt_us": int(ends.nth(i).get_attribute("data-srtt-us")),
                "min_rtt_us": int(ends.nth(i).get_attribute("data-min-rtt-us")),
                "retransmits": int(ends.nth(i).get_attribute("data-retransmits")),
                "text": ends.nth(i).inner_text(),
            }
            for i in range(ends.count())
        },
        "reading": line.locator(".diagnosis").inner_text(),
    }


def marks(page: Any) -> dict[str, str]:
    found = page.locator(".mark[data-event]")
    return {
        found.nth(i).get_attribute("data-event"): found.nth(i).get_attribute("title")
        for i in range(found.count())
    }


@pytest.mark.parametrize("which", ["healthy", "through the fault proxy"])
def test_phase_marks_and_the_kernel_line_carry_the_spans_own_values(
    browser: Any, stack: tuple[str, str], faulted_stack: tuple[str, str], which: str
) -> None:
    web_url, query = stack if which == "healthy" else faulted_stack
    trace_id = traced_request(web_url)
    spans = stored_spans(query, trace_id)
    client = next(s for s in spans if s.kind == CLIENT)
    served = next(s for s in spans if s.parent_span_id == client.span_id)
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.goto(f"{query}/trace/{trace_id}")
        problems = check_waterfall(page, spans)
        assert not problems, "\n".join(problems)
        events = {e.name: e.time_ns for e in client.events if e.name in PHASE_EVENTS}
        assert {"request sent", "first byte", "body done"} <= events.keys()
        assert marks(page) == {
            name: f"{name} at +{(at - client.start_ns) / 1e6:.3f} ms" for name, at in events.items()
        }
        said = kernel_line(page)
        for role, span in (("caller", client), ("callee", served)):
            end = said["ends"][role]
            tcp = {k.removeprefix("netgap.tcp."): v for k, v in span.attributes.items()}
            assert end["service"] == span.service
            assert (end["srtt_us"], end["min_rtt_us"], end["retransmits"]) == (
                tcp["srtt_us"], tcp["min_rtt_us"], tcp["retransmits"]
            )  # fmt: skip
            assert f"srtt {tcp['srtt_us'] / 1000:.3f} ms" in end["text"]
            assert f"min_rtt {tcp['min_rtt_us'] / 1000:.3f} ms" in end["text"]
        phases = page.locator("tr[data-gap] .bar[data-phase]")
        drawn = {phases.nth(i).get_attribute("data-phase") for i in range(phases.count())}
        assert {"request", "response"} <= drawn  # waiting is ~0 on a healthy loopback
        if which == "healthy":
            assert client.duration_ns - served.duration_ns < 100_000_000
        else:
            # 100 ms each way, in userspace between two healthy loopback connections: the
            # kernel at neither end sees it, and the reading says so
            assert client.duration_ns - served.duration_ns >= 200_000_000
            assert "waiting" in drawn
            assert "userspace hop" in said["reading"], said["reading"]
            assert "webtier->apitier remote +" in said["reading"]
    finally:
        context.close()
