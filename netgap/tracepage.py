"""The trace pages `netgap collect` serves on its query port, for people with no Jaeger at hand:
`GET /` (recent traces, each with its split) and `GET /trace/{trace_id}` (Jaeger UI's path, so
one JAEGER_UI_URL works for both): a waterfall that draws each remote-calls gap as its own bar.

Server-rendered HTML and plain CSS: no script, no external asset, works offline.
"""

import math
import re
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Route

from netgap.breakdown import PHASES, TraceBreakdown, break_down, connection_phases, edge_name
from netgap.collector.records import TraceQuery
from netgap.model import CLIENT, KIND_NAMES, Span
from netgap.report import clock
from netgap.svg import Linear
from netgap.trace_reading import KernelEnd, kernel_end, reading
from netgap.tracesearch import SCAN, Found, Search, SearchError, found, parse_search, scatter

if TYPE_CHECKING:
    from netgap.collector.store import Store

_env = Environment(
    loader=PackageLoader("netgap", "templates"),
    autoescape=select_autoescape(default=True),
    auto_reload=False,
)
_env.filters["clock"] = lambda ns: clock(ns)
_env.globals["zip"] = zip
_env.globals["phase_titles"] = {
    "gap": "untraced",
    "connect": "connect",
    "request": "request (sending it)",
    "waiting": "waiting (network + the callee's untraced work)",
    "response": "response (its body arriving)",
    "other": "other (after the body)",
}
_env.globals["phase_order"] = PHASES


PHASE_EVENTS = ("connect", "request sent", "first byte", "body done")


@dataclass(frozen=True)
class Mark:
    """A connection-phase event on a CLIENT span's bar."""

    name: str
    at_ms: float  # after the span's start
    offset_ns: int  # on the waterfall
    left_pct: float = 0.0


@dataclass
class Row:
    """One bar of the waterfall: a span, or the remote-calls gap of an edge."""

    label: str
    service: str
    offset_ns: int
    duration_ns: int
    depth: int
    kind: str
    left_pct: float = 0.0
    width_pct: float = 0.0
    span: Span | None = None
    # gap bars: (offset, duration) in ns, what each is (a phase of PHASES, or "gap" where the
    # call carried no phase events), and as (left%, width%) of the waterfall
    legs_ns: list[tuple[int, int]] = field(default_factory=list)
    leg_phases: list[str] = field(default_factory=list)
    legs: list[tuple[float, float]] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, float]] = field(default_factory=list)  # (name, offset ms)
    marks: list[Mark] = field(default_factory=list)
    error: bool = False
    # gap rows: the kernel's testimony at both ends and the diagnosis' reading of the call
    kernel: list[KernelEnd] = field(default_factory=list)
    reading: str = ""


def split_text(breakdown: TraceBreakdown | None) -> list[tuple[str, float]]:
    if breakdown is None:
        return []
    return [(name, ns / 1e6) for name, ns in breakdown.components().items()]


def trace_rows(
    spans: Sequence[Span], breakdown: TraceBreakdown | None = None
) -> tuple[list[Row], int]:
    """The waterfall's rows in tree order, and the time it spans (ns). `breakdown`: the
    trace's (break_down's), when the caller has it already."""
    breakdown = breakdown or break_down(spans)
    by_id = {s.span_id: s for s in spans}
    children: dict[str, list[Span]] = defaultdict(list)
    for s in by_id.values():
        children[s.parent_span_id if s.parent_span_id in by_id else ""].append(s)
    for kids in children.values():
        kids.sort(key=lambda s: (s.start_ns, s.span_id))
    origin = min(s.start_ns for s in by_id.values())
    horizon = max(s.end_ns for s in by_id.values()) - origin or 1
    rows: list[Row] = []

    def visit(span: Span, depth: int) -> None:
        rows.append(_span_row(span, depth, origin))
        for child in children.get(span.span_id, []):
            if span.kind == CLIENT and child.service != span.service:
                rows.append(_gap_row(span, child, depth + 1, origin, breakdown))
            visit(child, depth + 1)

    for root in children.get("", []):
        visit(root, 0)
    # the waterfall's time axis, in percent of its width (a bar at least 0.2% wide)
    waterfall = Linear(0, horizon, clamp=False)

    def pct(ns: int, least: float = -math.inf) -> float:
        return max(100 * waterfall.fraction(ns), least)

    for row in rows:
        row.left_pct = pct(row.offset_ns)
        row.width_pct = pct(row.duration_ns, 0.2)
        row.legs = [(pct(left), pct(width, 0.2)) for left, width in row.legs_ns]
        row.marks = [replace(m, left_pct=pct(m.offset_ns)) for m in row.marks]
    return rows, horizon


def _span_row(span: Span, depth: int, origin: int) -> Row:
    return Row(
        label=span.name,
        service=span.service,
        offset_ns=span.start_ns - origin,
        duration_ns=span.duration_ns,
        depth=depth,
        kind=KIND_NAMES.get(span.kind, str(span.kind)),
        span=span,
        attributes=dict(sorted(span.attributes.items())),
        events=[(e.name, (e.time_ns - span.start_ns) / 1e6) for e in span.events],
        marks=[
            Mark(e.name, (e.time_ns - span.start_ns) / 1e6, e.time_ns - origin)
            for e in span.events
            if span.kind == CLIENT and e.name in PHASE_EVENTS
        ],
        error=span.status_code == 2,
    )


def _gap_row(
    client: Span, server: Span, depth: int, origin: int, breakdown: TraceBreakdown | None
) -> Row:
    """The untraced time of one call, on the client's clock: before the server span starts and
    after it ends, split into the call's connection phases where it carried their events.
    Where the two hosts' clocks disagree (the server would not fit inside its client), the
    time around the server is shown split evenly."""
    remote = client.duration_ns - server.duration_ns
    edge = edge_name(client.service, server.service)
    times = {e.name: e.time_ns for e in client.events if e.name in PHASE_EVENTS}
    parts = connection_phases(client.start_ns, client.end_ns, server.duration_ns, times)
    if parts is None:
        legs = _around(client.start_ns, client.end_ns, server, remote)
        phases = ["gap", "gap"]
    else:
        legs, phases = _phase_legs(client, server, times, parts)
    ends = [
        end
        for end in (kernel_end("caller", client), kernel_end("callee", server))
        if end is not None
    ]
    kept = [(start - origin, ns, phase) for (start, ns), phase in zip(legs, phases, strict=True)]
    return Row(
        label=f"remote calls {edge}",
        service="(network)",
        offset_ns=client.start_ns - origin,
        duration_ns=remote,
        depth=depth,
        kind="gap",
        legs_ns=[(start, ns) for start, ns, _ in kept if ns > 0],
        leg_phases=[phase for _, ns, phase in kept if ns > 0],
        kernel=ends,
        reading=reading(breakdown, edge, ends) if breakdown and edge in breakdown.calls else "",
    )


def _around(start: int, end: int, server: Span, untraced: int) -> list[tuple[int, int]]:
    """(start, ns) of the untraced time in [start, end) before and after `server`."""
    before = server.start_ns - start
    after = end - server.end_ns
    if before < 0 or after < 0 or before + after != untraced:
        before = max(untraced, 0) // 2
        after = max(untraced, 0) - before
    return [(start, before), (end - after, after)]


def _phase_legs(
    client: Span, server: Span, times: dict[str, int], parts: tuple[int, ...]
) -> tuple[list[tuple[int, int]], list[str]]:
    """The gap's pieces in time order: connect, request, waiting before the server span,
    waiting after it, response, other (PHASES, waiting in two)."""
    connect, request, waiting, response, other = parts
    sent, first = times["request sent"], times["first byte"]
    before, after = _around(sent, first, server, waiting)
    legs = [
        (client.start_ns, connect),
        (sent - request, request),
        before,
        after,
        (first, response),
        (client.end_ns - other, other),
    ]
    return legs, ["connect", "request", "waiting", "waiting", "response", "other"]


def render_trace(trace_id: str, spans: Sequence[Span]) -> str:
    breakdown = break_down(spans)
    rows, horizon = trace_rows(spans, breakdown)
    return _env.get_template("trace.html").render(
        trace_id=trace_id,
        rows=rows,
        horizon_ms=horizon / 1e6,
        split=split_text(breakdown),
        total_ms=breakdown.total_ns / 1e6 if breakdown else 0.0,
        warnings=breakdown.warnings if breakdown else [],
        services=sorted({s.service for s in spans}),
        has_phases=any(p != "gap" for row in rows for p in row.leg_phases),
        span_count=len({s.span_id for s in spans}),
    )


def render_index(result: Found, search: Search, *, now_ns: int) -> str:
    return _env.get_template("index.html").render(
        result=result,
        traces=result.traces,
        search=search,
        plot=scatter(result.traces, clock),
        columns=_COLUMN_TITLES,
        query=urlencode,
        now_ns=now_ns,
    )


_COLUMN_TITLES = {
    "start": "started (UTC)",
    "trace": "trace",
    "root": "root",
    "spans": "spans",
    "total": "total",
    "remote": "remote calls",
}


def index_page(store: "Store", params: Mapping[str, str], now_ns: int) -> tuple[int, str]:
    """The recent-traces page for these query parameters: (status, HTML), from one read of
    the store (Store.listings) however many traces it lists."""
    try:
        search = parse_search(params)
    except SearchError as exc:
        return 400, render_not_found(f"bad query parameter {exc}", title="Bad request")
    start = 0 if search.lookback_ns is None else now_ns - search.lookback_ns
    query = TraceQuery(start, now_ns + _FUTURE_NS, service=search.service or None, limit=SCAN)
    return 200, render_index(found(store.listings(query), search), search, now_ns=now_ns)


# spans stamped a little ahead of this clock (another host's) still count as recent
_FUTURE_NS = 60 * 10**9


def render_not_found(message: str, title: str = "Not found") -> str:
    return _env.get_template("not_found.html").render(message=message, title=title)


_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")


def page_routes(store: "Store") -> list[BaseRoute]:
    """`GET /` and `GET /trace/{trace_id}` over the collector's store."""

    async def index(request: Request) -> HTMLResponse:
        params = dict(request.query_params)
        status, html = await run_in_threadpool(index_page, store, params, time.time_ns())
        return HTMLResponse(html, status)

    async def trace_page(request: Request) -> HTMLResponse:
        trace_id = str(request.path_params["trace_id"])
        if not _TRACE_ID.match(trace_id):
            return HTMLResponse(
                render_not_found(f"{trace_id[:64]!r} is not a trace id (32 hex digits)"), 404
            )
        spans = await run_in_threadpool(store.trace, trace_id.lower())
        if not spans:
            return HTMLResponse(render_not_found(f"no trace {trace_id.lower()} here (yet)"), 404)
        return HTMLResponse(render_trace(trace_id.lower(), spans))

    return [
        Route("/", index, methods=["GET"]),
        Route("/trace/{trace_id}", trace_page, methods=["GET"]),
    ]
