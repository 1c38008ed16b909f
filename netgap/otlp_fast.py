"""api_v3's search answer straight to breakdowns, with no Span made for a trace of the common
shape (netgap.collector.chains: the store's fast path, asked the same question).

`breakdowns_from_bytes` decodes the answer against a schema of only what a breakdown reads
(msgspec): ids, kinds, times, the connection-phase events, and each attribute's key with its
value left undecoded until a breakdown asks for it. `breakdowns_from_json` does the same for
an already decoded document, by the lenient reader's rules (otlp_json).

Jaeger 2.x and `netgap collect` write camelCase OTLP/JSON with times as strings; an answer in
any other shape the lenient reader (otlp_json) accepts fails the schema, and is then read by
that reader instead: the same breakdowns either way.
"""

from collections.abc import Mapping
from typing import Any

import msgspec

from netgap.breakdown import TraceBreakdown, break_down
from netgap.collector.chains import FAST_KEYS, PHASE_EVENTS, Chain, LeanSpan, break_down_chain
from netgap.model import Span
from netgap.otlp_json import (
    OtlpJsonError,
    _get,
    _id,
    _int,
    _list,
    _object,
    _span,
    any_value,
    attributes,
)

Found = tuple[int, "TraceBreakdown | Chain"]  # a trace's start (its earliest span's), its breakdown


def breakdowns_from_json(document: Any) -> dict[str, Found]:
    """The start and breakdown of every trace of an OTLP/JSON document (api_v3's search
    answer), by trace id. The start is the store's (the trace's earliest span's); the
    breakdown exactly what break_down gives for spans_from_json's spans, but for a trace of
    the common shape (collector.chains.break_down_chain) no Span is made, only the lean tuple the
    store's fast path reads; other traces are decoded in full and given to break_down."""
    if not isinstance(document, Mapping):
        raise OtlpJsonError("expected a JSON object")
    if "result" in document:
        document = document["result"]
        if not isinstance(document, Mapping):
            raise OtlpJsonError('"result" must be an object')
    lean: dict[str, list[LeanSpan]] = {}
    raws: dict[str, list[tuple[Any, str, str, dict[str, Any], Mapping[str, Any]]]] = {}
    for r_index, rs in enumerate(_list(_get(document, "resourceSpans"), '"resourceSpans"')):
        where = f"resourceSpans[{r_index}]"
        rs = _object(rs, where)
        resource = attributes(_get(_object(rs.get("resource"), f"{where}.resource"), "attributes"))
        service = str(resource.get("service.name", "unknown_service"))
        for s_index, ss in enumerate(_list(_get(rs, "scopeSpans"), f"{where}.scopeSpans")):
            ss_where = f"{where}.scopeSpans[{s_index}]"
            ss = _object(ss, ss_where)
            scope = _object(_get(ss, "scope"), f"{ss_where}.scope")
            for index, raw in enumerate(_list(_get(ss, "spans"), f"{ss_where}.spans")):
                at = f"{ss_where}.spans[{index}]"
                trace_id, span = _lean_json(raw, at, service)
                lean.setdefault(trace_id, []).append(span)
                raws.setdefault(trace_id, []).append((raw, at, service, resource, scope))
    found: dict[str, Found] = {}
    for trace_id, spans in lean.items():
        start = min(span[5] for span in spans)
        chain = break_down_chain(trace_id, spans)
        if chain is not None:
            found[trace_id] = start, chain
            continue
        full = [_span(*r, lean=True) for r in raws[trace_id]]
        breakdown = break_down(full)
        if breakdown is not None:
            found[trace_id] = start, breakdown
    return found


def _lean_json(raw: Any, where: str, service: str) -> tuple[str, LeanSpan]:
    """A span's trace id and its lean tuple, its ids and times checked as _span checks them."""
    if not isinstance(raw, Mapping):
        raise OtlpJsonError(f"{where} must be an object")
    times: dict[str, int] = {}
    for e in _list(_get(raw, "events"), f"{where}.events"):
        if isinstance(e, Mapping) and _get(e, "name") in PHASE_EVENTS:
            times[str(e["name"])] = _int(_get(e, "timeUnixNano"), f"{where}.events.timeUnixNano", 0)
    items = _get(raw, "attributes")
    # the last of a repeated key, as attributes() keeps it
    facts = {
        str(kv["key"]): any_value(kv.get("value"))
        for kv in (items if isinstance(items, list) else ())
        if isinstance(kv, Mapping) and kv.get("key") in FAST_KEYS
    }
    return _id(_get(raw, "traceId"), 16, f"{where}.traceId"), (
        0,
        _id(_get(raw, "spanId"), 8, f"{where}.spanId"),
        _id(_get(raw, "parentSpanId"), 8, f"{where}.parentSpanId", optional=True),
        service,
        _int(_get(raw, "kind"), f"{where}.kind", default=0),
        _int(_get(raw, "startTimeUnixNano"), f"{where}.startTimeUnixNano", default=0),
        _int(_get(raw, "endTimeUnixNano"), f"{where}.endTimeUnixNano", default=0),
        (times, facts),
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
    """breakdowns_from_json of the decoded `body` (an api_v3 search answer): each
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
    """As _lean_json makes it: ids and times checked, the facts a breakdown reads."""
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
