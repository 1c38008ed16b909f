"""Item 5, the breakdown's speed: from the store (the lean read, the arithmetic alone, the full
decode it replaces, which must give the same summary) and over HTTP api_v3 as `netgap
breakdown` reads."""

import statistics
import time
from pathlib import Path
from typing import Any

from bench.report import Figure
from bench.run import Run
from netgap.aggregate import Aggregate
from netgap.analysis import build_report
from netgap.breakdown import break_down
from netgap.collector.records import TraceQuery
from netgap.collector.store import Store
from netgap.model import Span
from netgap.trace_source import JaegerQuery


def breakdown_over_http(run: Run, query: str, windows: list[dict[str, Any]]) -> None:
    """As `netgap breakdown` reads: api_v3 over HTTP, JSON decoded, broken down."""
    start = int(windows[0]["started"] * 1e9)
    started = time.perf_counter()
    with JaegerQuery(query) as source:
        summary = build_report(
            source, "webtier", start, time.time_ns(), limit=run.plan.breakdown_traces // 5
        )["summary"]
    seconds = time.perf_counter() - started
    run.rounds["breakdown_http"] = {"traces": summary["traces"], "seconds": seconds}
    run.http_rate = summary["traces"] / seconds


def breakdown_from_store(run: Run, db: Path) -> None:
    """The figure: Store.find_breakdowns (the lean read: one kept row per trace of the
    common shape, worked out by break_down's fast path when the trace was written)
    + Aggregate, end to end. Beside it: the arithmetic alone (break_down + Aggregate on
    spans already decoded) and the full-decode read it replaces (Store.find_traces, every
    span decoded, then break_down), which must give the very same summary."""
    plan = run.plan
    query = TraceQuery(
        start_min_ns=0, start_max_ns=2**62, service="webtier", limit=plan.breakdown_traces
    )
    with Store(db) as store:
        # The timed rounds first: the full decode's 50k span objects, alive beside them,
        # would make every garbage collection in them walk those too.
        runs, aggregate, summary = _lean_reads(run, store, query)
        started = time.perf_counter()
        traces = _grouped(store.find_traces(query))
        reference = _break_down_all(traces)
        full_seconds = time.perf_counter() - started
    arithmetic = _arithmetic_rounds(max(1, min(plan.rounds, 3)), traces, reference.traces)
    run.rounds["breakdown_store"] = runs
    run.rounds["breakdown_arithmetic"] = arithmetic
    run.rounds["breakdown_full_decode"] = {
        "traces": reference.traces, "seconds": round(full_seconds, 3)
    }  # fmt: skip
    same = summary == reference.summary()
    spans = sum(len(t) for t in traces)
    run.notes.append(
        f"breakdown: {aggregate.traces} real traces of the lab stack ({spans} spans) per "
        "round, read with Store.find_breakdowns (SQLite: for a trace of the common shape "
        "one row, the answer of break_down's fast path kept when the trace was written, "
        "so ingest pays for it and is measured with it; break_down for any other) + "
        "Aggregate; the target applies to this end-to-end figure. Its summary "
        + ("equals" if same else "DIFFERS FROM")
        + " that of Store.find_traces (every span decoded) + break_down + Aggregate"
    )
    run.say("  traces/s per round: " + ", ".join(f"{r['traces_per_s']:,}" for r in runs))
    run.add(
        Figure(5, "breakdown from the store (read, decode, break down)",
               statistics.median(r["traces_per_s"] for r in runs), "traces/s", ">=", 50_000),
        Figure(5, "  breakdown arithmetic alone (break_down + Aggregate, decoded spans)",
               statistics.median(r["traces_per_s"] for r in arithmetic), "traces/s"),
        Figure(5, "  breakdown from the store, every span decoded (find_traces)",
               reference.traces / full_seconds, "traces/s"),
        Figure(5, "  breakdown over HTTP api_v3 (netgap breakdown's path)",
               run.http_rate, "traces/s"),
    )  # fmt: skip


def _lean_reads(
    run: Run, store: Store, query: TraceQuery
) -> tuple[list[dict[str, Any]], Aggregate, dict[str, Any]]:
    """The timed rounds of Store.find_breakdowns + Aggregate; the last round's aggregate and
    summary beside them."""
    runs: list[dict[str, Any]] = []
    for i in range(max(1, run.plan.rounds)):
        with run.meter.measure() as usage:
            aggregate = Aggregate().add_all(store.find_breakdowns(query))
            summary = aggregate.summary()
        runs.append({
            "round": i + 1, "traces": aggregate.traces,
            "seconds": round(usage.wall_s, 3),
            "traces_per_s": round(aggregate.traces / usage.wall_s),
            "other_cpu_s": round(usage.other_s, 2),
        })  # fmt: skip
    return runs, aggregate, summary


def _arithmetic_rounds(rounds: int, traces: list[list[Span]], count: int) -> list[dict[str, Any]]:
    """break_down + Aggregate alone, on spans already decoded (`count` traces of them)."""
    arithmetic: list[dict[str, Any]] = []
    for i in range(rounds):
        started = time.perf_counter()
        _break_down_all(traces)
        seconds = time.perf_counter() - started
        arithmetic.append({
            "round": i + 1, "traces": count, "seconds": round(seconds, 3),
            "traces_per_s": round(count / seconds),
        })  # fmt: skip
    return arithmetic


def _grouped(spans: list[Span]) -> list[list[Span]]:
    """find_traces gives each trace's spans together."""
    traces: list[list[Span]] = []
    last = None
    for span in spans:
        if span.trace_id != last:
            traces.append([])
            last = span.trace_id
        traces[-1].append(span)
    return traces


def _break_down_all(traces: list[list[Span]]) -> Aggregate:
    aggregate = Aggregate()
    for spans in traces:
        breakdown = break_down(spans)
        if breakdown is not None:
            aggregate.add(breakdown)
    aggregate.summary()
    return aggregate
