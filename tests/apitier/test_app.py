"""The API tier as a process: its answer, its spans, its settings."""

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.harness import (
    INTERNAL,
    ROOT,
    SERVER,
    GrpcOtlpReceiver,
    OtlpReceiver,
    api_tier,
    running,
    tier_env,
)
from tierkit.server_timing import server_timing_durations


def trace_of(response: httpx.Response) -> str:
    return response.headers["traceresponse"].split("-")[1]


@pytest.mark.parametrize("delay_ms", [0.0, 2.0, 40.0])
def test_get_root_says_hello_inside_api_handler_and_fast_query(
    tmp_path: Path, receiver: OtlpReceiver, delay_ms: float
) -> None:
    with running(api_tier(tmp_path, receiver, QUERY_DELAY_MS=str(delay_ms))) as api:
        response = httpx.get(f"{api.url}/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == "Hello, from the API tier!"
    assert server_timing_durations(response.headers["server-timing"])["app"] >= delay_ms
    spans = receiver.wait_for_trace(trace_of(response), 3)
    server, handler, query = (
        next(s for s in spans if s.kind == SERVER),
        next(s for s in spans if s.name == "api-handler"),
        next(s for s in spans if s.name == "fast-query"),
    )
    assert (handler.kind, query.kind) == (INTERNAL, INTERNAL)
    assert handler.parent_span_id == server.span_id
    assert query.parent_span_id == handler.span_id
    assert query.duration_ms >= delay_ms
    assert {s.service for s in spans} == {"apitier"}


def test_service_name_and_resource_come_from_otel_env(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    env = {"OTEL_SERVICE_NAME": "api-blue", "OTEL_RESOURCE_ATTRIBUTES": "deployment.env=lab"}
    with running(api_tier(tmp_path, receiver, **env)) as api:
        response = httpx.get(f"{api.url}/")
    spans = receiver.wait_for_trace(trace_of(response), 3)
    assert {s.service for s in spans} == {"api-blue"}


def test_spans_go_over_otlp_grpc_when_asked(tmp_path: Path) -> None:
    receiver = GrpcOtlpReceiver()
    try:
        env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        with running(api_tier(tmp_path, receiver, **env)) as api:
            response = httpx.get(f"{api.url}/")
        assert len(receiver.wait_for_trace(trace_of(response), 3)) == 3
    finally:
        receiver.close()


def test_sdk_disabled_serves_without_tracing(tmp_path: Path, receiver: OtlpReceiver) -> None:
    with running(api_tier(tmp_path, receiver, OTEL_SDK_DISABLED="true")) as api:
        response = httpx.get(f"{api.url}/")
        assert response.text == "Hello, from the API tier!"
        assert "traceresponse" not in response.headers
        assert "app" in server_timing_durations(response.headers["server-timing"])
    assert receiver.snapshot() == []
    assert "tracing" in next(line for line in api.log_lines() if line["msg"] == "telemetry")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, "PORT must be an integer, got 'http'"),
        ({"PORT": "70000"}, "PORT must be from 1 to 65535"),
        ({"QUERY_DELAY_MS": "-1"}, "QUERY_DELAY_MS must be from 0"),
        ({"QUERY_DELAY_MS": "nan"}, "QUERY_DELAY_MS must be from 0"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER must be a list of"),
        # the SDK checks these against each other (the batch's default is 512)
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "256"}, "OTEL_BSP_*: max_export_batch_size must be less"),
        ({"METRICS_ENABLED": "maybe"}, "METRICS_ENABLED"),
        ({"TCP_INFO_ENABLED": "sometimes"}, "TCP_INFO_ENABLED"),
    ],
)
def test_bad_settings_exit_2_naming_the_variable(env: dict[str, str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "apitier"],
        env=tier_env(None, **env),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"apitier: {message}")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("env", "exported", "sampler"),
    [
        ({"OTEL_TRACES_SAMPLER": "always_off"}, False, "AlwaysOffSampler"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"},
            False,
            "TraceIdRatioBased{0.0}",
        ),
        ({"OTEL_TRACES_EXPORTER": "none"}, False, "ParentBased"),
        ({"OTEL_TRACES_SAMPLER": "always_on"}, True, "AlwaysOnSampler"),
    ],
)
def test_sampler_and_exporter_come_from_otel_env(
    tmp_path: Path, receiver: OtlpReceiver, env: dict[str, str], exported: bool, sampler: str
) -> None:
    with running(api_tier(tmp_path, receiver, **env)) as api:
        response = httpx.get(f"{api.url}/")
        assert response.status_code == 200
        # Propagation works whether or not the span is sampled or exported.
        assert len(trace_of(response)) == 32
    setup = next(line for line in api.log_lines() if line["msg"] == "telemetry")
    assert setup["sampler"].startswith(sampler)
    if exported:
        assert len(receiver.wait_for_trace(trace_of(response), 3)) == 3
    else:
        assert receiver.snapshot() == []
