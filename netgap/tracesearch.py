"""The recent-traces page as a search: which traces to list (service, minimum total and
remote time, how far back), in which order, and the scatter plot above the list (each listed
trace's remote time against its start, on a log scale, as Jaeger's search page plots
durations: a fault window stands out as a cloud lifted by decades).

The page's query parameters are snake_case, like Jaeger's: `service`, `min_total` and
`min_remote` (Go durations: `5ms`, `1.5s`), `lookback` (a Go duration, default 1h, or
`all`), `sort` (a column: start, trace, root, spans, total, remote), `order` (asc, desc),
`limit` (how many to list, at most MAX_LIMIT). A bad one is a 400 naming it.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from netgap.breakdown import TraceBreakdown
from netgap.collector.chains import Chain
from netgap.collector.records import Listings, TraceSummary
from netgap.svg import Attribute, Frame, Linear, Log, grid_line, mark, y_tick
from netgap.timeparse import TimeFormatError, parse_go_duration_ns

DEFAULT_LOOKBACK_NS = 3600 * 10**9
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# how many of the window's latest traces the filters are tried on; the page says when the
# window held more
SCAN = 5000
COLUMNS = ("start", "trace", "root", "spans", "total", "remote")


class SearchError(ValueError):
    """A bad query parameter; the message names it."""


@dataclass(frozen=True)
class Search:
    service: str = ""
    min_total_ns: int = 0
    min_remote_ns: int = 0
    lookback_ns: int | None = DEFAULT_LOOKBACK_NS  # None: all
    sort: str = "start"
    descending: bool = True
    limit: int = DEFAULT_LIMIT

    def params(self, **changes: object) -> dict[str, str]:
        """This search's query parameters (defaults left out), with `changes` made."""
        search = replace(self, **changes)  # type: ignore[arg-type]
        out = {
            "service": search.service,
            "min_total": _duration(search.min_total_ns) if search.min_total_ns else "",
            "min_remote": _duration(search.min_remote_ns) if search.min_remote_ns else "",
            "lookback": "all" if search.lookback_ns is None else _duration(search.lookback_ns),
            "sort": search.sort,
            "order": "desc" if search.descending else "asc",
            "limit": str(search.limit),
        }
        defaults = Search()
        if search.lookback_ns == defaults.lookback_ns:
            out["lookback"] = ""
        if (search.sort, search.descending) == (defaults.sort, defaults.descending):
            out["sort"] = out["order"] = ""
        if search.limit == defaults.limit:
            out["limit"] = ""
        return {k: v for k, v in out.items() if v}

    def sorted_by(self, column: str) -> dict[str, str]:
        """The parameters that sort by `column`: the other way round if it is the sort now."""
        descending = not self.descending if column == self.sort else column != "trace"
        return self.params(sort=column, descending=descending)


def parse_search(params: Mapping[str, str]) -> Search:
    """The page's query parameters (SearchError for a bad one)."""
    sort = params.get("sort") or "start"
    if sort not in COLUMNS:
        raise SearchError(f"sort: {sort[:40]!r} is not one of {', '.join(COLUMNS)}")
    order = params.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise SearchError(f"order: {order[:40]!r} is not asc or desc")
    lookback_text = params.get("lookback") or ""
    lookback: int | None = DEFAULT_LOOKBACK_NS
    if lookback_text == "all":
        lookback = None
    elif lookback_text:
        lookback = _duration_param("lookback", lookback_text) or None
    limit_text = params.get("limit") or str(DEFAULT_LIMIT)
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
        raise SearchError(f"limit: {limit_text[:40]!r} is not a number from 1 to {MAX_LIMIT}")
    return Search(
        service=(params.get("service") or "").strip(),
        min_total_ns=_duration_param("min_total", params.get("min_total") or ""),
        min_remote_ns=_duration_param("min_remote", params.get("min_remote") or ""),
        lookback_ns=lookback,
        sort=sort,
        descending=order == "desc",
        limit=int(limit_text),
    )


def _duration_param(name: str, text: str) -> int:
    if not text:
        return 0
    try:
        value = parse_go_duration_ns(text.strip())
    except TimeFormatError as exc:
        raise SearchError(f"{name}: {exc}") from None
    if value < 0:
        raise SearchError(f"{name}: {text[:40]!r} is negative")
    return value


def _duration(ns: int) -> str:
    """A Go duration that parses back to `ns`."""
    for unit, size in (("h", 3600 * 10**9), ("m", 60 * 10**9), ("s", 10**9), ("ms", 10**6),
                       ("us", 10**3)):  # fmt: skip
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


@dataclass(frozen=True)
class TraceListing:
    trace_id: str
    start_ns: int
    root: str
    total_ms: float
    remote_ms: float  # every edge's remote time, summed
    span_count: int
    split: list[tuple[str, float]]


def listing(summary: TraceSummary, breakdown: TraceBreakdown | Chain | None) -> TraceListing:
    full = breakdown.breakdown() if isinstance(breakdown, Chain) else breakdown
    parts = full.components() if full is not None else {}
    return TraceListing(
        trace_id=summary.trace_id,
        start_ns=full.start_ns if full is not None else summary.start_ns,
        root=f"{summary.root_service} {summary.root_name}",
        total_ms=(full.total_ns if full is not None else summary.duration_ns) / 1e6,
        remote_ms=sum(full.remote_ns.values()) / 1e6 if full is not None else 0.0,
        span_count=summary.span_count,
        split=[(name, ns / 1e6) for name, ns in parts.items()],
    )


@dataclass(frozen=True)
class Found:
    traces: list[TraceListing]
    scanned: int  # traces of the window the filters were tried on
    more: bool  # the window held more than SCAN traces, or more matched than listed
    services: list[str]
    span_total: int


def found(listings: Listings, search: Search) -> Found:
    """The listed traces: the filters applied, sorted, cut to the limit."""
    rows = [listing(summary, breakdown) for summary, breakdown in listings.traces]
    # remote time below zero happens (a server that closes its span after answering): only a
    # minimum that is set filters
    matching = [
        row
        for row in rows
        if (not search.min_total_ns or row.total_ms * 1e6 >= search.min_total_ns)
        and (not search.min_remote_ns or row.remote_ms * 1e6 >= search.min_remote_ns)
    ]
    matching.sort(key=_KEYS[search.sort], reverse=search.descending)
    return Found(
        traces=matching[: search.limit],
        scanned=len(rows),
        more=len(rows) >= SCAN or len(matching) > search.limit,
        services=listings.services,
        span_total=listings.span_count,
    )


_KEYS = {
    "start": lambda r: (r.start_ns, r.trace_id),
    "trace": lambda r: r.trace_id,
    "root": lambda r: (r.root, r.start_ns),
    "spans": lambda r: (r.span_count, r.start_ns),
    "total": lambda r: (r.total_ms, r.start_ns),
    "remote": lambda r: (r.remote_ms, r.start_ns),
}


# -- the scatter plot ---------------------------------------------------------------------

FRAME = Frame(width=900, height=220, left=64, right=40, top=12, bottom=30)
FLOOR_NS = 1_000  # remote time at or below 1 us (or below zero) is drawn on the floor


@dataclass(frozen=True)
class Dot:
    trace_id: str
    x: float
    y: float
    remote_ms: float
    title: str


@dataclass(frozen=True)
class Scatter:
    dots: list[Dot]
    y_ticks: list[tuple[float, str]]  # (y, label) at each decade
    x_ticks: list[tuple[float, str]]
    frame: Frame = FRAME

    def svg(self) -> str:
        """The plot as drawn on the page: a grid line per decade, five times, a dot per
        trace linking to it."""
        frame = self.frame
        out = [
            f'<svg id="scatter" width="{frame.width}" height="{frame.height}" '
            f'viewBox="0 0 {frame.width} {frame.height}" role="img" aria-label="remote time of '
            'each listed trace against its start, log scale">'
        ]
        out += [
            "  " + grid_line(frame, y, closed=True, first=True) + y_tick(frame, y, label, True)
            for y, label in self.y_ticks
        ]
        when: dict[str, Attribute] = {"y": frame.height - 10, "text-anchor": "middle"}
        out.append("  " + "".join(
            mark("text", {"class": "tick", "x": x, **when}, text=label) for x, label in self.x_ticks
        ))  # fmt: skip
        out += [
            f'  <a href="/trace/{dot.trace_id}">'
            + mark(
                "circle",
                {
                    "class": "dot",
                    "data-trace": dot.trace_id,
                    "data-remote-ms": f"{dot.remote_ms:.6f}",
                    "cx": dot.x,
                    "cy": dot.y,
                    "r": 4,
                },
                title=dot.title,
            )
            + "</a>"
            for dot in self.dots
        ]
        return "\n".join([*out, "</svg>"])


def scatter(traces: Sequence[TraceListing], clock: Callable[[int], str]) -> Scatter | None:
    """Each trace's remote time (log) against its start; None without traces."""
    if not traces:
        return None
    starts = [t.start_ns for t in traces]
    lo_t, hi_t = min(starts), max(starts)
    if hi_t == lo_t:
        lo_t, hi_t = lo_t - 10**9, hi_t + 10**9
    time, remote = Linear(lo_t, hi_t, clamp=False), Log.over([_floored(t) for t in traces])

    def x(ns: float) -> float:
        return FRAME.x(time.fraction(ns))

    dots = [
        Dot(t.trace_id, x(t.start_ns), FRAME.y(remote.fraction(_floored(t))), t.remote_ms,
            f"{clock(t.start_ns)} remote {t.remote_ms:.3f} ms, total {t.total_ms:.3f} ms")
        for t in traces
    ]  # fmt: skip
    y_ticks = [(FRAME.y(remote.fraction(10.0**d)), _decade(d)) for d in remote.decades()]
    x_ticks = [(x(lo_t + (hi_t - lo_t) * i / 4), clock(int(lo_t + (hi_t - lo_t) * i / 4))[11:19])
               for i in range(5)]  # fmt: skip
    return Scatter(dots, y_ticks, x_ticks)


def _floored(trace: TraceListing) -> float:
    return max(trace.remote_ms * 1e6, FLOOR_NS)


def _decade(exponent: int) -> str:
    ns = 10**exponent
    for unit, size in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if ns >= size:
            return f"{ns // size} {unit}"
    return f"{ns} ns"
