"""Spans for the collector's tests: from the real OpenTelemetry SDK, or made to measure."""

import secrets
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from netgap.model import CLIENT, INTERNAL, SERVER, Event, Span

NOW_NS = time.time_ns()
MS = 1_000_000
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


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def make_span(
    trace_id: str,
    *,
    name: str = "GET /",
    service: str = "apitier",
    kind: int = SERVER,
    start_ns: int = NOW_NS,
    duration_ns: int = 5 * MS,
    parent_span_id: str = "",
    span_id: str | None = None,
    attributes: dict[str, Any] | None = None,
    events: Sequence[Event] = (),
    status_code: int = 0,
    resource: dict[str, Any] | None = None,
) -> Span:
    return Span(
        trace_id=trace_id,
        span_id=span_id or new_span_id(),
        parent_span_id=parent_span_id,
        name=name,
        kind=kind,
        start_ns=start_ns,
        end_ns=start_ns + duration_ns,
        service=service,
        attributes=attributes if attributes is not None else {"http.route": "/"},
        resource=resource if resource is not None else {"service.name": service},
        events=tuple(events),
        status_code=status_code,
        scope_name="netgap.tests",
        scope_version="1.0",
    )


def two_tier_trace(start_ns: int = NOW_NS, trace_id: str | None = None) -> list[Span]:
    """webtier SERVER -> webtier CLIENT -> apitier SERVER -> apitier INTERNAL."""
    trace_id = trace_id or new_trace_id()
    web = make_span(trace_id, service="webtier", start_ns=start_ns, duration_ns=20 * MS)
    call = make_span(
        trace_id,
        name="GET",
        service="webtier",
        kind=CLIENT,
        start_ns=start_ns + 1 * MS,
        duration_ns=15 * MS,
        parent_span_id=web.span_id,
        events=(Event("connect", start_ns + 2 * MS, {"reused": False}),),
    )
    api = make_span(
        trace_id,
        service="apitier",
        start_ns=start_ns + 4 * MS,
        duration_ns=10 * MS,
        parent_span_id=call.span_id,
    )
    query = make_span(
        trace_id,
        name="fast-query",
        service="apitier",
        kind=INTERNAL,
        start_ns=start_ns + 5 * MS,
        duration_ns=2 * MS,
        parent_span_id=api.span_id,
    )
    return [web, call, api, query]
