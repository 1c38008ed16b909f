"""tierkit.metrics on its own: the exposition parses, buckets resolve 0.5 ms to 30 s, statuses
count by class, and the span counters add up against the real SDK: every ended span is either
exported or counted dropped (a full queue, or a failed export)."""

import itertools
import sys
import threading
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client.parser import text_string_to_metric_families

from tierkit.export import CountingBatchSpanProcessor, OutageAwareExporter
from tierkit.metrics import BUCKETS, OutboundMetrics, TierMetrics, error_label, status_label


def samples(metrics: TierMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def count(metrics: TierMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value


def test_buckets_resolve_half_a_millisecond_to_thirty_seconds() -> None:
    assert BUCKETS[0] < 0.0005
    assert 0.0005 in BUCKETS
    assert BUCKETS[-1] == 30.0
    assert all(b / a <= 2.5 for a, b in itertools.pairwise(BUCKETS))


@pytest.mark.parametrize(
    ("status", "label", "error"),
    [(200, "200", ""), (404, "404", ""), (503, "503", "503"), (42, "other", ""), (None, "", "")],
)
def test_status_and_error_labels(status: int | None, label: str, error: str) -> None:
    # error.type as the HTTP conventions define it: the status code of a 5xx answer only
    assert status_label(status) == label
    assert error_label(status) == error
    assert error_label(None, "ConnectError") == "ConnectError"


def test_observations_show_up_in_the_exposition() -> None:
    metrics = TierMetrics()
    outbound = OutboundMetrics(metrics.registry, "a->b", address="api", port=8801)
    metrics.observe_request("GET", "/", 200, 0.003)
    metrics.observe_request("GET", "/", 502, 0.004)
    outbound.observe_call("GET", 200, 0.002, new_connection=True)
    outbound.observe_call("GET", None, 0.5, new_connection=False, error="ConnectError")
    outbound.observe_remote(0.0004)
    found = samples(metrics)
    route = (("http_request_method", "GET"), ("http_route", "/"), ("url_scheme", "http"))
    ok = (*route, ("http_response_status_code", "200"), ("error_type", ""))
    assert found[("http_server_request_duration_seconds_count", tuple(sorted(ok)))] == 1
    assert found[("http_server_request_duration_seconds_sum", tuple(sorted(ok)))] == 0.003
    bad = (*route, ("http_response_status_code", "502"), ("error_type", "502"))
    assert found[("http_server_request_duration_seconds_count", tuple(sorted(bad)))] == 1
    target = (
        ("edge", "a->b"),
        ("http_request_method", "GET"),
        ("server_address", "api"),
        ("server_port", "8801"),
    )
    error = (*target, ("http_response_status_code", ""), ("error_type", "ConnectError"))
    assert found[("http_client_request_duration_seconds_count", tuple(sorted(error)))] == 1
    assert found[("http_client_connections_created_total", (("edge", "a->b"),))] == 1
    assert found[("netgap_remote_seconds_bucket", (("edge", "a->b"), ("le", "0.0005")))] == 1
    assert found[("netgap_remote_seconds_bucket", (("edge", "a->b"), ("le", "0.00025")))] == 0


class HeldExporter(SpanExporter):
    """Holds the export thread on its first batch until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(10)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


def test_a_full_queue_counts_every_span_it_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2")
    metrics = TierMetrics()
    exporter = HeldExporter()
    provider = TracerProvider()
    provider.add_span_processor(CountingBatchSpanProcessor(exporter, metrics.spans))
    tracer = provider.get_tracer("test")
    for i in range(20):
        tracer.start_span(f"s{i}").end()
    exporter.release.set()
    provider.force_flush()
    provider.shutdown()
    dropped = count(metrics, "netgap_spans_dropped_total")
    assert dropped > 0
    assert exporter.exported + dropped == 20


class CountingExporter(SpanExporter):
    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


def test_drops_are_counted_exactly_while_the_export_thread_drains_the_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full queue, drained by the export thread between any two bytecodes of the ending
    thread (a tiny switch interval): a drop counted by checking the queue outside a lock the
    export thread takes too would count spans that were exported."""
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "8")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2")
    interval = sys.getswitchinterval()
    metrics = TierMetrics()
    exporter = CountingExporter()
    provider = TracerProvider()
    provider.add_span_processor(CountingBatchSpanProcessor(exporter, metrics.spans))
    tracer = provider.get_tracer("test")
    sys.setswitchinterval(1e-6)
    try:
        for i in range(20_000):
            tracer.start_span(f"s{i}").end()
    finally:
        sys.setswitchinterval(interval)
    provider.force_flush()
    provider.shutdown()
    dropped = count(metrics, "netgap_spans_dropped_total")
    assert dropped > 0
    assert exporter.exported + dropped == 20_000


class RefusingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.FAILURE


def test_a_failed_export_counts_its_spans_dropped() -> None:
    metrics = TierMetrics()
    exporter = OutageAwareExporter(RefusingExporter(), "http://nowhere", counters=metrics.spans)
    provider = TracerProvider()
    provider.add_span_processor(CountingBatchSpanProcessor(exporter, metrics.spans))
    for i in range(5):
        provider.get_tracer("test").start_span(f"s{i}").end()
    provider.force_flush()
    provider.shutdown()
    assert count(metrics, "netgap_spans_dropped_total") == 5
    assert count(metrics, "netgap_span_export_failures_total") >= 1
    assert count(metrics, "netgap_spans_exported_total") == 0
