"""Item 3: the remote-calls floor webtier->apitier on loopback, standard and lean: serial wrk
runs on a lab stack exporting to the lab's collector, then each run's window of traces broken
down as `netgap breakdown` does."""

import statistics
from typing import Any

from bench import stack
from bench.report import Figure
from bench.run import Run
from netgap.analysis import build_report
from netgap.breakdown import edge_name
from netgap.trace_source import JaegerQuery

REMOTE = f"{edge_name('webtier', 'apitier')} remote"
MS = 1e6  # ns per ms


def floor_traffic(run: Run, lab: stack.Tiers) -> list[dict[str, Any]]:
    """Serial wrk runs on `lab`: the windows whose traces `floor` reads."""
    run.say(f"remote-calls floor: {run.plan.rounds} serial runs on {lab.label} ...")
    windows = []
    for i in range(run.plan.rounds):
        loaded = run.load(lab, 1, run.plan.floor_s)
        windows.append({"round": i + 1, **loaded})
    return windows


def floor(run: Run, query: str, windows: list[dict[str, Any]], mode: str, limit: float) -> None:
    """Each window's traces broken down (api_v3 at `query`); the figures of `mode`."""
    with JaegerQuery(query) as source:
        for w in windows:
            start, end = int(w["started"] * 1e9), int(w["ended"] * 1e9)
            summary = build_report(source, "webtier", start, end)["summary"]
            remote = summary["components"].get(REMOTE, {})
            w["traces"] = summary["traces"]
            w["remote_p50_ms"] = remote.get("p50", 0) / MS
            w["remote_p99_ms"] = remote.get("p99", 0) / MS
            w["traces_with_warnings"] = summary["data_quality"]["traces_with_warnings"]
            for name in ("webtier self", "apitier self", "total"):
                w[f"{name.replace(' ', '_')}_p50_ms"] = (
                    summary["components"].get(name, {}).get("p50", 0) / MS
                )
    run.rounds[f"floor_{mode}"] = windows
    run.say(
        f"  {mode}: remote p50 per round: "
        + ", ".join(f"{w['remote_p50_ms']:.3f}" for w in windows)
        + " ms"
    )
    run.add(
        Figure(3, f"remote-calls floor p50, {mode} (webtier->apitier)",
               statistics.median(w["remote_p50_ms"] for w in windows), "ms", "<=", limit),
        Figure(3, f"remote-calls floor p99, {mode} (webtier->apitier)",
               statistics.median(w["remote_p99_ms"] for w in windows), "ms"),
    )  # fmt: skip
