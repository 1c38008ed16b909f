"""Item 5, the collector's side: OTLP/HTTP protobuf ingest on one core, in spans/s."""

import os
import random
import statistics
import time

import httpx

from bench import stack
from bench.report import Figure
from bench.run import Run
from netgap.lab import running


def ingest(run: Run) -> None:
    """tests/netgap/collector/bench.py's set-up: the collector pinned to the first core on
    a fresh store, one client (this process) on the other, posting pre-built OTLP/HTTP
    protobuf requests of 512 spans back to back, the two tiers' parts of traces in turn."""
    from tests.netgap.collector.bench import WINDOW_NS, request_bodies  # imported late

    plan = run.plan
    rnd = random.Random(1)  # noqa: S311  (span ids, not secrets)
    total = plan.ingest_rounds * plan.ingest_batches + 1
    bodies = request_bodies(total, plan.ingest_spans, time.time_ns() - WINDOW_NS, rnd)
    proc, otlp = stack.collector("ingest-collector", run.logs, run.logs / "ingest.db", run.first)
    run.procs.append(proc)
    runs = []
    mine = stack.cores()
    with (
        running(proc),
        httpx.Client(headers={"content-type": "application/x-protobuf"}, timeout=30) as client,
    ):
        if run.last:
            os.sched_setaffinity(0, run.last)
        try:
            endpoint = otlp + "/v1/traces"
            client.post(endpoint, content=bodies[0]).raise_for_status()  # warm up
            for i in range(plan.ingest_rounds):
                batch = bodies[1 + i * plan.ingest_batches : 1 + (i + 1) * plan.ingest_batches]
                cpu = proc.cpu_s()
                with run.meter.measure() as usage:
                    for body in batch:
                        client.post(endpoint, content=body).raise_for_status()
                spans = len(batch) * plan.ingest_spans
                cpu = proc.cpu_s() - cpu
                runs.append({
                    "round": i + 1, "spans": spans, "seconds": round(usage.wall_s, 3),
                    "spans_per_s": round(spans / usage.wall_s),
                    "collector_cpu_us_per_span": round(cpu / spans * 1e6, 2),
                    "other_cpu_s": round(usage.other_s, 2),
                })  # fmt: skip
        finally:
            os.sched_setaffinity(0, set(mine))
    run.rounds["ingest"] = runs
    run.say("  spans/s per round: " + ", ".join(f"{r['spans_per_s']:,}" for r in runs))
    run.add(
        Figure(5, "collector ingest, OTLP/HTTP protobuf, one core",
               statistics.median(r["spans_per_s"] for r in runs), "spans/s", ">=", 20_000),
        Figure(5, "  collector CPU per span",
               statistics.median(r["collector_cpu_us_per_span"] for r in runs), "us"),
    )  # fmt: skip
