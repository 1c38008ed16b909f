"""Telemetry settings from OTEL_* and a trace backend that is down."""

import logging
import time
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.harness import OtlpReceiver, api_tier, free_port, running, web_tier
from tierkit.env import SettingsError
from tierkit.export import OutageAwareExporter
from tierkit.telemetry import TelemetrySettings


def settings(**env: str) -> TelemetrySettings:
    return TelemetrySettings.from_env(env, default_service="svc")


def test_defaults_are_otlp_over_http_to_localhost() -> None:
    s = settings()
    assert (s.disabled, s.exporters, s.protocol) == (False, ("otlp",), "http/protobuf")
    assert s.endpoint == "http://localhost:4318/v1/traces"


@pytest.mark.parametrize(
    ("env", "endpoint"),
    [
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"},
            "http://collector:4318/v1/traces",
        ),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:1/x"}, "http://c:1/x"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "http://localhost:4317"),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"},
            "http://c:4317",
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_PROTOCOL": "bogus"},
            "http://localhost:4317",
        ),
    ],
)
def test_endpoint_resolution_follows_the_otlp_spec(env: dict[str, str], endpoint: str) -> None:
    assert settings(**env).endpoint == endpoint


def test_exporter_lists_and_none() -> None:
    assert settings(OTEL_TRACES_EXPORTER="console, otlp").exporters == ("console", "otlp")
    assert settings(OTEL_TRACES_EXPORTER="none").exporters == ()
    assert settings(OTEL_SDK_DISABLED="TRUE").disabled


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_SDK_DISABLED": "maybe"}, "OTEL_SDK_DISABLED"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        settings(**env)


def spans(count: int) -> list[object]:
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for i in range(count):
        provider.get_tracer("t").start_span(f"s{i}").end()
    return list(memory.get_finished_spans())


def test_outage_is_one_warning_then_fast_drops_then_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens here yet
    inner = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=1)
    exporter = OutageAwareExporter(inner, "the backend", probe_every_s=0.5)
    batch = spans(3)
    with caplog.at_level(logging.INFO):
        assert exporter.export(batch) is SpanExportResult.FAILURE  # type: ignore[arg-type]
        started = time.monotonic()
        for _ in range(20):
            assert exporter.export(batch) is SpanExportResult.FAILURE  # type: ignore[arg-type]
        assert time.monotonic() - started < 0.2  # dropped without trying the dead backend
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert "trace export to the backend failing" in warnings[0].getMessage()

    # The backend comes up on that port; after the probe interval spans flow again.
    receiver = OtlpReceiver(port)
    try:
        time.sleep(0.6)
        assert exporter.export(batch) is SpanExportResult.SUCCESS  # type: ignore[arg-type]
        assert len(receiver.snapshot()) == 3
        assert "recovered; at least 63 spans were dropped" in caplog.records[-1].getMessage()
    finally:
        receiver.close()
        exporter.shutdown()


def test_tiers_serve_every_request_with_the_trace_backend_down(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    api = api_tier(tmp_path, None, OTEL_EXPORTER_OTLP_ENDPOINT=dead)
    with running(api):
        web = web_tier(tmp_path, None, f"{api.url}/", OTEL_EXPORTER_OTLP_ENDPOINT=dead)
        with running(web), httpx.Client() as client:
            statuses = [client.get(f"{web.url}/").status_code for _ in range(200)]
    assert statuses == [200] * 200
    for tier in (web, api):
        lines = tier.log_lines()
        warnings = [line for line in lines if line["level"] == "warning"]
        assert len(warnings) == 1, warnings
        assert warnings[0]["msg"].startswith(f"trace export to {dead}/v1/traces failing")
        assert sum(line["msg"] == "request" and line["path"] == "/" for line in lines) == 200
