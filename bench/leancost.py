"""What lean mode's encoder saves, alone: one request's five spans (as the tiers make them, with
contrib's attribute set, the phase events and the TCP testimony) encoded to OTLP by the SDK's
encoder and by tierkit.lean.encoder, in batches as the exporter sends them, side by side.

The spans piece's saving is what is left of lean mode's saving in the five-stack comparison
once this is taken out (bench/tracing.py)."""

import gc
import statistics
import time
from dataclasses import dataclass

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AnyValue

from tierkit.lean.encoder import Encoder

BATCH = 512  # the batch processor's default export size
TESTIMONY: dict[str, AnyValue] = {
    "netgap.tcp.new_connection": False, "netgap.tcp.rto_us": 201000, "netgap.tcp.lost": 0,
    "netgap.tcp.rttvar_us": 250, "netgap.tcp.snd_cwnd": 10, "netgap.tcp.min_rtt_us": 31,
    "netgap.tcp.delivery_rate_bps": 812345678, "netgap.tcp.bytes_retransmitted": 0,
    "netgap.tcp.srtt_us": 120, "netgap.tcp.retransmits": 0,
}  # fmt: skip
HTTP: dict[str, AnyValue] = {
    "http.request.method": "GET", "url.scheme": "http", "server.address": "127.0.0.1",
    "server.port": 8801, "network.protocol.version": "1.1", "http.response.status_code": 200,
}  # fmt: skip


@dataclass(frozen=True)
class EncoderCost:
    sdk_ns: float  # per request (five spans)
    lean_ns: float

    @property
    def saved_ns(self) -> float:
        return self.sdk_ns - self.lean_ns


def request_spans(count: int) -> list[ReadableSpan]:
    """`count` requests' spans, two services, as the tiers' exporters see them."""
    spans: list[ReadableSpan] = []
    for service in ("webtier", "apitier"):
        memory = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(memory))
        server = provider.get_tracer("opentelemetry.instrumentation.fastapi", "0.66b2")
        client = provider.get_tracer("opentelemetry.instrumentation.httpx", "0.66b2")
        inner = provider.get_tracer(service)
        for i in range(count):
            attributes: dict[str, AnyValue] = {
                **HTTP,
                "url.path": "/",
                "http.route": "/",
                "client.port": 40000 + i,
            }
            with server.start_as_current_span("GET /", kind=SpanKind.SERVER) as span:
                span.set_attributes(attributes)
                if service == "apitier":
                    span.set_attributes(TESTIMONY)
                    with inner.start_as_current_span("api-handler"):
                        inner.start_span("fast-query", attributes={"q": 2.0}).end()
                else:
                    with client.start_as_current_span("GET", kind=SpanKind.CLIENT) as call:
                        call.set_attributes({**HTTP, "url.full": "http://127.0.0.1:8801/"})
                        for name in ("connect", "request sent", "first byte", "body done"):
                            call.add_event(name)
                        call.set_attributes({**TESTIMONY, "netgap.remote_seconds": 0.0002})
        spans.extend(memory.get_finished_spans())
    return spans


def measure(requests: int = 2048, rounds: int = 7) -> EncoderCost:
    spans = request_spans(requests)
    batches = [spans[i : i + BATCH] for i in range(0, len(spans), BATCH)]
    encoder = Encoder()
    sdk, lean = [], []
    gc.collect()
    gc.disable()  # the collector's pauses land on whichever side runs then
    try:
        for _ in range(rounds):
            started = time.perf_counter_ns()
            for batch in batches:
                encode_spans(batch).SerializePartialToString()
            sdk.append((time.perf_counter_ns() - started) / requests)
            started = time.perf_counter_ns()
            for batch in batches:
                encoder.request(batch)
            lean.append((time.perf_counter_ns() - started) / requests)
    finally:
        gc.enable()
    return EncoderCost(statistics.median(sdk), statistics.median(lean))
