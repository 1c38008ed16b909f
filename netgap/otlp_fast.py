"""api_v3's search answer straight to breakdowns, decoded against a schema of only what a
breakdown reads (msgspec): ids, kinds, times, the connection-phase events, and each
attribute's key with its value left undecoded until a breakdown asks for it.

Jaeger 2.x and `netgap collect` write camelCase OTLP/JSON with times as strings; an answer in
any other shape the lenient reader (otlp_json) accepts fails the schema, and is then read by
that reader instead: the same breakdowns either way.
"""

from typing import Any

import msgspec

from netgap.breakdown import (
    FAST_KEYS,
    PHASE_EVENTS,
    LeanSpan,
    break_down,
    break_down_chain,
)
from netgap.model import Span
from netgap.otlp_json import (
    Found,
    OtlpJsonError,
    _id,
    _int,
    _span,
    any_value,
    attributes,
    breakdowns_from_json,
)


class _KeyValue(msgspec.Struct):
    key: str
    value: msgspec.Raw = msgspec.Raw(b"null")


class _Event(msgspec.Struct):
    timeUnixNano: str | int = 0
    name: str = ""
    attributes: list[_KeyValue] = []


class _Span(msgspec.Struct):
    traceId: str
    spanId: str
    parentSpanId: str = ""
    name: str = ""
    kind: int = 0
    startTimeUnixNano: str | int = 0
    endTimeUnixNano: str | int = 0
    attributes: list[_KeyValue] = []
    events: list[_Event] = []
    status: msgspec.Raw = msgspec.Raw(b"null")


class _ScopeSpans(msgspec.Struct):
    scope: msgspec.Raw = msgspec.Raw(b"null")
    spans: list[_Span] = []


class _ResourceSpans(msgspec.Struct):
    resource: msgspec.Raw = msgspec.Raw(b"null")
    scopeSpans: list[_ScopeSpans] = []


class _TracesData(msgspec.Struct):
    resourceSpans: list[_ResourceSpans] = []


class _Answer(msgspec.Struct):
    result: _TracesData


_DECODE = msgspec.json.Decoder(_Answer).decode
_DECODE_ANY = msgspec.json.Decoder().decode


def breakdowns_from_bytes(body: bytes) -> dict[str, Found]:
    """otlp_json.breakdowns_from_json of the decoded `body` (an api_v3 search answer): each
    trace's start and breakdown, by trace id; OtlpJsonError for a document that is not
    OTLP/JSON trace data."""
    try:
        answer = _DECODE(body)
    except msgspec.ValidationError:
        return breakdowns_from_json(_decode_any(body))  # not the usual shape: read leniently
    except msgspec.DecodeError as exc:
        raise OtlpJsonError(f"not JSON: {exc}") from None
    lean: dict[str, list[LeanSpan]] = {}
    where: dict[str, list[tuple[_Span, str, _ResourceSpans, _ScopeSpans]]] = {}
    for rs in answer.result.resourceSpans:
        service = _service(rs.resource)
        for ss in rs.scopeSpans:
            for span in ss.spans:
                trace_id = _id(span.traceId, 16, "traceId")
                lean.setdefault(trace_id, []).append(_lean(span, service))
                where.setdefault(trace_id, []).append((span, service, rs, ss))
    found: dict[str, Found] = {}
    resources: dict[int, dict[str, Any]] = {}
    for trace_id, spans in lean.items():
        start = min(span[5] for span in spans)
        chain = break_down_chain(trace_id, spans)
        if chain is not None:
            found[trace_id] = start, chain
            continue
        full = [
            _full(span, service, rs, ss, resources) for span, service, rs, ss in where[trace_id]
        ]
        breakdown = break_down(full)
        if breakdown is not None:
            found[trace_id] = start, breakdown
    return found


def _decode_any(body: bytes) -> Any:
    try:
        return _DECODE_ANY(body)
    except msgspec.DecodeError as exc:
        raise OtlpJsonError(f"not JSON: {exc}") from None


def _service(resource: msgspec.Raw) -> str:
    """service.name from a resource, read without decoding its other attributes' values."""
    attributes = _decode_any(resource) or {}
    if not isinstance(attributes, dict):
        raise OtlpJsonError("resource must be an object")
    for kv in attributes.get("attributes") or ():
        if isinstance(kv, dict) and kv.get("key") == "service.name":
            return str(any_value(kv.get("value")))
    return "unknown_service"


def _lean(span: _Span, service: str) -> LeanSpan:
    """As otlp_json._lean makes it: ids and times checked, the facts a breakdown reads."""
    times = {
        e.name: _int(e.timeUnixNano, "events.timeUnixNano", 0)
        for e in span.events
        if e.name in PHASE_EVENTS
    }
    facts = {
        kv.key: any_value(_decode_any(kv.value)) for kv in span.attributes if kv.key in FAST_KEYS
    }
    return (
        0,
        _id(span.spanId, 8, "spanId"),
        _id(span.parentSpanId, 8, "parentSpanId", optional=True),
        service,
        span.kind,
        _int(span.startTimeUnixNano, "startTimeUnixNano", 0),
        _int(span.endTimeUnixNano, "endTimeUnixNano", 0),
        (times, facts),
    )


def _full(
    span: _Span,
    service: str,
    rs: _ResourceSpans,
    ss: _ScopeSpans,
    resources: dict[int, dict[str, Any]],
) -> Span:
    """The span as otlp_json's lenient reader makes it (lean), for break_down."""
    raw = {
        "traceId": span.traceId,
        "spanId": span.spanId,
        "parentSpanId": span.parentSpanId,
        "name": span.name,
        "kind": span.kind,
        "startTimeUnixNano": span.startTimeUnixNano,
        "endTimeUnixNano": span.endTimeUnixNano,
        "attributes": [{"key": kv.key, "value": _decode_any(kv.value)} for kv in span.attributes],
        "events": [
            {
                "timeUnixNano": e.timeUnixNano,
                "name": e.name,
                "attributes": [
                    {"key": kv.key, "value": _decode_any(kv.value)} for kv in e.attributes
                ],
            }
            for e in span.events
        ],
        "status": _decode_any(span.status),
    }
    resource = resources.get(id(rs))
    if resource is None:
        decoded = _decode_any(rs.resource) or {}
        resource = resources[id(rs)] = attributes(
            decoded.get("attributes") if isinstance(decoded, dict) else None
        )
    scope = _decode_any(ss.scope) or {}
    return _span(raw, "span", service, resource, scope if isinstance(scope, dict) else {}, True)
