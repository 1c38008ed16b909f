"""`netgap breakdown` as a user runs it, against the collector holding traces with known parts:
the table, --json, --csv, --plot, and --baseline's diagnosis in words."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import httpx

from netgap.collector.server import Collector
from netgap.model import Span
from netgap.otlp_proto import request_from_spans
from tests.harness import ROOT
from tests.netgap.traces import BASE, MS, chain

WINDOW = ["--start", "2026-11-25T12:00:00Z", "--end", "2026-11-25T12:10:00Z"]


def store(collector: Collector, spans: list[Span]) -> None:
    assert collector.settings.otlp_http is not None
    response = httpx.post(
        f"{collector.settings.otlp_http.url}/v1/traces",
        content=request_from_spans(spans).SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
    )
    assert response.status_code == 200


def breakdown(collector: Collector, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "netgap",
            "breakdown",
            "--source",
            collector.settings.query.url,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def healthy_then_broken(collector: Collector) -> None:
    """20 healthy traces in the first 5 minutes; 20 with +500 ms of remote time after."""
    spans: list[Span] = []
    for i in range(40):
        broken = i >= 20
        remote = (250 * MS, 250 * MS) if broken else (150_000, 250_000)
        trace, _ = chain(start=BASE + i * 15_000 * MS, web_api_remote=remote, with_db=False)
        spans += trace
    store(collector, spans)


def test_table_json_csv_and_plot(collector: Collector, tmp_path: Path) -> None:
    healthy_then_broken(collector)
    table = breakdown(collector, *WINDOW, "--bucket", "5m")
    assert table.returncode == 0, table.stderr
    assert "netgap breakdown: 40 traces of webtier" in table.stdout
    for part in ("total", "webtier self", "webtier->apitier remote", "apitier self"):
        assert part in table.stdout
    assert "p50 per window:" in table.stdout
    assert "every outbound call paired" in table.stdout

    report = json.loads(breakdown(collector, *WINDOW, "--json", "--bucket", "5m").stdout)
    components = report["summary"]["components"]
    assert components["webtier->apitier remote"]["p50"] == 400_000  # 20 of each: nearest rank
    assert components["webtier->apitier remote"]["max"] == 500 * MS
    assert [b["traces"] for b in report["summary"]["buckets"]] == [20, 20]

    rows = list(csv.DictReader(io.StringIO(breakdown(collector, *WINDOW, "--csv").stdout)))
    remote = next(r for r in rows if r["component"] == "webtier->apitier remote")
    assert (remote["traces"], remote["max_ms"]) == ("40", "500.000000")

    png = tmp_path / "breakdown.png"
    plotted = breakdown(collector, *WINDOW, "--plot", str(png))
    assert plotted.returncode == 0, plotted.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_baseline_names_the_component_that_moved(collector: Collector, tmp_path: Path) -> None:
    healthy_then_broken(collector)
    before = breakdown(
        collector, "--start", "2026-11-25T12:00:00Z", "--end", "2026-11-25T12:05:00Z", "--json"
    )
    saved = tmp_path / "before.json"
    saved.write_text(before.stdout)
    after = ["--start", "2026-11-25T12:05:00Z", "--end", "2026-11-25T12:10:00Z"]
    for baseline in (str(saved), "2026-11-25T12:00:00Z..2026-11-25T12:05:00Z"):
        result = breakdown(collector, *after, "--baseline", baseline)
        assert result.returncode == 0, result.stderr
        diagnosis = result.stdout.split("diagnosis: ", 1)[1]
        assert diagnosis.startswith("webtier->apitier remote +499.600 ms at p50")
        assert "webtier self, apitier self flat within 0.000 ms" in diagnosis
        assert "the network path between webtier and apitier" in diagnosis


def test_nothing_moved(collector: Collector, tmp_path: Path) -> None:
    healthy_then_broken(collector)
    first = ["--start", "2026-11-25T12:00:00Z", "--end", "2026-11-25T12:02:30Z"]
    result = breakdown(
        collector, *first, "--baseline", "2026-11-25T12:02:30Z..2026-11-25T12:05:00Z"
    )
    assert "diagnosis: no component moved beyond noise" in result.stdout


def test_empty_window_and_bad_baseline(collector: Collector, tmp_path: Path) -> None:
    empty = breakdown(collector, "--start", "2020-01-01T00:00:00Z", "--end", "2020-01-01T00:10:00Z")
    assert empty.returncode == 0
    assert "no traces in this window" in empty.stdout
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2]")
    bad = breakdown(collector, *WINDOW, "--baseline", str(junk))
    assert bad.returncode == 2
    assert "--baseline" in bad.stderr
    assert "Traceback" not in bad.stderr
