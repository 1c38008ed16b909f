"""`netgap check`: passes on a healthy stack, and names the cause when traces go missing."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netgap.collector.server import Collector
from tests.harness import ROOT, api_tier, free_port, running, web_tier
from tests.netgap.stack import collector, otlp_url, query_url


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    with collector(tmp_path_factory.mktemp("check") / "traces.db") as c:
        yield c


def check(web: str, source: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netgap", "check", "--web", web, "--source", source, *extra],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def run_check(
    tmp_path: Path,
    backend: Collector,
    api_env: dict[str, str] | None = None,
    web_env: dict[str, str] | None = None,
    *extra: str,
) -> subprocess.CompletedProcess[str]:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_url(backend), "OTEL_BSP_SCHEDULE_DELAY": "100"}
    api = api_tier(tmp_path, None, **{**endpoint, **(api_env or {})})
    with running(api):
        web = web_tier(tmp_path, None, f"{api.url}/", **{**endpoint, **(web_env or {})})
        with running(web):
            return check(f"{web.url}/", query_url(backend), "--timeout", "3s", *extra)


def test_passes_on_a_healthy_stack(tmp_path: Path, backend: Collector) -> None:
    result = run_check(tmp_path, backend)
    assert result.returncode == 0, result.stderr
    assert "OK: 5 spans from apitier, webtier arrived" in result.stdout
    assert "webtier->apitier remote" in result.stdout


DEAD = f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize(
    ("api_env", "web_env", "cause"),
    [
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": DEAD},
            {"OTEL_EXPORTER_OTLP_ENDPOINT": DEAD},
            "did not arrive",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": DEAD}, {}, "only webtier spans"),
        ({"OTEL_SERVICE_NAME": "api-blue"}, {}, "service names differ"),
        ({}, {"OTEL_TRACES_SAMPLER": "always_off"}, "sampled out"),
        ({}, {"OTEL_SDK_DISABLED": "true"}, "tracing is off in the web tier"),
    ],
    ids=["tiers export elsewhere", "one tier only", "wrong names", "sampled out", "tracing off"],
)
def test_names_the_cause(
    tmp_path: Path, backend: Collector, api_env: dict[str, str], web_env: dict[str, str], cause: str
) -> None:
    result = run_check(tmp_path, backend, api_env, web_env)
    assert result.returncode == 1
    assert cause in result.stderr
    assert "Traceback" not in result.stderr


def test_collector_stopped(tmp_path: Path) -> None:
    dead_source = f"http://127.0.0.1:{free_port()}"
    api = api_tier(tmp_path, None, OTEL_EXPORTER_OTLP_ENDPOINT=dead_source)
    with running(api), running(web_tier(tmp_path, None, f"{api.url}/")) as web:
        result = check(f"{web.url}/", dead_source, "--timeout", "2s")
    assert result.returncode == 1
    assert "trace source is unreachable" in result.stderr


def test_web_tier_not_running(backend: Collector) -> None:
    result = check(f"http://127.0.0.1:{free_port()}/", query_url(backend))
    assert result.returncode == 1
    assert "the web tier is not reachable" in result.stderr


def test_bad_arguments_exit_2_naming_the_flag(backend: Collector) -> None:
    result = check("http://127.0.0.1:1/", query_url(backend), "--timeout", "soon")
    assert result.returncode == 2
    assert "argument --timeout" in result.stderr
