"""End to end: real tiers, the collector, and `netgap load` at 50 requests/s for 20 s. Every
request sent is one trace in the breakdown, every call is paired, and per trace the total is
exactly the sum of its parts."""

import asyncio
import time
from pathlib import Path

from netgap.aggregate import Aggregate
from netgap.breakdown import break_down
from netgap.loadgen import LoadConfig, run_load
from netgap.trace_source import JaegerQuery
from tests.harness import api_tier, running, web_tier
from tests.netgap.stack import collector, otlp_url, query_url

RATE, SECONDS = 50, 20


def test_every_request_sent_is_one_exact_trace(tmp_path: Path) -> None:
    with collector(tmp_path / "traces.db") as backend:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_url(backend), "OTEL_BSP_SCHEDULE_DELAY": "200"}
        api = api_tier(tmp_path, None, **env)
        with running(api), running(web_tier(tmp_path, None, f"{api.url}/", **env)) as web:
            start_ns = time.time_ns()
            result = asyncio.run(
                run_load(LoadConfig(url=f"{web.url}/", rate=RATE, duration_s=SECONDS))
            )
            end_ns = time.time_ns()
        # both tiers have stopped, so they have flushed every span
        assert result.sent == RATE * SECONDS
        assert result.ok == result.sent, result.errors
        with JaegerQuery(query_url(backend)) as source:
            traces = list(source.traces("webtier", start_ns, end_ns))
    aggregate = Aggregate()
    for spans in traces:
        breakdown = break_down(spans)
        assert breakdown is not None
        assert len(spans) == 5
        assert sum(breakdown.components().values()) == breakdown.total_ns
        assert not breakdown.unpaired
        aggregate.add(breakdown)
    summary = aggregate.summary()
    assert summary["traces"] == result.sent
    assert summary["identity_violations"] == 0
    edge = summary["edges"]["webtier->apitier"]
    assert edge["calls"] == result.sent
    assert edge["unpaired"] == 0
    assert edge["new_connections"] + edge["reused_connections"] == result.sent
    # On loopback the API's span may end microseconds after the web tier has its answer;
    # that is the only data-quality note a healthy run may carry.
    assert set(summary["data_quality"]["by_kind"]) <= {"server outlasts client"}
