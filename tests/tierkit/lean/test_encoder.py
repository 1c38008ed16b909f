"""Lean mode's OTLP encoder writes the very bytes the SDK's encoder does, or refuses to start."""

import logging
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import AttributeValue

from tierkit.lean.encoder import Encoder, EncoderMismatch, LeanOTLPSpanExporter, probe

ODD_VALUES: dict[str, AttributeValue] = {
    "str": "GET",
    "empty": "",
    "unicode": "héllo ✓ 𝄞",
    "true": True,
    "false": False,
    "zero": 0,
    "small": 7,
    "big": 2**62 + 12345,
    "negative": -1,
    "very negative": -(2**63),
    "float": 3.25,
    "float zero": 0.0,
    "float negative": -1e-300,
    "strs": ("a", "", "ü"),
    "ints": [1, -2, 300],
    "floats": [0.5, 2.0],
    "bools": [True, False],
    "empty list": [],
}


def finished(provider: TracerProvider, memory: InMemorySpanExporter) -> list[ReadableSpan]:
    provider.force_flush()
    return list(memory.get_finished_spans())


def provider_with(resource: Resource) -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider(resource=resource)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def varied_spans() -> list[ReadableSpan]:
    web, web_memory = provider_with(Resource({"service.name": "webtier", "n": 1}))
    api, api_memory = provider_with(
        Resource({"service.name": "apitier", "list": ("x", "y")}, schema_url="https://s/1")
    )
    tracer = web.get_tracer("tierkit.lean")
    versioned = web.get_tracer(
        "other.scope", "1.2.3", schema_url="https://schema/2", attributes={"scope.attr": 5}
    )
    remote_parent = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "v1"), ("x", "y")]),
    )
    with tracer.start_as_current_span(
        "GET /",
        context=trace.set_span_in_context(trace.NonRecordingSpan(remote_parent)),
        kind=SpanKind.SERVER,
        attributes=ODD_VALUES,
    ) as server:
        server.add_event("first byte")
        server.add_event("with attributes", {"a": 1, "b": "two", "c": [1.5]}, timestamp=123)
        server.set_status(Status(StatusCode.ERROR, "it broke: ✗"))
        with versioned.start_as_current_span(
            "GET", kind=SpanKind.CLIENT, links=[Link(remote_parent, {"why": "batch"})]
        ) as client:
            client.set_status(StatusCode.OK)
        with tracer.start_span("", kind=SpanKind.PRODUCER):
            pass
    api_tracer = api.get_tracer("apitier")
    for kind in SpanKind:
        api_tracer.start_span(f"kind {kind.name}", kind=kind).end()
    spans = finished(web, web_memory) + finished(api, api_memory)
    # interleaved resources and scopes: groups in order of first appearance
    return spans[::2] + spans[1::2]


def test_bytes_equal_the_sdk_encoders() -> None:
    spans = varied_spans()
    expected = encode_spans(spans).SerializePartialToString()
    encoder = Encoder()
    assert encoder.request(spans) == expected
    assert encoder.request(spans) == expected  # again, from its caches


@pytest.mark.parametrize("count", [0, 1, 3])
def test_small_batches(count: int) -> None:
    spans = varied_spans()[:count]
    assert Encoder().request(spans) == encode_spans(spans).SerializePartialToString()


def test_a_value_it_cannot_encode_is_left_out_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    provider, memory = provider_with(Resource({"service.name": "s"}))
    span = provider.get_tracer("t").start_span("s", attributes={"ok": 1, "bad": "\ud800"})
    span.end()
    spans = finished(provider, memory)
    with caplog.at_level(logging.ERROR):
        ours = Encoder().request(spans)
    assert "Failed to encode key bad" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert ours == encode_spans(spans).SerializePartialToString()
    assert "Failed to encode key bad" in caplog.text


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**64 + 5, [1, 2**70]])
def test_an_integer_out_of_int64_is_left_out_as_the_sdk_does(
    value: AttributeValue, caplog: pytest.LogCaptureFixture
) -> None:
    provider, memory = provider_with(Resource({"service.name": "s"}))
    span = provider.get_tracer("t").start_span("s", attributes={"ok": 1, "huge": value})
    span.end()
    spans = finished(provider, memory)
    with caplog.at_level(logging.ERROR):
        ours = Encoder().request(spans)
        theirs = encode_spans(spans).SerializePartialToString()
    assert ours == theirs  # not wrapped to a small number: left out
    assert caplog.text.count("Failed to encode key huge") == 2


def test_the_probe_passes_on_this_sdk() -> None:
    probe(Encoder())  # what LeanOTLPSpanExporter runs when it is made


def test_the_probe_fails_loudly_when_the_sdk_stores_attributes_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An SDK release that renamed the span's private attribute store: the encoder would read
    # nothing and lose every attribute without a word, so the lean exporter must refuse to start.
    # (Moved once the span has ended, which is all the encoder ever sees.)
    original = SdkSpan.end

    def renamed(self: SdkSpan, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._renamed_attributes = self._attributes  # type: ignore[attr-defined]
        del self._attributes

    monkeypatch.setattr(SdkSpan, "end", renamed)
    monkeypatch.setattr(SdkSpan, "attributes", property(lambda self: self._renamed_attributes))
    monkeypatch.setattr(SdkSpan, "dropped_attributes", property(lambda self: 0))
    with pytest.raises(EncoderMismatch, match="TRACING_MODE=standard"):
        probe(Encoder())
    with pytest.raises(EncoderMismatch):
        LeanOTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")
