"""`netgap breakdown` with a metrics source beside the traces: real tiers exporting to a real
collector, the web tier's /metrics read straight (metrics+http://) or through a real Prometheus
(prometheus+http://, Debian's package: installed if it may be, else skipped with the reason).
The two agree on a healthy run, and the command says so when they do not."""

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from netgap.address import Address
from netgap.collector.server import Collector
from netgap.fault.spec import Faults
from netgap.timeparse import format_rfc3339_ns
from tests.harness import ROOT, Tier, api_tier, free_port, running, web_tier
from tests.netgap.fault.conftest import running_proxy
from tests.netgap.stack import collector, otlp_url, query_url
from tests.system_packages import ensure_commands

N = 60
EDGE = "webtier->apitier"
OTLP = {"OTEL_BSP_SCHEDULE_DELAY": "50"}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Collector]:
    with collector(tmp_path / "traces.db") as running_collector:
        yield running_collector


def call(web: Tier, n: int) -> None:
    with httpx.Client(timeout=10) as client:
        assert {client.get(f"{web.url}/").status_code for _ in range(n)} == {200}


def breakdown(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netgap", "breakdown", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip


def window(start_ns: int, end_ns: int) -> list[str]:
    return ["--start", format_rfc3339_ns(start_ns), "--end", format_rfc3339_ns(end_ns)]


def stored(lab: Collector, traces: int) -> None:
    for _ in range(200):  # bounded: 10 s for the last spans to arrive
        if len(lab.store.recent_traces(traces + 10, "webtier")) >= traces:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {traces} traces stored")


def report(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def test_on_a_healthy_run_the_metric_and_the_traces_agree(tmp_path: Path, lab: Collector) -> None:
    with (
        running(api_tier(tmp_path, None, OTEL_EXPORTER_OTLP_ENDPOINT=otlp_url(lab))) as api,
        running(
            web_tier(tmp_path, None, f"{api.url}/", OTEL_EXPORTER_OTLP_ENDPOINT=otlp_url(lab))
        ) as web,
    ):
        start_ns = time.time_ns()
        call(web, N)
        metrics = f"metrics+{web.url}/metrics"
        stored(lab, N)
        end_ns = time.time_ns()
        both = breakdown("--source", query_url(lab), "--source", metrics, *window(start_ns, end_ns))
        as_json = report(breakdown("--source", metrics, "--source", query_url(lab), "--json",
                                   *window(start_ns, end_ns)))  # fmt: skip
        alone = report(breakdown("--source", metrics, "--json", *window(start_ns, end_ns)))
    assert both.returncode == 0, both.stderr
    assert f"remote time from the metric at {web.url}/metrics" in both.stdout
    assert "metric and traces agree" in both.stdout
    metric = as_json["metric"]
    assert metric["edges"][EDGE]["calls"] == N
    assert metric["disagreements"] == []
    assert as_json["summary"]["edges"][EDGE]["calls"] == N
    assert alone["metric"]["edges"][EDGE]["calls"] == N
    assert "summary" not in alone  # a metrics source alone reads no traces


def test_when_the_traces_miss_the_slow_calls_it_says_they_disagree(
    tmp_path: Path, lab: Collector
) -> None:
    # The story's second clue: while the network was broken the agent went silent, so the
    # traces saw only the calm after. Here: slow calls first, then a window of fast ones.
    otlp = otlp_url(lab)
    with (
        running(api_tier(tmp_path, None, OTEL_EXPORTER_OTLP_ENDPOINT=otlp)) as api,
        running_proxy(Address("127.0.0.1", api.port), Faults(latency_s=0.03)) as proxy,
        running(
            web_tier(tmp_path, None, f"{proxy.address.url}/", OTEL_EXPORTER_OTLP_ENDPOINT=otlp)
        ) as web,
    ):
        call(web, 3 * N // 2)
        proxy.set_faults(Faults())
        calm_ns = time.time_ns()
        call(web, N // 2)
        stored(lab, 2 * N)
        done = breakdown(
            "--source", query_url(lab), "--source", f"metrics+{web.url}/metrics",
            *window(calm_ns, time.time_ns()),
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"metric and traces DISAGREE: {EDGE}: remote p50" in done.stdout
    assert "cover different times" in done.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--source", "metrics+http://a/metrics", "--source", "metrics+http://b/metrics"],
         "one trace source and one metrics source at most"),
        (["--source", "metrics+ftp://a"], "after metrics+ comes an http(s) URL"),
        (["--source", "metrics+http://a/metrics", "--csv"], "--csv needs traces"),
        (["--source", "metrics+http://a/metrics", "--plot", "x.png"], "--plot needs traces"),
    ],
)  # fmt: skip
def test_bad_source_combinations_are_one_line_and_exit_2(args: list[str], says: str) -> None:
    done = breakdown(*args)
    assert done.returncode == 2
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_unreachable_metric_source_names_it_and_exits_non_zero() -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"
    done = breakdown("--source", f"metrics+{url}", "--since", "1m")
    assert done.returncode == 1
    assert f"cannot reach the metric source at {url}" in done.stderr
    assert "Traceback" not in done.stderr


# -- through a real Prometheus


def prometheus() -> str:
    if not ensure_commands(("prometheus",), "prometheus"):
        pytest.skip("needs Prometheus (apt-get install prometheus; installed here when root)")
    return shutil.which("prometheus") or "prometheus"


def test_a_prometheus_query_api_gives_the_windows_calls(tmp_path: Path, lab: Collector) -> None:
    binary = prometheus()
    otlp = otlp_url(lab)
    port = free_port()
    with (
        running(api_tier(tmp_path, None, OTEL_EXPORTER_OTLP_ENDPOINT=otlp)) as api,
        running(web_tier(tmp_path, None, f"{api.url}/", OTEL_EXPORTER_OTLP_ENDPOINT=otlp)) as web,
    ):
        config = tmp_path / "prometheus.yml"
        target = {"targets": [f"127.0.0.1:{web.port}"]}
        config.write_text(  # JSON is YAML
            json.dumps({
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [{"job_name": "webtier", "static_configs": [target]}],
            })
        )  # fmt: skip
        server = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"),
        )  # fmt: skip
        try:
            source = f"http://127.0.0.1:{port}"
            wait_for_scrapes(source, 2)
            # A window of many scrape intervals: increase() extrapolates from the samples
            # inside it to its edges, so a short one would count calls that never were.
            start_ns = time.time_ns()
            time.sleep(3)
            call(web, N)
            time.sleep(4)  # the last calls scraped, and some more samples after them
            end_ns = time.time_ns()
            stored(lab, N)
            found = report(breakdown("--source", query_url(lab), "--source", f"prometheus+{source}",
                                     "--json", *window(start_ns, end_ns)))  # fmt: skip
        finally:
            server.terminate()
            server.wait(10)
    metric = found["metric"]
    assert metric["scope"] == "the calls that ended in the window"
    # increase() extrapolates to the window's edges: close to N, not exactly N.
    assert 0.8 * N <= metric["edges"][EDGE]["calls"] <= 1.25 * N
    assert metric["disagreements"] == []


def wait_for_scrapes(source: str, n: int) -> None:
    query = 'count_over_time(up{job="webtier"}[1m])'
    for _ in range(300):  # bounded: 30 s for Prometheus to start and scrape
        try:
            body = httpx.get(f"{source}/api/v1/query", params={"query": query}, timeout=2).json()
            result = body["data"]["result"]
            if result and float(result[0]["value"][1]) >= n:
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError("Prometheus did not scrape the web tier in 30 s")
