"""OTLP protobuf messages <-> netgap.model.Span, the way netgap.otlp_json reads and writes
OTLP/JSON: ids as lowercase hex, a bytes attribute as its base64 text (as OTLP/JSON writes it),
an empty AnyValue as None.

`value` and `attributes` are the one decoder of protobuf AnyValues and attribute lists: the
collector (ingest, the store) and the readers above it (otlp_json, collector.chains) all
use these.
"""

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from netgap.model import Event, Span


def attributes(items: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in items}


def value(any_value: AnyValue) -> Any:
    which = any_value.WhichOneof("value")
    if which == "string_value":
        return any_value.string_value
    if which == "int_value":
        return any_value.int_value
    if which == "bool_value":
        return any_value.bool_value
    if which == "double_value":
        return any_value.double_value
    if which == "array_value":
        return [value(v) for v in any_value.array_value.values]
    if which == "kvlist_value":
        return attributes(any_value.kvlist_value.values)
    if which == "bytes_value":
        return base64.b64encode(any_value.bytes_value).decode("ascii")
    return None


def any_value(plain: Any) -> AnyValue:
    if isinstance(plain, bool):
        return AnyValue(bool_value=plain)
    if isinstance(plain, int):
        return AnyValue(int_value=plain)
    if isinstance(plain, float):
        return AnyValue(double_value=plain)
    if isinstance(plain, str):
        return AnyValue(string_value=plain)
    if isinstance(plain, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in plain]))
    if isinstance(plain, Mapping):
        return AnyValue(kvlist_value=KeyValueList(values=key_values(plain)))
    return AnyValue() if plain is None else AnyValue(string_value=str(plain))


def key_values(plain: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=any_value(v)) for key, v in plain.items()]


def span_from_pb(
    pb: PbSpan, service: str, resource: dict[str, Any], scope_name: str, scope_version: str
) -> Span:
    return Span(
        trace_id=pb.trace_id.hex(),
        span_id=pb.span_id.hex(),
        parent_span_id=pb.parent_span_id.hex(),
        name=pb.name,
        kind=pb.kind,
        start_ns=pb.start_time_unix_nano,
        end_ns=pb.end_time_unix_nano,
        service=service,
        attributes=attributes(pb.attributes) if pb.attributes else {},
        resource=resource,
        events=tuple(Event(e.name, e.time_unix_nano, attributes(e.attributes)) for e in pb.events),
        status_code=pb.status.code,
        status_message=pb.status.message,
        scope_name=scope_name,
        scope_version=scope_version,
    )


def spans_from_request(request: ExportTraceServiceRequest) -> list[Span]:
    spans: list[Span] = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name", "unknown_service"))
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            spans.extend(
                span_from_pb(pb, service, resource, scope.name, scope.version)
                for pb in scope_spans.spans
            )
    return spans


def span_to_pb(span: Span) -> PbSpan:
    """Raises ValueError for an id that is not hex, OverflowError for an out-of-range int."""
    return PbSpan(
        trace_id=bytes.fromhex(span.trace_id),
        span_id=bytes.fromhex(span.span_id),
        parent_span_id=bytes.fromhex(span.parent_span_id),
        name=span.name,
        kind=span.kind,  # type: ignore[arg-type]  # an int is what the enum holds
        start_time_unix_nano=span.start_ns,
        end_time_unix_nano=span.end_ns,
        attributes=key_values(span.attributes),
        events=[
            PbSpan.Event(name=e.name, time_unix_nano=e.time_ns, attributes=key_values(e.attributes))
            for e in span.events
        ],
        status=Status(code=span.status_code, message=span.status_message),  # type: ignore[arg-type]
    )


def request_from_spans(spans: Iterable[Span]) -> ExportTraceServiceRequest:
    """One ResourceSpans per distinct resource and one ScopeSpans per scope in it, in the order
    first seen."""
    groups: dict[str, tuple[Mapping[str, Any], dict[tuple[str, str], list[PbSpan]]]] = {}
    for span in spans:
        key = repr(list(span.resource.items()))
        _, scopes = groups.setdefault(key, (span.resource, {}))
        scopes.setdefault((span.scope_name, span.scope_version), []).append(span_to_pb(span))
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=key_values(resource)),
                scope_spans=[
                    ScopeSpans(
                        scope=InstrumentationScope(name=name, version=version), spans=pb_spans
                    )
                    for (name, version), pb_spans in scopes.items()
                ],
            )
            for resource, scopes in groups.values()
        ]
    )
