"""The scenario's report: JSON for programs, one self-contained HTML page for people, a table
for the terminal, and the diagnosis in words.

Everything here reads the result dict that netgap.scenario.run builds (the JSON as written),
so a saved report can be drawn again without running anything. The page needs nothing from
outside: inline CSS, an inline SVG plot, no scripts, no fonts, no links.
"""

import datetime as dt
import html
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from netgap.report import diagnosis as breakdown_diagnosis
from netgap.report import end_moved
from netgap.scenario import answers

# The three parts of a request's time, as the plot and the table name them.
PARTS = (("web", "web self"), ("remote", "remote calls"), ("api", "API self"))
COLORS = {"web": "#4c78a8", "remote": "#e45756", "api": "#54a24b"}
FAULT_FILL = "#fbe3d6"
# A self time that moves less than this (or 25%) has not moved: the acceptance's 1 ms.
APP_NOISE_NS = 1_000_000

PLOT_WIDTH = 900
PLOT_HEIGHT = 360
MARGIN_LEFT = 72
MARGIN_RIGHT = 16
MARGIN_TOP = 28
MARGIN_BOTTOM = 48

JSON_NAME = "scenario.json"
HTML_NAME = "scenario.html"


def write(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Writes the JSON and the HTML page into `out`; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / JSON_NAME
    html_path = out / HTML_NAME
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    html_path.write_text(html_page(result))
    return json_path, html_path


# -- numbers as people read them


def duration(ns: float | None) -> str:
    """Milliseconds below a second, seconds above: the scale the story switches between."""
    if ns is None:
        return "-"
    if abs(ns) >= 1e9:
        return f"{ns / 1e9:.2f} s"
    return f"{ns / 1e6:.2f} ms"


def seconds(value: float) -> str:
    """Like duration(), without the decimals a round 500 ms does not need."""
    text = duration(value * 1e9)
    return text.replace(".00 ", " ")


def _stat(phase: dict[str, Any], part: str, stat: str) -> float | None:
    name = phase["component_names"][part]
    value = phase["components"].get(name, {}).get(stat)
    return None if value is None else float(value)


def _pair(phase: dict[str, Any], part: str) -> str:
    return f"{duration(_stat(phase, part, 'p50'))} / {duration(_stat(phase, part, 'p99'))}"


def _metric_pair(phase: dict[str, Any]) -> str:
    """The web tier's netgap_remote_seconds over the phase (histogram quantiles)."""
    metric = phase.get("metric_remote") or {}
    return f"{duration(metric.get('p50'))} / {duration(metric.get('p99'))}"


METRIC_HEADER = "remote (metric) p50 / p99"


def _errors(phase: dict[str, Any]) -> str:
    """The load's errors by kind, then the web tier's causes of its non-200 answers."""
    load = phase["load"]
    kinds = load.get("errors_by_kind") or {}
    if not kinds:
        return "0"
    causes = answers.failures(phase.get("answers") or {})
    why = f"; web tier: {causes}" if causes else ""
    return f"{load['errors']} (" + ", ".join(f"{k} {n}" for k, n in kinds.items()) + why + ")"


def _window(result: dict[str, Any], phase: dict[str, Any]) -> str:
    origin = result["start_ns"]
    return f"{(phase['start_ns'] - origin) / 1e9:.0f}-{(phase['end_ns'] - origin) / 1e9:.0f} s"


def _expected(phase: dict[str, Any]) -> str:
    expectation = phase.get("expected")
    if not expectation:
        return "-"
    return f"{seconds(expectation['total_s'])} ({expectation['dominant']})"


# -- the terminal table


def table(result: dict[str, Any]) -> str:
    """The per-phase table, p50 / p99 per part, as printed at the end of a run."""
    header = ["phase", "window", "sent", "ok", "errors", "traces"]
    header += [f"{label} p50 / p99" for _, label in PARTS]
    header += [METRIC_HEADER, "total p50 / p99", "expected remote"]
    rows = [header]
    for phase in result["phases"]:
        load = phase["load"]
        rows.append(
            [
                phase["name"],
                _window(result, phase),
                str(load["sent"]),
                str(load["ok"]),
                _errors(phase),
                str(phase["traces"]),
                *(_pair(phase, part) for part, _ in PARTS),
                _metric_pair(phase),
                _pair(phase, "total"),
                _expected(phase),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


# -- the diagnosis


def diagnose(result: dict[str, Any]) -> str:
    """What moved in the fault, whether it came back, and why it got that big: paragraphs
    separated by blank lines."""
    phases = {phase["name"]: phase for phase in result["phases"]}
    baseline, fault = phases.get("baseline"), phases.get("fault")
    if baseline is None or fault is None or not baseline["traces"] or not fault["traces"]:
        return "Not enough traces to compare the fault with the baseline."
    paragraphs = [
        _what_moved(baseline, fault, result["faults_text"])
        + " In the breakdown's terms: "
        + breakdown_diagnosis(_summary(fault), _summary(baseline))
        + "."
    ]
    recovery = phases.get("recovery")
    if recovery is not None:
        paragraphs.append(_recovery(baseline, recovery))
    model = result.get("model")
    if model:
        paragraphs.append(_amplification(fault, model))
    return "\n\n".join(paragraphs)


def _summary(phase: dict[str, Any]) -> dict[str, Any]:
    return {"components": phase["components"], "edges": phase.get("edges", {})}


def _what_moved(baseline: dict[str, Any], fault: dict[str, Any], faults_text: str) -> str:
    before, during = _stat(baseline, "remote", "p50"), _stat(fault, "remote", "p50")
    flat: list[str] = []
    moved: list[str] = []
    for part, label in PARTS:
        a, b = _stat(baseline, part, "p50"), _stat(fault, part, "p50")
        if part == "remote" or a is None or b is None:
            continue
        change = f"{label} {duration(a)} -> {duration(b)}"
        (moved if abs(b - a) > max(APP_NOISE_NS, 0.25 * a) else flat).append(change)
    text = (
        f"Under the fault ({faults_text}) the remote calls from the web tier to the API went "
        f"from {duration(before)} to {duration(during)} at p50"
    )
    if not moved:
        return text + (
            f", while the application time stayed where it was ({'; '.join(flat)}): the time "
            "went into the network between the two tiers, not into either tier."
        )
    return text + f"; the application time moved too ({'; '.join(moved)})."


def _recovery(baseline: dict[str, Any], recovery: dict[str, Any]) -> str:
    before, after = _stat(baseline, "remote", "p50"), _stat(recovery, "remote", "p50")
    if before is None or after is None:
        return "No traces after the faults were cleared."
    back = after <= max(2 * before, before + 1e6)
    verdict = "back to baseline" if back else "not back to baseline yet"
    return (
        f"After the faults were cleared the remote calls were {verdict}: {duration(after)} "
        f"at p50 (baseline {duration(before)})."
    )


def _amplification(fault: dict[str, Any], model: dict[str, Any]) -> str:
    expectation = fault.get("expected") or model["expectation"]
    terms = {term["name"]: term for term in expectation["terms"]}
    dominant = terms[expectation["dominant"]]
    text = (
        f"Why {seconds(model['link']['latency_s'])} of delay became "
        f"{duration(_stat(fault, 'remote', 'p50'))} per request: the delay is per packet, not "
        "per request, and each request pays it on the way out and again on the way back. The "
        f"model ({model['injector']}) expects {seconds(expectation['total_s'])} on average, "
        f"against {duration(_stat(fault, 'remote', 'mean'))} measured; its biggest term is "
        f"{dominant['name']}, {seconds(dominant['seconds'])}: {dominant['formula']}."
    )
    growth = expectation["backlog_growth_s_per_s"]
    fault_s = model["load"]["fault_s"]
    minute = "" if fault_s == 60 else f" (after a minute of fault, {seconds(growth * 60)})"
    if growth <= 0:
        return text + (
            " The load stays under the cap, so no backlog builds up: each request pays the "
            "round trips and the transfer, and a few a retransmission stall."
        )
    return text + (
        f" The steady load offers more bytes a second than the cap carries, so the backlog "
        f"grew by {growth:.2f} s every second of the fault, to about "
        f"{seconds(expectation['worst_queueing_wait_s'])} of waiting at its end{minute}: "
        "that growth, not the per-request delay, is how a steady stream turns a 500 ms delay "
        "into many seconds."
    )


# -- the plot


def nice_step(span: float, count: int = 5) -> float:
    """A 1, 2, 2.5 or 5 times a power of ten step giving about `count` ticks over `span`."""
    if span <= 0:
        return 1.0
    raw = span / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def _ticks(top: float, count: int = 5) -> list[float]:
    step = nice_step(top, count)
    return [i * step for i in range(int(top / step + 1e-9) + 1)]


def svg_plot(result: dict[str, Any]) -> str:
    """Stacked per-bucket p50s of web, remote, API over time, the fault window shaded."""
    series = result["series"]
    buckets = [b for b in series["buckets"] if b["traces"]]
    bucket_ns = series["bucket_ns"]
    origin = int(result["start_ns"])
    span_s = max((int(result["end_ns"]) - origin) / 1e9, 1e-3)
    stacks = [sum(b["p50"].get(part, 0) for part, _ in PARTS) for b in buckets]
    top_ns = float(max(stacks, default=0)) or 1e6
    unit, scale = ("s", 1e9) if top_ns >= 2e9 else ("ms", 1e6)
    top = top_ns / scale
    step = nice_step(top)
    top = math.ceil(top / step) * step
    inner_w = PLOT_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    inner_h = PLOT_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def x(ns: float) -> float:
        return MARGIN_LEFT + inner_w * min(max((ns - origin) / 1e9 / span_s, 0.0), 1.0)

    def y(value: float) -> float:
        return MARGIN_TOP + inner_h * (1 - min(value / top, 1.0))

    parts: list[str] = [
        f'<svg id="plot" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" '
        f'viewBox="0 0 {PLOT_WIDTH} {PLOT_HEIGHT}" role="img" '
        'aria-labelledby="plot-title">',
        '<title id="plot-title">Web self, remote calls and API self time per request (p50 per '
        "time bucket, stacked) over the scenario, fault window shaded</title>",
    ]
    parts += _fault_windows(result, x)
    parts += _grid(top, unit, step, y)
    for bucket in buckets:
        left, right = x(bucket["start_ns"]), x(bucket["start_ns"] + bucket_ns)
        base = 0.0
        for part, label in PARTS:
            value = bucket["p50"].get(part, 0) / scale
            if value > 0:
                y0, y1 = y(base), y(base + value)
                parts.append(
                    f'<rect class="{part}" x="{left:.1f}" y="{y1:.1f}" '
                    f'width="{max(right - left, 0.5):.1f}" height="{max(y0 - y1, 0.0):.1f}" '
                    f'fill="{COLORS[part]}"><title>{html.escape(label)} '
                    f"{duration(bucket['p50'].get(part, 0))}</title></rect>"
                )
            base += value
    parts += _time_axis(span_s, x, origin)
    parts += _legend()
    parts.append("</svg>")
    return "\n".join(parts)


LOG_PLOT_HEIGHT = 280


def svg_log_plot(result: dict[str, Any]) -> str:
    """The same p50s per bucket, each part its own curve, on a log scale: the stacked plot is
    linear, so beside seconds of fault the baseline's and recovery's milliseconds draw as
    nothing; here every phase shows, decades apart."""
    buckets = [b for b in result["series"]["buckets"] if b["traces"]]
    values = [float(b["p50"][part]) for b in buckets for part, _ in PARTS if part in b["p50"]]
    y, ticks = _log_axis(values, LOG_PLOT_HEIGHT)
    origin = int(result["start_ns"])
    span_s = max((int(result["end_ns"]) - origin) / 1e9, 1e-3)
    inner_w = PLOT_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    half = result["series"]["bucket_ns"] / 2

    def x(ns: float) -> float:
        return MARGIN_LEFT + inner_w * min(max((ns - origin) / 1e9 / span_s, 0.0), 1.0)

    out = [
        f'<svg id="log-plot" width="{PLOT_WIDTH}" height="{LOG_PLOT_HEIGHT}" '
        f'viewBox="0 0 {PLOT_WIDTH} {LOG_PLOT_HEIGHT}" role="img" aria-labelledby="log-title">',
        '<title id="log-title">Web self, remote calls and API self time per request (p50 per '
        "time bucket) on a log scale, fault window shaded</title>",
        *_fault_windows(result, x, LOG_PLOT_HEIGHT),
    ]
    for value, label in ticks:
        out.append(
            f'<line x1="{MARGIN_LEFT}" x2="{PLOT_WIDTH - MARGIN_RIGHT}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}" class="grid"/><text x="{MARGIN_LEFT - 6}" '
            f'y="{y(value) + 4:.1f}" text-anchor="end" class="tick">{label}</text>'
        )
    for part, label in PARTS:
        points = [
            (x(b["start_ns"] + half), y(float(b["p50"][part])), b)
            for b in buckets
            if b["p50"].get(part, 0) > 0
        ]
        line = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)
        # the line fainter than its marks: each bucket's mark stays a mark of its own
        out.append(
            f'<polyline class="part-{part}-line" points="{line}" fill="none" '
            f'stroke="{COLORS[part]}" stroke-opacity="0.35"/>'
        )
        out += [
            f'<circle class="part-{part}" cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{COLORS[part]}">'
            f"<title>{html.escape(label)} {duration(b['p50'][part])}</title></circle>"
            for px, py, b in points
        ]
    out += _time_axis(span_s, x, origin, LOG_PLOT_HEIGHT)
    out.append("</svg>")
    return "\n".join(out)


def _parts_legend() -> str:
    return ", ".join(
        f'<span style="color: {COLORS[part]}">&#9679;</span> {html.escape(label)}'
        for part, label in PARTS
    )


def _fault_windows(result: dict[str, Any], x: Any, height: int = PLOT_HEIGHT) -> list[str]:
    out = []
    for phase in result["phases"]:
        if not phase.get("faults_active"):
            continue
        left, right = x(phase["start_ns"]), x(phase["end_ns"])
        out.append(
            f'<rect class="fault-window" x="{left:.1f}" y="{MARGIN_TOP}" '
            f'width="{right - left:.1f}" height="{height - MARGIN_TOP - MARGIN_BOTTOM}" '
            f'fill="{FAULT_FILL}"><title>fault: {html.escape(phase["faults_text"])}</title></rect>'
        )
        out.append(
            f'<text x="{(left + right) / 2:.1f}" y="{MARGIN_TOP - 8}" text-anchor="middle" '
            f'class="label">fault: {html.escape(phase["faults_text"])}</text>'
        )
    return out


def _grid(top: float, unit: str, step: float, y: Any) -> list[str]:
    out = []
    for value in _ticks(top, max(1, round(top / step))):
        pos = y(value)
        out.append(
            f'<line x1="{MARGIN_LEFT}" x2="{PLOT_WIDTH - MARGIN_RIGHT}" y1="{pos:.1f}" '
            f'y2="{pos:.1f}" class="grid"/>'
        )
        out.append(
            f'<text x="{MARGIN_LEFT - 6}" y="{pos + 4:.1f}" text-anchor="end" class="tick">'
            f"{value:g} {unit}</text>"
        )
    return out


def _time_axis(span_s: float, x: Any, origin: int, height: int = PLOT_HEIGHT) -> list[str]:
    bottom = height - MARGIN_BOTTOM
    out = [
        f'<line x1="{MARGIN_LEFT}" x2="{PLOT_WIDTH - MARGIN_RIGHT}" y1="{bottom}" '
        f'y2="{bottom}" class="axis"/>'
    ]
    for value in _ticks(span_s, 8):
        pos = x(origin + value * 1e9)
        out.append(
            f'<line x1="{pos:.1f}" x2="{pos:.1f}" y1="{bottom}" y2="{bottom + 4}" class="axis"/>'
        )
        out.append(
            f'<text x="{pos:.1f}" y="{bottom + 17}" text-anchor="middle" class="tick">'
            f"{value:g} s</text>"
        )
    out.append(
        f'<text x="{MARGIN_LEFT + (PLOT_WIDTH - MARGIN_LEFT - MARGIN_RIGHT) / 2:.0f}" '
        f'y="{height - 6}" text-anchor="middle" class="label">time since the scenario '
        "started (requests by their start)</text>"
    )
    return out


def _legend() -> list[str]:
    out = []
    left = MARGIN_LEFT + 10
    for i, (part, label) in enumerate(reversed(PARTS)):
        top = MARGIN_TOP + 8 + 18 * i
        out.append(
            f'<rect x="{left}" y="{top}" width="12" height="12" fill="{COLORS[part]}"/>'
            f'<text x="{left + 18}" y="{top + 11}" class="label">{html.escape(label)} (p50)'
            "</text>"
        )
    return out


# -- the kernel's curves

KERNEL_PLOT_HEIGHT = 230
# The two ends of the web tier's connections to the API that testify (netgap.breakdown).
ENDS = (
    ("web", "tcp", "web tier's end (its CLIENT spans)", "#4c78a8"),
    ("api", "tcp_callee", "API tier's end (its SERVER spans)", "#54a24b"),
)


def testified(result: dict[str, Any]) -> bool:
    """Whether any span of the run carried the kernel's TCP_INFO."""
    return any(b.get("tcp") for b in result["series"]["buckets"])


def kernel_plots(result: dict[str, Any]) -> list[str]:
    """srtt p50 (log scale) and retransmissions per request over time at each end of the web
    tier's connections to the API; nothing when no span carried TCP_INFO."""
    buckets = [b for b in result["series"]["buckets"] if b.get("tcp")]
    if not buckets:
        return []
    out = []
    for what, title in (
        ("srtt", "Smoothed round-trip time (srtt), p50 per bucket, log scale"),
        ("retransmits", "Segments retransmitted per request, mean per bucket"),
    ):
        out += [f"<h3>{html.escape(title)}</h3>", _curves(result, buckets, what, title)]
    return out


def _curves(result: dict[str, Any], buckets: list[dict[str, Any]], what: str, title: str) -> str:
    key = "srtt_p50" if what == "srtt" else "retransmits_mean"
    values = [b["tcp"][end][key] for b in buckets for end, *_ in ENDS if end in b["tcp"]]
    y, ticks = _log_axis(values) if what == "srtt" else _linear_axis(values)
    origin, height = int(result["start_ns"]), KERNEL_PLOT_HEIGHT
    span_s = max((int(result["end_ns"]) - origin) / 1e9, 1e-3)
    inner_w = PLOT_WIDTH - MARGIN_LEFT - MARGIN_RIGHT

    def x(ns: float) -> float:
        return MARGIN_LEFT + inner_w * min(max((ns - origin) / 1e9 / span_s, 0.0), 1.0)

    out = [
        f'<svg id="{what}-plot" width="{PLOT_WIDTH}" height="{height}" '
        f'viewBox="0 0 {PLOT_WIDTH} {height}" role="img" aria-labelledby="{what}-title">',
        f'<title id="{what}-title">The kernel\'s view (TCP_INFO): {html.escape(title)} per time '
        "bucket at each end of the web tier's connections to the API</title>",
        *_fault_windows(result, x, height),
    ]
    for value, label in ticks:
        out.append(
            f'<line x1="{MARGIN_LEFT}" x2="{PLOT_WIDTH - MARGIN_RIGHT}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}" class="grid"/><text x="{MARGIN_LEFT - 6}" '
            f'y="{y(value) + 4:.1f}" text-anchor="end" class="tick">{label}</text>'
        )
    half = result["series"]["bucket_ns"] / 2
    for end, _, label, color in ENDS:
        points = [
            (x(b["start_ns"] + half), y(b["tcp"][end][key]), b) for b in buckets if end in b["tcp"]
        ]
        if not points:
            continue
        line = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)
        out.append(f'<polyline class="{end}" points="{line}" fill="none" stroke="{color}"/>')
        for px, py, b in points:
            shown = _curve_value(what, b["tcp"][end][key])
            out.append(
                f'<circle class="{end}" cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{color}">'
                f"<title>{html.escape(label)}: {shown} ({b['tcp'][end]['calls']} calls)</title>"
                "</circle>"
            )
    out += _time_axis(span_s, x, origin, height)
    out.append("</svg>")
    return "\n".join(out)


def _curve_value(what: str, value: float) -> str:
    return duration(value) if what == "srtt" else f"{value:.2f} per request"


Axis = tuple[Any, list[tuple[float, str]]]  # y(value) -> pixel, and the ticks with labels


def _log_axis(values: list[float], height: int = KERNEL_PLOT_HEIGHT) -> Axis:
    """Decades from below the smallest value (ns) to above the largest: srtt spans 10 us to
    10 s, remote time 100 us to 10 s."""
    positive = [v for v in values if v > 0] or [1e3]
    low = math.floor(math.log10(min(positive)))
    high = max(math.ceil(math.log10(max(positive))), low + 1)
    inner_h = height - MARGIN_TOP - MARGIN_BOTTOM

    def y(ns: float) -> float:
        exponent = math.log10(max(ns, 10.0**low))
        return MARGIN_TOP + inner_h * (1 - (exponent - low) / (high - low))

    return y, [(10.0**e, _decade(10.0**e)) for e in range(low, high + 1)]


def _decade(ns: float) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:g} s"
    return f"{ns / 1e6:g} ms"


def _linear_axis(values: list[float]) -> Axis:
    top = max(max(values, default=0.0), 0.1)
    step = nice_step(top)
    top = math.ceil(top / step) * step
    inner_h = KERNEL_PLOT_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def y(value: float) -> float:
        return MARGIN_TOP + inner_h * (1 - min(value / top, 1.0))

    return y, [(value, f"{value:g}") for value in _ticks(top, max(1, round(top / step)))]


def kernel_note(result: dict[str, Any]) -> str:
    """Why the kernel's curves show the fault or do not, in one sentence."""
    phases = {phase["name"]: phase for phase in result["phases"]}
    baseline, fault = phases.get("baseline"), phases.get("fault")
    edge = result["component_names"]["remote"].removesuffix(" remote")
    moved: dict[str, bool] = {}
    for end, key, *_ in ENDS:
        now = ((fault or {}).get("edges") or {}).get(edge, {}).get(key)
        before = ((baseline or {}).get("edges") or {}).get(edge, {}).get(key)
        if now and before:
            moved[end] = end_moved(now, before)
    if not moved:
        return (
            "No spans carried TCP_INFO in both the baseline and the fault (the tiers run "
            "off Linux?), so the kernel has nothing to compare."
        )
    kernel = result.get("kernel")
    if kernel is None:
        if not any(moved.values()):
            return (
                "The kernel's curves do not rise with the remote time: the fault proxy "
                "delays and drops in userspace, between two loopback TCP connections that each "
                "carry every byte promptly, so TCP at neither end sees the fault; only the "
                "trace does."
            )
        return (
            f"The kernel's curves moved at the {_ends(moved, True)} although the faults were "
            "in the userspace proxy: that connection saw delay or resends of its own (a "
            "loaded machine, or the proxy's backlog filling its socket buffers)."
        )
    if all(moved.values()):
        return (
            "The kernel's curves show the fault: tc queues and drops packets on the veth "
            "that the connection crosses, so TCP measures the queueing in its round-trip time "
            "and resends what was dropped, below any span."
        )
    if moved.get("api") and kernel["latency_via"] != "netem":
        return (
            "The API tier's end shows the fault and the web tier's does not: tc queues and "
            "drops packets on the veth, which the latency proxy's connection to the API "
            "crosses, so TCP there measures the queueing and resends what was dropped, while "
            "the web tier's own connection ends at the proxy on loopback and stays healthy."
        )
    if any(moved.values()):
        return (
            f"The kernel's curves show the fault at the {_ends(moved, True)} only, and not at "
            f"the {_ends(moved, False)}: each end counts what it sent again, and only one "
            "direction's packets met the faults."
        )
    return (
        "The kernel's curves stay flat although tc faulted the veth: the load did not fill "
        "tc's queue nor meet a drop, and the latency added in userspace is invisible to TCP."
    )


def _ends_legend() -> str:
    return " ".join(
        f'<span style="color: {color}">&#9632;</span> {html.escape(label)}'
        for _, _, label, color in ENDS
    )


def _ends(moved: dict[str, bool], which: bool) -> str:
    names = {end: label for end, _, label, _ in ENDS}
    return " and the ".join(names[end] for end, did in moved.items() if did is which)


# -- the page


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
h3 { font-size: 1em; margin: 1em 0 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.55em; text-align: right; }
.scroll { overflow-x: auto; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.text { text-align: left; white-space: normal; } td.text { min-width: 11em; }
tr.fault td { background: #fdf1ea; } tr.dominant td { font-weight: bold; }
#diagnosis { background: #f6f8fa; border-left: 4px solid #e45756; padding: 0.1em 1em; }
svg text { font-family: system-ui, sans-serif; font-size: 12px; fill: #333; }
svg .grid { stroke: #e3e3e3; } svg .axis { stroke: #555; }
.note { color: #555; font-size: 0.9em; }
"""


def html_page(result: dict[str, Any]) -> str:
    faults_text = html.escape(result["faults_text"])
    started = dt.datetime.fromtimestamp(result["start_ns"] / 1e9, dt.UTC)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>netgap scenario: {faults_text}</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body>",
            f"<h1>netgap scenario: {faults_text}</h1>",
            f'<p class="note">Run of {started:%Y-%m-%d %H:%M:%S} UTC: '
            f"{html.escape(_phases_line(result))}; steady load of "
            f"{result['config']['rate']:g} requests/s on the web tier, which calls the API "
            f"tier {html.escape(_path(result))}.</p>",
            "<h2>Diagnosis</h2>",
            _diagnosis(result["diagnosis"]),
            "<h2>Where the time went</h2>",
            svg_plot(result),
            '<p class="note">Each bar is one time bucket of '
            f"{result['series']['bucket_ns'] / 1e9:g} s: the p50 of web self time, remote "
            "time (web tier to API, the time no span explains) and API self time of the "
            "requests that started in it, stacked (medians do not add up exactly to the "
            "total's median). The shaded band is the fault.</p>",
            "<h3>The same on a log scale</h3>",
            svg_log_plot(result),
            f'<p class="note">{_parts_legend()}. Each dot is one bucket\'s p50 of one part, on '
            "a log scale so that milliseconds and seconds show side by side: healthy, broken "
            "and healthy again. "
            "The remote calls' curve climbs by decades under the fault while the web and API "
            "self times stay where they were: the time went to the network.</p>",
            *_kernel_curves_section(result),
            "<h2>Per phase</h2>",
            _phase_table(result),
            f'<p class="note">{html.escape(_method_note(result))}</p>',
            "<h2>Expected against measured</h2>",
            _model_section(result),
            *_kernel_section(result),
            "</body>",
            "</html>",
            "",
        ]
    )


def _kernel_curves_section(result: dict[str, Any]) -> list[str]:
    plots = kernel_plots(result)
    if not plots:
        return []
    return [
        "<h2>What the kernel saw</h2>",
        f'<p class="note">{_ends_legend()}</p>',
        *plots,
        f'<p id="kernel-note">{html.escape(kernel_note(result))}</p>',
        '<p class="note">TCP_INFO read from each connection\'s socket as the exchange ends: '
        "the web tier's on its CLIENT spans, the API tier's on its SERVER spans. srtt is the "
        "kernel's smoothed round-trip time, and holds how long the other end took to "
        "acknowledge: an answer that comes within the delayed-ACK time carries the ACK, so "
        "srtt at the web tier's end is then about the API's answer time; answers later than "
        "that are acknowledged at once, and srtt shows the bare path. Each end counts the "
        "segments it sent again.</p>",
    ]


def _path(result: dict[str, Any]) -> str:
    kernel = result.get("kernel")
    if not kernel:
        return "through the fault proxy"
    via = " and the latency proxy" if kernel["latency_via"] == "userspace proxy" else ""
    return f"across a veth pair faulted by tc and iptables{via} (kernel mode, see below)"


def kernel_lines(result: dict[str, Any]) -> list[str]:
    """Kernel mode in words: where everything ran, what did which fault (empty otherwise)."""
    kernel = result.get("kernel")
    if not kernel:
        return []
    return [
        f"The API tier ran in network namespace {kernel['namespace']} on "
        f"{kernel['api_address']} ({kernel['api_device']}); the web tier, the collector, the "
        f"load{' and the latency proxy' if kernel['latency_via'] != 'netem' else ''} in the "
        f"root namespace on {kernel['web_address']} ({kernel['web_device']}), the other end "
        "of the veth pair.",
        f"In the kernel: {kernel['kernel_faults']}; latency via {kernel['latency_via']}"
        + (f": {kernel['proxy_faults']}." if kernel["latency_via"] != "netem" else "."),
        *kernel["notes"],
    ]


def _kernel_section(result: dict[str, Any]) -> list[str]:
    kernel = result.get("kernel")
    if not kernel:
        return []
    items = "".join(f"<li>{html.escape(line)}</li>" for line in kernel_lines(result))
    out = ["<h2>Kernel mode</h2>", f'<ul id="kernel">{items}</ul>']
    for side, commands in kernel["plan"].items():
        text = "\n".join(["# apply", *commands["apply"], "# revert", *commands["revert"]])
        where = f" (in {kernel['namespace']}, by ip netns exec)" if side == "api->web" else ""
        out.append(f"<h3>{html.escape(side + where)}</h3><pre>{html.escape(text)}</pre>")
    return out


def _diagnosis(text: str) -> str:
    paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n"))
    return f'<div id="diagnosis">{paragraphs}</div>'


def _phases_line(result: dict[str, Any]) -> str:
    return ", then ".join(
        f"{phase['name']} {(phase['end_ns'] - phase['start_ns']) / 1e9:.0f} s"
        for phase in result["phases"]
    )


def _cells(values: Iterable[str], tag: str = "td", wrap: int | None = None) -> str:
    """Table cells; the one at index `wrap` may break across lines (text, not a number)."""
    wrapping = ' class="text"'
    return "".join(
        f"<{tag}{wrapping if i == wrap else ''}>{_keep_units(html.escape(value))}</{tag}>"
        for i, value in enumerate(values)
    )


def _keep_units(text: str) -> str:
    """Numbers stay whole and with their units; `p50 / p99` may break at the slash."""
    text = re.sub(r"(\d)-(\d)", "\\1&#8209;\\2", text)  # 90-120 s: a non-breaking hyphen
    return re.sub(r"(\d) (ms|s)\b", "\\1&nbsp;\\2", text)


def _phase_table(result: dict[str, Any]) -> str:
    header = ["phase", "window", "faults", "sent", "ok", "errors", "traces"]
    header += [f"{label} p50 / p99" for _, label in PARTS]
    header += [METRIC_HEADER, "total p50 / p99", "expected remote (mean)", "measured remote (mean)"]
    rows = [f"<tr>{_cells(header, 'th', wrap=2)}</tr>"]
    for phase in result["phases"]:
        load = phase["load"]
        cells = [
            phase["name"],
            _window(result, phase),
            phase["faults_text"],
            str(load["sent"]),
            str(load["ok"]),
            _errors(phase),
            str(phase["traces"]),
            *(_pair(phase, part) for part, _ in PARTS),
            _metric_pair(phase),
            _pair(phase, "total"),
            _expected(phase),
            duration(_stat(phase, "remote", "mean")),
        ]
        css = ' class="fault"' if phase.get("faults_active") else ""
        name = html.escape(phase["name"])
        rows.append(f'<tr{css} data-phase="{name}">{_cells(cells, wrap=2)}</tr>')
    return '<div class="scroll"><table id="phases">\n' + "\n".join(rows) + "\n</table></div>"


def _method_note(result: dict[str, Any]) -> str:
    config = result["config"]
    exchange = result.get("exchange") or {}
    text = (
        f"Each phase's statistics cover the requests that started in it, leaving out "
        f"{config['settle_s']:g} s at either edge of the phase while the faults take hold or "
        "drain; a request started in the fault counts there even when it ended after it. "
        "Self and remote times come from the traces (netgap breakdown); sent, ok and errors "
        "from the load generator, per request started in the phase, with the web tier's cause "
        "of each non-200 answer from its log (logs/webtier.log). The web tier's timeout "
        f"for the API was {config['api_timeout_s']:g} s."
    )
    cores = config.get("cores")
    if cores:
        placement = ", ".join(
            f"{name} on core {','.join(map(str, c))}" for name, c in cores.items()
        )
        text += f" As on separate nodes, each tier had a core of its own ({placement})."
    if exchange:
        text += (
            f" One exchange on the wire: {exchange['request_bytes']} B request and "
            f"{exchange['response_bytes']} B response (HTTP headers included; "
            f"{exchange['source']})."
        )
    return text


def _model_section(result: dict[str, Any]) -> str:
    model = result.get("model")
    fault = next((p for p in result["phases"] if p.get("expected")), None)
    if not model or fault is None:
        return "<p>No fault phase to model.</p>"
    expectation = fault["expected"]
    rows = [f"<tr>{_cells(['term', 'expected', 'how'], 'th', wrap=2)}</tr>"]
    for term in expectation["terms"]:
        css = ' class="dominant"' if term["name"] == expectation["dominant"] else ""
        rows.append(
            f"<tr{css}><td>{html.escape(term['name'])}</td>"
            f"<td>{html.escape(seconds(term['seconds']))}</td>"
            f'<td class="text">{html.escape(term["formula"])}</td></tr>'
        )
    rows.append(
        f"<tr><th>expected remote (mean)</th><th>{html.escape(seconds(expectation['total_s']))}"
        f'</th><th class="text">dominant term: {html.escape(expectation["dominant"])}</th></tr>'
    )
    measured = [
        ("measured remote, mean", _stat(fault, "remote", "mean")),
        ("measured remote, p50", _stat(fault, "remote", "p50")),
        ("measured remote, p99", _stat(fault, "remote", "p99")),
    ]
    for label, value in measured:
        rows.append(f"<tr><td>{label}</td><td>{html.escape(duration(value))}</td><td></td></tr>")
    load = model["load"]
    intro = (
        f"The model ({html.escape(model['injector'])}) for the fault phase: "
        f"{load['requests_per_s']:g} requests/s for {load['fault_s']:g} s, "
        f"{load['new_connection_share']:.0%} of calls on a new connection. Terms are means; "
        "see netgap/scenario/model.py for what each one counts and leaves out."
    )
    return f"<p>{intro}</p>\n" + '<table id="model">\n' + "\n".join(rows) + "\n</table>"
