"""`python -m bench --quick` as `make bench` runs it (shortened): it finishes, prints the table
and writes a JSON with every figure, each with a target and a pass/miss mark."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT
from tests.system_packages import ensure_commands

ITEMS = {1, 2, 3, 4, 5, 6}
EXPECTED = (
    "stock: throughput",
    "sampled: CPU per 1000 requests",
    "standard/stock CPU per request",
    "lean/stock CPU per request",
    "standard/stock throughput",
    "sampled 10%/untraced CPU per request",
    "sampled 10%/untraced throughput",
    "standard/untraced throughput",
    "standard/untraced CPU per request",
    "lean encoder: saving per request",
    "lean spans + head stamp: saving",
    "metrics on/off throughput",
    "TCP_INFO per request, in full",
    "its share of a traced request",
    "TCP_INFO in place, per request",
    "serial p50 standard",
    "serial p99 standard",
    "serial standard p50 - QUERY_DELAY_MS",
    "remote-calls floor p50, standard",
    "remote-calls floor p50, lean",
    "remote-calls floor p99",
    "proxy: added p50",
    "proxy: throughput / direct",
    "collector ingest",
    "breakdown from the store",
    "breakdown over HTTP api_v3 from `netgap collect`",
    "web tier RSS after",
    "API tier RSS after",
)


@pytest.mark.timeout(600)
def test_quick_bench_reports_every_figure_with_target_and_mark(tmp_path: Path) -> None:
    if not ensure_commands(("wrk",), "wrk"):
        pytest.skip("needs wrk (apt-get install wrk), and could not install it here")
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(out.read_text())
    assert {"date", "machine", "tool", "figures", "rounds"} <= document.keys()
    assert {"cpus", "model", "kernel", "python"} <= document["machine"].keys()
    assert "wrk" in document["tool"]["http"]
    figures = document["figures"]
    assert {f["item"] for f in figures} == ITEMS
    for figure in figures:
        assert {"name", "value", "unit", "target", "pass"} <= figure.keys()
        assert isinstance(figure["value"], int | float)
        assert (figure["target"] == "-") == (figure["pass"] is None), figure
    names = [f["name"].strip() for f in figures]
    for expected in EXPECTED:
        matching = [f for f in figures if f["name"].strip().startswith(expected)]
        assert matching, (expected, names)
    targeted = [f for f in figures if f["pass"] is not None]
    # issue 16's five stack ratios, two lean pieces and two floors; the proxy's two, ingest,
    # the breakdown from the store and over api_v3 (issue 18), two RSS; issue 8's metrics
    # cost: one figure each
    assert len(targeted) == 17
    for figure in targeted:
        assert figure["name"] in done.stdout
        assert ("pass" if figure["pass"] else "MISS") in done.stdout
