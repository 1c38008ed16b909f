"""`netgap breakdown` from a local store (--store, Store.find_breakdowns) reports what it
reports over the query API of the collector holding that store, to the last number."""

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netgap.analysis import build_report
from netgap.collector.server import Collector, serving_in_thread
from netgap.otlp_proto import request_from_spans
from netgap.trace_source import JaegerQuery
from tests.harness import ROOT
from tests.netgap.collector.conftest import local_settings
from tests.netgap.collector.odd_traces import BASE_NS, lab_trace

S = 1_000_000_000
WINDOW = ["--start", "2026-11-25T12:00:00Z", "--end", "2026-11-25T12:01:00Z"]


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    with serving_in_thread(Collector(local_settings(tmp_path / "traces.db"))) as running:
        yield running


def fill(collector: Collector, seed: int, traces: int, odd: float, step_ns: int) -> None:
    rnd = random.Random(seed)
    for i in range(traces):
        for spans in lab_trace(rnd, BASE_NS + i * step_ns, odd):
            collector.store.add_request(request_from_spans(spans))


def reports(collector: Collector, **kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    with JaegerQuery(collector.query_url, per_query=kw.pop("per_query", 1000)) as source:
        remote = build_report(source, "webtier", **kw)
    local = build_report(collector.store, "webtier", **kw)
    assert remote["source"] == collector.query_url
    assert local["source"] == str(collector.store.path)
    return remote, local


def test_the_store_reports_what_the_query_api_reports(collector: Collector) -> None:
    fill(collector, 7, 400, 0.3, 100_000_000)  # 40 s of traces, odd ones among them
    for bucket_ns in (None, 5 * S):
        remote, local = reports(
            collector, start_ns=BASE_NS, end_ns=BASE_NS + 60 * S, bucket_ns=bucket_ns
        )
        assert remote["summary"]["traces"] == 400
        assert json.dumps(local["summary"]) == json.dumps(remote["summary"])
    part = {"start_ns": BASE_NS + 10 * S, "end_ns": BASE_NS + 20 * S}
    remote, local = reports(collector, **part)
    assert json.dumps(local["summary"]) == json.dumps(remote["summary"])


def test_a_limit_takes_the_earliest_traces_on_both_paths(collector: Collector) -> None:
    fill(collector, 8, 300, 0.0, 100_000_000)
    remote, local = reports(
        collector, start_ns=BASE_NS, end_ns=BASE_NS + 60 * S, limit=120, per_query=50
    )
    assert remote["summary"]["traces"] == 120
    assert json.dumps(local["summary"]) == json.dumps(remote["summary"])


def netgap_breakdown(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netgap", "breakdown", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_the_command_reads_a_store_file(collector: Collector, tmp_path: Path) -> None:
    fill(collector, 9, 200, 0.2, 200_000_000)
    local = netgap_breakdown("--store", str(collector.store.path), *WINDOW, "--json")
    remote = netgap_breakdown("--source", collector.query_url, *WINDOW, "--json")
    assert local.returncode == 0, local.stderr
    assert json.loads(local.stdout)["summary"] == json.loads(remote.stdout)["summary"]
    table = netgap_breakdown("--store", str(collector.store.path), *WINDOW)
    assert f"200 traces of webtier from {collector.store.path}" in table.stdout

    missing = netgap_breakdown("--store", str(tmp_path / "nothing.db"), *WINDOW)
    assert missing.returncode == 2
    assert "--store" in missing.stderr
    assert not (tmp_path / "nothing.db").exists()
    both = netgap_breakdown("--store", "x.db", "--source", collector.query_url, *WINDOW)
    assert both.returncode == 2
    assert "both name the traces: pick one" in both.stderr
