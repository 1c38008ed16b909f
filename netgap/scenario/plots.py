"""The scenario report's plots, inline SVG drawn through netgap.svg: the stacked p50s of web,
remote and API time over the run, the same on a log scale, and the kernel's curves (srtt and
resends at each end of the web tier's connections to the API), the fault window shaded on
each."""

from collections.abc import Callable

from netgap.scenario.result import ENDS, PARTS, Bucket, ScenarioResult
from netgap.scenario.text import duration
from netgap.svg import (
    Attribute,
    Frame,
    Linear,
    Log,
    grid_line,
    mark,
    points,
    rounded_top,
    ticks,
    y_tick,
)

COLORS = {"web": "#4c78a8", "remote": "#e45756", "api": "#54a24b"}
FAULT_FILL = "#fbe3d6"

PLOT_WIDTH = 900
PLOT_HEIGHT = 360
LOG_PLOT_HEIGHT = 280
KERNEL_PLOT_HEIGHT = 230
MARGIN_LEFT = 72
MARGIN_RIGHT = 16
MARGIN_TOP = 28
MARGIN_BOTTOM = 48

X = Callable[[float], float]  # ns since the epoch -> pixels
Axis = tuple[Callable[[float], float], list[tuple[float, str]]]  # y(value), ticks with labels


def frame(height: int) -> Frame:
    return Frame(PLOT_WIDTH, height, MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM)


def _time_x(result: ScenarioResult, height: int) -> tuple[X, float]:
    """The run's time axis (x of a time in ns, values outside at the edges), and its span (s)."""
    origin = result.start_ns
    span_s = max((result.end_ns - origin) / 1e9, 1e-3)
    time, plot = Linear(0.0, span_s), frame(height)

    def x(ns: float) -> float:
        return plot.x(time.fraction((ns - origin) / 1e9))

    return x, span_s


def _svg_open(what: str, height: int, title_id: str, title: str) -> list[str]:
    return [
        f'<svg id="{what}" width="{PLOT_WIDTH}" height="{height}" '
        f'viewBox="0 0 {PLOT_WIDTH} {height}" role="img" aria-labelledby="{title_id}">',
        f'<title id="{title_id}">{title}</title>',
    ]


def svg_plot(result: ScenarioResult) -> str:
    """Stacked per-bucket p50s of web, remote, API over time, the fault window shaded."""
    buckets = [b for b in result.series.buckets if b.traces]
    stacks = [sum(b.p50.get(part, 0) for part, _ in PARTS) for b in buckets]
    top_ns = float(max(stacks, default=0)) or 1e6
    unit, scale = ("s", 1e9) if top_ns >= 2e9 else ("ms", 1e6)
    top, step = rounded_top(top_ns / scale)
    x, span_s = _time_x(result, PLOT_HEIGHT)
    level, plot = Linear(0.0, top), frame(PLOT_HEIGHT)

    def y(value: float) -> float:
        return plot.y(level.fraction(value))

    out = _svg_open(
        "plot",
        PLOT_HEIGHT,
        "plot-title",
        "Web self, remote calls and API self time per request (p50 per time bucket, stacked) "
        "over the scenario, fault window shaded",
    )
    out += _fault_windows(result, x, PLOT_HEIGHT)
    out += _grid(
        [(value, f"{value:g} {unit}") for value in ticks(top, max(1, round(top / step)))], y
    )
    for bucket in buckets:
        out += _stack(bucket, x, y, result.series.bucket_ns, scale)
    out += _time_axis(span_s, x, result.start_ns, PLOT_HEIGHT)
    out += _legend()
    out.append("</svg>")
    return "\n".join(out)


def _stack(
    bucket: Bucket, x: X, y: Callable[[float], float], width_ns: int, scale: float
) -> list[str]:
    """One bucket's bar: its parts' p50s stacked, web at the bottom."""
    left, right = x(bucket.start_ns), x(bucket.start_ns + width_ns)
    out, base = [], 0.0
    for part, label in PARTS:
        value = bucket.p50.get(part, 0) / scale
        if value > 0:
            y0, y1 = y(base), y(base + value)
            place = {
                "x": left,
                "y": y1,
                "width": max(right - left, 0.5),
                "height": max(y0 - y1, 0.0),
            }
            title = f"{label} {duration(bucket.p50.get(part, 0))}"
            out.append(mark("rect", {"class": part, **place, "fill": COLORS[part]}, title))
        base += value
    return out


def svg_log_plot(result: ScenarioResult) -> str:
    """The same p50s per bucket, each part its own curve, on a log scale: the stacked plot is
    linear, so beside seconds of fault the baseline's and recovery's milliseconds draw as
    nothing; here every phase shows, decades apart."""
    buckets = [b for b in result.series.buckets if b.traces]
    values = [float(b.p50[part]) for b in buckets for part, _ in PARTS if part in b.p50]
    y, tick_marks = _log_axis(values, LOG_PLOT_HEIGHT)
    x, span_s = _time_x(result, LOG_PLOT_HEIGHT)
    half = result.series.bucket_ns / 2
    out = _svg_open(
        "log-plot",
        LOG_PLOT_HEIGHT,
        "log-title",
        "Web self, remote calls and API self time per request (p50 per time bucket) on a log "
        "scale, fault window shaded",
    )
    out += _fault_windows(result, x, LOG_PLOT_HEIGHT)
    out += _grid(tick_marks, y, joined=True)
    for part, label in PARTS:
        marked = [
            (x(b.start_ns + half), y(float(b.p50[part])), b)
            for b in buckets
            if b.p50.get(part, 0) > 0
        ]
        # the line fainter than its marks: each bucket's mark stays a mark of its own
        line = {"points": points([(px, py) for px, py, _ in marked]), "fill": "none"}
        out.append(
            mark(
                "polyline",
                {
                    "class": f"part-{part}-line",
                    **line,
                    "stroke": COLORS[part],
                    "stroke-opacity": "0.35",
                },
            )
        )
        out += [
            mark(
                "circle",
                {"class": f"part-{part}", "cx": px, "cy": py, "r": 3, "fill": COLORS[part]},
                f"{label} {duration(b.p50[part])}",
            )
            for px, py, b in marked
        ]
    out += _time_axis(span_s, x, result.start_ns, LOG_PLOT_HEIGHT)
    out.append("</svg>")
    return "\n".join(out)


def parts_legend() -> list[tuple[str, str]]:
    """(colour, label) of each part, for the page's legend under the log plot."""
    return [(COLORS[part], label) for part, label in PARTS]


def ends_legend() -> list[tuple[str, str]]:
    """(colour, label) of each end, for the page's legend over the kernel's curves."""
    return [(color, label) for _, _, label, color in ENDS]


def _fault_windows(result: ScenarioResult, x: X, height: int) -> list[str]:
    out = []
    for phase in result.phases:
        if not phase.faults_active:
            continue
        left, right = x(phase.start_ns), x(phase.end_ns)
        band: dict[str, Attribute] = {"x": left, "y": MARGIN_TOP, "width": right - left}
        band["height"] = height - MARGIN_TOP - MARGIN_BOTTOM
        fault = f"fault: {phase.faults_text}"
        out.append(mark("rect", {"class": "fault-window", **band, "fill": FAULT_FILL}, fault))
        at: dict[str, Attribute] = {"x": (left + right) / 2, "y": MARGIN_TOP - 8}
        at["text-anchor"] = "middle"
        out.append(mark("text", {**at, "class": "label"}, text=fault))
    return out


def _grid(
    tick_marks: list[tuple[float, str]], y: Callable[[float], float], joined: bool = False
) -> list[str]:
    """A grid line and a label per tick (`joined`: both on one line of the SVG)."""
    plot = frame(PLOT_HEIGHT)
    out = []
    for value, label in tick_marks:
        pos = y(value)
        pair = [grid_line(plot, pos), y_tick(plot, pos, label)]
        out += ["".join(pair)] if joined else pair
    return out


def _time_axis(span_s: float, x: X, origin: int, height: int) -> list[str]:
    bottom = height - MARGIN_BOTTOM
    plot = frame(height)
    out = [mark("line", {"x1": plot.left, "x2": plot.width - plot.right, "y1": plot.base,
                         "y2": plot.base, "class": "axis"})]  # fmt: skip
    for value in ticks(span_s, 8):
        pos = x(origin + value * 1e9)
        out.append(
            mark("line", {"x1": pos, "x2": pos, "y1": bottom, "y2": bottom + 4, "class": "axis"})
        )
        at: dict[str, Attribute] = {"x": pos, "y": bottom + 17, "text-anchor": "middle"}
        at["class"] = "tick"
        out.append(mark("text", at, text=f"{value:g} s"))
    middle = round(MARGIN_LEFT + (PLOT_WIDTH - MARGIN_LEFT - MARGIN_RIGHT) / 2)
    label: dict[str, Attribute] = {"x": middle, "y": height - 6, "text-anchor": "middle"}
    label["class"] = "label"
    out.append(
        mark("text", label, text="time since the scenario started (requests by their start)")
    )
    return out


def _legend() -> list[str]:
    out = []
    left = MARGIN_LEFT + 10
    for i, (part, label) in enumerate(reversed(PARTS)):
        top = MARGIN_TOP + 8 + 18 * i
        swatch: dict[str, Attribute] = {"x": left, "y": top, "width": 12, "height": 12}
        swatch["fill"] = COLORS[part]
        at: dict[str, Attribute] = {"x": left + 18, "y": top + 11, "class": "label"}
        out.append(mark("rect", swatch) + mark("text", at, text=f"{label} (p50)"))
    return out


# -- the kernel's curves


def testified(result: ScenarioResult) -> bool:
    """Whether any span of the run carried the kernel's TCP_INFO."""
    return any(b.tcp for b in result.series.buckets)


KERNEL_PLOTS = (
    ("srtt", "Smoothed round-trip time (srtt), p50 per bucket, log scale"),
    ("retransmits", "Segments retransmitted per request, mean per bucket"),
)


def kernel_plots(result: ScenarioResult) -> list[tuple[str, str]]:
    """(title, SVG) of srtt p50 (log scale) and retransmissions per request over time at each
    end of the web tier's connections to the API; nothing when no span carried TCP_INFO."""
    buckets = [b for b in result.series.buckets if b.tcp]
    if not buckets:
        return []
    return [(title, _curves(result, buckets, what, title)) for what, title in KERNEL_PLOTS]


def _value(bucket: Bucket, end: str, what: str) -> float:
    testimony = bucket.tcp[end]
    return testimony.srtt_p50 if what == "srtt" else testimony.retransmits_mean


def _curves(result: ScenarioResult, buckets: list[Bucket], what: str, title: str) -> str:
    values = [_value(b, end, what) for b in buckets for end, *_ in ENDS if end in b.tcp]
    y, tick_marks = _log_axis(values) if what == "srtt" else _linear_axis(values)
    height = KERNEL_PLOT_HEIGHT
    x, span_s = _time_x(result, height)
    out = _svg_open(
        f"{what}-plot",
        height,
        f"{what}-title",
        f"The kernel's view (TCP_INFO): {title} per time bucket at each end of the web tier's "
        "connections to the API",
    )
    out += _fault_windows(result, x, height)
    out += _grid(tick_marks, y, joined=True)
    half = result.series.bucket_ns / 2
    for end, _, label, color in ENDS:
        marked = [
            (x(b.start_ns + half), y(_value(b, end, what)), b) for b in buckets if end in b.tcp
        ]
        if not marked:
            continue
        line = points([(px, py) for px, py, _ in marked])
        out.append(
            mark("polyline", {"class": end, "points": line, "fill": "none", "stroke": color})
        )
        for px, py, b in marked:
            shown = _curve_value(what, _value(b, end, what))
            title_text = f"{label}: {shown} ({b.tcp[end].calls} calls)"
            out.append(
                mark(
                    "circle",
                    {"class": end, "cx": px, "cy": py, "r": 2.5, "fill": color},
                    title_text,
                )
            )
    out += _time_axis(span_s, x, result.start_ns, height)
    out.append("</svg>")
    return "\n".join(out)


def _curve_value(what: str, value: float) -> str:
    return duration(value) if what == "srtt" else f"{value:.2f} per request"


def _log_axis(values: list[float], height: int = KERNEL_PLOT_HEIGHT) -> Axis:
    """Decades from below the smallest value (ns) to above the largest: srtt spans 10 us to
    10 s, remote time 100 us to 10 s."""
    scale, plot = Log.over(values), frame(height)

    def y(ns: float) -> float:
        return plot.y(scale.fraction(ns))

    return y, [(10.0**e, _decade(10.0**e)) for e in scale.decades()]


def _decade(ns: float) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:g} s"
    return f"{ns / 1e6:g} ms"


def _linear_axis(values: list[float]) -> Axis:
    top, step = rounded_top(max(max(values, default=0.0), 0.1))
    level, plot = Linear(0.0, top), frame(KERNEL_PLOT_HEIGHT)

    def y(value: float) -> float:
        return plot.y(level.fraction(value))

    return y, [(value, f"{value:g}") for value in ticks(top, max(1, round(top / step)))]
