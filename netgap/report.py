"""The breakdown as people and programs read it: a table, CSV, a stacked-area plot, and a
diagnosis in words when compared with a baseline."""

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

from netgap.aggregate import TOTAL
from netgap.breakdown import PHASES

STATS = ("p50", "p90", "p99", "max", "mean")


def ms(ns: float) -> str:
    return f"{ns / 1e6:.3f} ms"


def clock(ns: int | None) -> str:
    if ns is None:
        return "-"
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def table(report: dict[str, Any]) -> str:
    """The human-readable report: components, edges, time series, data quality."""
    summary = report["summary"]
    lines = [
        f"netgap breakdown: {summary['traces']} traces of {report['service']} "
        f"from {report['source']}, {clock(report['start_ns'])} .. {clock(report['end_ns'])}"
    ]
    if not summary["traces"]:
        lines.append("no traces in this window")
        return "\n".join(lines)
    width = max(len(name) for name in summary["components"]) + 2
    lines.append(" " * width + "".join(f"{stat:>12}" for stat in STATS))
    for name, stats in summary["components"].items():
        lines.append(f"{name:<{width}}" + "".join(f"{ms(stats[s]):>12}" for s in STATS))
    if summary["edges"]:
        lines.append("")
        lines.append(
            f"{'edge':<{width}}{'calls':>12}{'unpaired':>12}{'new conn':>12}{'reused':>12}"
        )
        for name, edge in summary["edges"].items():
            lines.append(
                f"{name:<{width}}{edge['calls']:>12}{edge['unpaired']:>12}"
                f"{edge['new_connections']:>12}{edge['reused_connections']:>12}"
            )
            if edge["phases"]:
                phases = ", ".join(
                    f"{phase} {ms(edge['phases'][phase]['p50'])}"
                    for phase in PHASES
                    if phase in edge["phases"]
                )
                lines.append(f"  remote time by phase, p50: {phases}")
            lines.extend(_testimony_lines(name, edge))
    if summary["buckets"]:
        lines.append("")
        lines.extend(_series(summary))
    lines.append("")
    lines.extend(_quality(summary))
    if "diagnosis" in report:
        lines.append("")
        lines.append("diagnosis: " + report["diagnosis"])
    if "metric" in report:
        lines.append("")
        lines.extend(metric_lines(report["metric"]))
    return "\n".join(lines)


def _testimony_lines(name: str, edge: dict[str, Any]) -> list[str]:
    caller, _, callee = name.partition("->")
    out = []
    for key, end in (("tcp", caller), ("tcp_callee", callee)):
        tcp = edge.get(key)
        if tcp:
            out.append(
                f"  kernel at {end}'s end (TCP_INFO, {tcp['calls']} calls): srtt p50 "
                f"{ms(tcp['srtt']['p50'])}, p99 {ms(tcp['srtt']['p99'])}; "
                f"retransmissions per request {tcp['retransmits']['mean']:.2f}"
            )
    return out


def metric_lines(metric: dict[str, Any]) -> list[str]:
    """The web tier's netgap_remote_seconds per edge, and whether the traces agree."""
    out = [f"remote time from the metric at {metric['source']} ({metric['scope']}):"]
    if not metric["edges"]:
        out.append("  no netgap_remote_seconds there")
    for edge, n in metric["edges"].items():
        stats = "  ".join(
            f"{stat} {'-' if n[stat] is None else ms(n[stat])}" for stat in ("p50", "p99", "mean")
        )
        out.append(f"  {edge}  calls {n['calls']:.0f}  {stats}")
    if "disagreements" in metric:
        if metric["disagreements"]:
            out.extend(f"metric and traces DISAGREE: {line}" for line in metric["disagreements"])
        else:
            out.append("metric and traces agree (remote p50 within the metric's bucket)")
    return out


def _series(summary: dict[str, Any]) -> list[str]:
    names = list(summary["components"])
    out = [
        "p50 per window:",
        f"{'window start':<26}{'traces':>8}" + "".join(f"{n:>26}" for n in names),
    ]
    for bucket in summary["buckets"]:
        cells = "".join(f"{ms(bucket['components'].get(n, {}).get('p50', 0)):>26}" for n in names)
        out.append(f"{clock(bucket['start_ns']):<26}{bucket['traces']:>8}{cells}")
    return out


def _quality(summary: dict[str, Any]) -> list[str]:
    quality = summary["data_quality"]
    unpaired = sum(edge["unpaired"] for edge in summary["edges"].values())
    pairing = (
        f"{unpaired} unpaired calls (counted wholly as remote)"
        if unpaired
        else "every outbound call paired with its server span"
    )
    if not quality["traces_with_warnings"]:
        return [f"data quality: {pairing}; no warnings"]
    kinds = ", ".join(f"{kind}: {n}" for kind, n in quality["by_kind"].items())
    out = [
        f"data quality: {pairing}; {quality['traces_with_warnings']} traces with notes ({kinds})"
    ]
    out.extend(f"  e.g. {example}" for example in quality["examples"])
    return out


def csv_text(report: dict[str, Any]) -> str:
    """Long format: the whole window first, then each time bucket; one row per component."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["window_start", "window_end", "component", "traces", *(f"{s}_ms" for s in STATS)]
    )
    summary = report["summary"]
    windows = [(report["start_ns"], report["end_ns"], summary["traces"], summary["components"])]
    bucket_ns = report.get("bucket_ns") or 0
    windows += [
        (b["start_ns"], b["start_ns"] + bucket_ns, b["traces"], b["components"])
        for b in summary["buckets"]
    ]
    for start, end, traces, components in windows:
        for name, stats in components.items():
            writer.writerow(
                [clock(start), clock(end), name, traces, *(f"{stats[s] / 1e6:.6f}" for s in STATS)]
            )
    return buffer.getvalue()


# The plot's colours: the remote calls in reds, each service's own time in blues and greens.
REMOTE_COLORS = ("#d62728", "#ff7f0e", "#8c564b")
SELF_COLORS = ("#1f77b4", "#2ca02c", "#17becf", "#9467bd", "#7f7f7f")


def plot_colors(names: list[str]) -> dict[str, str]:
    """A colour per component, the remote calls' apart from the services' own."""
    remotes = [n for n in names if n.endswith(" remote")]
    selves = [n for n in names if not n.endswith(" remote")]
    colors = {n: REMOTE_COLORS[i % len(REMOTE_COLORS)] for i, n in enumerate(remotes)}
    colors.update({n: SELF_COLORS[i % len(SELF_COLORS)] for i, n in enumerate(selves)})
    return colors


def plot(report: dict[str, Any], path: Path) -> None:
    """Two panels over the same time axis. Above: stacked areas of each component's mean per
    window (means add up to the total's mean, percentiles would not), like an APM's latency
    breakdown chart. Below: each component's p50 per window on a log scale, one mark per
    window, so that milliseconds before and after a fault show beside its seconds."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    summary = report["summary"]
    buckets = summary["buckets"]
    names = [n for n in summary["components"] if n != TOTAL]
    colors = plot_colors(names)
    # matplotlib takes datetimes on a date axis; its stubs only admit numbers here
    times: Any = [dt.datetime.fromtimestamp(b["start_ns"] / 1e9, dt.UTC) for b in buckets]
    middles: Any = [
        dt.datetime.fromtimestamp(
            (b["start_ns"] + (report.get("bucket_ns") or 0) / 2) / 1e9, dt.UTC
        )
        for b in buckets
    ]
    layers = [[b["components"].get(n, {}).get("mean", 0) / 1e6 for b in buckets] for n in names]
    fig, (ax, log) = plt.subplots(2, 1, figsize=(10, 7.5), dpi=100, sharex=True)
    if buckets:
        ax.stackplot(times, layers, labels=names, alpha=0.85, step="post",
                     colors=[colors[n] for n in names])  # fmt: skip
    ax.set_title(f"Where {report['service']} requests spend their time (mean per request)")
    ax.set_ylabel("ms")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    for name in names:
        points = [
            (t, b["components"][name]["p50"] / 1e6)
            for t, b in zip(middles, buckets, strict=True)
            if b["components"].get(name, {}).get("p50", 0) > 0
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            # the line faint, the marks solid: one mark per window, each its own
            log.plot(xs, ys, color=colors[name], alpha=0.3, linewidth=1)
            log.plot(xs, ys, linestyle="none", marker="o", markersize=5, color=colors[name],
                     label=name)  # fmt: skip
    log.set_yscale("log")
    log.set_title("The same per window on a log scale (p50)")
    log.set_ylabel("ms (log)")
    log.set_xlabel("time (UTC)")
    log.grid(alpha=0.3, which="both")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def diagnosis(current: dict[str, Any], baseline: dict[str, Any]) -> str:
    """Which component moved, by how much, and where that points."""
    now, before = current["components"], baseline["components"]
    moves = {
        name: now[name]["p50"] - before.get(name, {}).get("p50", 0) for name in now if name != TOTAL
    }
    moves.update({name: -stats["p50"] for name, stats in before.items() if name not in now})
    if not moves:
        return "nothing to compare (no traces in one of the windows)"

    def moved(name: str) -> bool:
        base = float(before.get(name, {}).get("p50", 0))
        return abs(float(moves[name])) > max(500_000.0, 0.25 * base)

    biggest = max(moves, key=lambda name: abs(moves[name]))
    flat = [n for n in moves if not moved(n)]
    flat_text = (
        f"{', '.join(flat)} flat within {ms(max(abs(moves[n]) for n in flat))}" if flat else ""
    )
    if not moved(biggest):
        return f"no component moved beyond noise at p50 ({flat_text})"
    p99 = now.get(biggest, {}).get("p99", 0) - before.get(biggest, {}).get("p99", 0)
    change = f"{biggest} {_signed(moves[biggest])} at p50 ({_signed(p99)} at p99)"
    others = [n for n in moves if moved(n) and n != biggest]
    also = (
        f"; also moved: {', '.join(f'{n} {_signed(moves[n])}' for n in others)}" if others else ""
    )
    points_to = _points_to(biggest)
    if biggest.endswith(" remote") and moves[biggest] > 0:
        points_to = (
            _kernel_evidence(biggest.removesuffix(" remote"), current, baseline) or points_to
        )
    return f"{change}{'; ' + flat_text if flat_text else ''}{also}: {points_to}"


def _kernel_evidence(edge: str, current: dict[str, Any], baseline: dict[str, Any]) -> str:
    """What TCP_INFO at either end of the calls' connections says about a rise in remote
    time, or "" when the spans carried none in one of the windows."""
    now, before = current.get("edges", {}).get(edge, {}), baseline.get("edges", {}).get(edge, {})
    caller, _, callee = edge.partition("->")
    ends = [
        _End(name, now[key], before[key])
        for key, name in (("tcp", caller), ("tcp_callee", callee))
        if now.get(key) and before.get(key)
    ]
    if not ends:
        return ""
    moved = [end for end in ends if end.moved]
    if not moved:
        said = "; ".join(f"{end.srtt} at {end.name}'s end" for end in ends)
        return (
            f"but srtt on those connections did not follow ({said}): the delay sits in a "
            "userspace hop (a proxy, a sidecar, kube-proxy in userspace mode) that TCP on this "
            "connection cannot see, not in the network below it"
        )
    retransmits = sum(end.retransmits for end in ends)
    loss = " and loss" if retransmits > 0 else ""
    said = "; ".join(f"{end.srtt} at {end.name}'s end" for end in moved)
    evidence = f"srtt {said}, {retransmits:.2f} retransmissions per request"
    if len(moved) == len(ends) or len(ends) == 1:
        return (
            f"the kernel agrees: {evidence}: delay{loss} on the path between {caller} and "
            f"{callee}, not in either app"
        )
    flat = next(end for end in ends if not end.moved)
    return (
        f"the kernel agrees at {moved[0].name}'s end ({evidence}) but not at {flat.name}'s "
        f"({flat.srtt}): delay{loss} on the network between {caller} and {callee}, beyond a "
        f"hop that ends {flat.name}'s TCP connection (a proxy or sidecar), not in either app"
    )


def end_moved(now: dict[str, Any], before: dict[str, Any]) -> bool:
    """Whether one end's TCP_INFO (an edge's "tcp" or "tcp_callee") moved from `before` to
    `now`: srtt more than doubled, by 0.5 ms or more, or the end began to resend (0.05
    retransmissions per request more)."""
    srtt_now, srtt_before = now["srtt"]["p50"], before["srtt"]["p50"]
    resent = float(now["retransmits"]["mean"]) - float(before["retransmits"]["mean"]) >= 0.05
    return bool(srtt_now - srtt_before > max(500_000, srtt_before) or resent)


class _End:
    """One end's testimony in two windows, as the diagnosis cites it."""

    def __init__(self, name: str, now: dict[str, Any], before: dict[str, Any]) -> None:
        self.name = name
        self.srtt = f"{_span(before['srtt']['p50'])} -> {_span(now['srtt']['p50'])}"
        self.retransmits = float(now["retransmits"]["mean"])
        self.moved = end_moved(now, before)


def _span(ns: float) -> str:
    return f"{ns / 1e9:.2f} s" if ns >= 1e9 else f"{ns / 1e6:.3f} ms"


def _signed(ns: float) -> str:
    sign = "+" if ns >= 0 else "-"
    value = abs(ns)
    return f"{sign}{value / 1e9:.2f} s" if value >= 1e9 else f"{sign}{value / 1e6:.3f} ms"


def _points_to(component: str) -> str:
    if component.endswith(" remote"):
        caller, _, callee = component.removesuffix(" remote").partition("->")
        return (
            f"the network path between {caller} and {callee}: the client's connection pool, "
            "kube-proxy / the Service, the overlay, the nodes' interfaces (the application "
            "time on both ends did not explain it)"
        )
    service = component.removesuffix(" self")
    return (
        f"{service}'s own work (its code, CPU, or a dependency it does not trace), not the network"
    )
