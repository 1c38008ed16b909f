"""Spans for the collector's tests: from the real OpenTelemetry SDK, or made to measure."""

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from netgap.model import CLIENT, INTERNAL, Event, Span
from tests.netgap.spans import MS, NOW_NS, make_span, new_trace_id

S = 1_000_000_000


def sdk_trace(service: str = "webtier", **resource: str) -> list[ReadableSpan]:
    """One trace as the tiers make it: a SERVER span, a CLIENT child with events and an
    error status, an INTERNAL grandchild; recorded by the OpenTelemetry SDK."""
    provider = TracerProvider(resource=Resource.create({"service.name": service, **resource}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("netgap.tests", "1.2.3")
    with (
        tracer.start_as_current_span(
            "GET /", kind=SpanKind.SERVER, attributes={"http.request.method": "GET", "n": 3}
        ),
        tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as client,
    ):
        client.add_event("connect", {"peer": "127.0.0.1", "ok": True, "ms": 1.5})
        client.set_attribute("tags", ["a", "b"])
        client.set_status(Status(StatusCode.ERROR, "upstream said no"))
        with tracer.start_as_current_span("fast-query"):
            pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def hex_id(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    return f"{context.trace_id:032x}"


# What the collector tests' made-to-measure spans carry beyond the model's defaults.
ROUTE = {"http.route": "/"}
TESTS_SCOPE = ("netgap.tests", "1.0")


def two_tier_trace(start_ns: int = NOW_NS, trace_id: str | None = None) -> list[Span]:
    """webtier SERVER -> webtier CLIENT -> apitier SERVER -> apitier INTERNAL."""
    trace_id = trace_id or new_trace_id()
    web = make_span(
        trace_id,
        service="webtier",
        start_ns=start_ns,
        duration_ns=20 * MS,
        attributes=ROUTE,
        scope=TESTS_SCOPE,
    )
    call = make_span(
        trace_id,
        name="GET",
        service="webtier",
        kind=CLIENT,
        start_ns=start_ns + 1 * MS,
        duration_ns=15 * MS,
        parent_span_id=web.span_id,
        attributes=ROUTE,
        events=(Event("connect", start_ns + 2 * MS, {"reused": False}),),
        scope=TESTS_SCOPE,
    )
    api = make_span(
        trace_id,
        service="apitier",
        start_ns=start_ns + 4 * MS,
        duration_ns=10 * MS,
        parent_span_id=call.span_id,
        attributes=ROUTE,
        scope=TESTS_SCOPE,
    )
    query = make_span(
        trace_id,
        name="fast-query",
        service="apitier",
        kind=INTERNAL,
        start_ns=start_ns + 5 * MS,
        duration_ns=2 * MS,
        parent_span_id=api.span_id,
        attributes=ROUTE,
        scope=TESTS_SCOPE,
    )
    return [web, call, api, query]
