"""OTLP/JSON as Jaeger's api_v3 speaks it: `{"resourceSpans": [...]}`, lowercase hex ids,
nanosecond times as decimal strings, enums as integers.

`spans_from_json` reads any such document (with or without api_v3's `{"result": ...}` wrapper);
`json_from_spans` writes one. Reading is lenient where producers differ (camelCase or
snake_case keys, numbers or strings for times and ints) and strict where a wrong value would
corrupt a number (ids, times): those raise OtlpJsonError.
"""

import base64
import binascii
import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from netgap.breakdown import RETRANSMITS_KEY, SRTT_KEY
from netgap.model import CLIENT, Event, Span
from netgap.otlp_proto import value as pb_value

_HEX = re.compile(r"^[0-9a-fA-F]*$")


class OtlpJsonError(ValueError):
    """A document that is not OTLP/JSON trace data; the message says where."""


@functools.cache
def _snake(camel: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel)


def _get(obj: Mapping[str, Any], camel: str, default: Any = None) -> Any:
    if camel in obj:
        return obj[camel]
    return obj.get(_snake(camel), default)


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise OtlpJsonError(f"{where} must be a list")
    return value


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise OtlpJsonError(f"{where} must be an object")
    return value


def _id(value: Any, length: int, what: str, *, optional: bool = False) -> str:
    if value in (None, "") and optional:
        return ""
    if not isinstance(value, str):
        raise OtlpJsonError(f"{what} must be a string, got {value!r}")
    if len(value) == length * 2 and _HEX.match(value):
        return value.lower()
    # Some producers write protobuf's default base64 for bytes fields.
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == length:
        return raw.hex()
    raise OtlpJsonError(f"{what} must be {length * 2} hex digits, got {value!r}")


def _int(value: Any, what: str, default: int | None = None) -> int:
    if value is None and default is not None:
        return default
    if isinstance(value, bool):
        raise OtlpJsonError(f"{what} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise OtlpJsonError(f"{what} must be an integer, got {value!r}")


def any_value(value: Any) -> Any:
    """An OTLP AnyValue object as a plain Python value."""
    if not isinstance(value, Mapping) or not value:
        return None
    key, inner = next(iter(value.items()))
    if key in ("stringValue", "string_value"):
        return str(inner)
    if key in ("boolValue", "bool_value"):
        return bool(inner)
    if key in ("intValue", "int_value"):
        return _int(inner, "intValue")
    if key in ("doubleValue", "double_value"):
        return float(inner)
    if key in ("arrayValue", "array_value"):
        return [any_value(v) for v in _get(inner, "values", [])]
    if key in ("kvlistValue", "kvlist_value"):
        return attributes(_get(inner, "values", []))
    if key in ("bytesValue", "bytes_value"):
        return str(inner)
    return None


def attributes(items: Any, keep: frozenset[str] | None = None) -> dict[str, Any]:
    """An OTLP attribute list as a dict; with `keep`, only those keys (the others' values are
    not read)."""
    if not isinstance(items, list):
        return {}
    return {
        str(item["key"]): any_value(item.get("value"))
        for item in items
        if isinstance(item, Mapping) and "key" in item and (keep is None or item["key"] in keep)
    }


# What a breakdown reads of a span that is no call: the kernel's testimony of a callee's end.
_SERVED_KEYS = frozenset((SRTT_KEY, RETRANSMITS_KEY))


def spans_from_json(document: Any, *, lean: bool = False) -> list[Span]:
    """The spans of an OTLP/JSON document (or Jaeger's api_v3 `{"result": ...}`). `lean`: only
    what a breakdown reads, the attributes and events of CLIENT spans and the TCP_INFO
    attributes of the others (every span's ids, times, kind, name and status are read and
    checked all the same)."""
    if not isinstance(document, Mapping):
        raise OtlpJsonError("expected a JSON object")
    if "result" in document:
        document = document["result"]
        if not isinstance(document, Mapping):
            raise OtlpJsonError('"result" must be an object')
    resource_spans = _list(_get(document, "resourceSpans"), '"resourceSpans"')
    spans: list[Span] = []
    for r_index, rs in enumerate(resource_spans):
        where = f"resourceSpans[{r_index}]"
        rs = _object(rs, where)
        resource_obj = _object(rs.get("resource"), f"{where}.resource")
        resource = attributes(_get(resource_obj, "attributes", []))
        service = str(resource.get("service.name", "unknown_service"))
        for s_index, ss in enumerate(_list(_get(rs, "scopeSpans"), f"{where}.scopeSpans")):
            ss_where = f"{where}.scopeSpans[{s_index}]"
            ss = _object(ss, ss_where)
            scope = _object(_get(ss, "scope"), f"{ss_where}.scope")
            for index, raw in enumerate(_list(_get(ss, "spans"), f"{ss_where}.spans")):
                spans.append(
                    _span(raw, f"{ss_where}.spans[{index}]", service, resource, scope, lean)
                )
    return spans


def _span(
    raw: Any,
    where: str,
    service: str,
    resource: dict[str, Any],
    scope: Mapping[str, Any],
    lean: bool = False,
) -> Span:
    if not isinstance(raw, Mapping):
        raise OtlpJsonError(f"{where} must be an object")
    status = _object(_get(raw, "status"), f"{where}.status")
    kind = _int(_get(raw, "kind"), f"{where}.kind", default=0)
    full = not lean or kind == CLIENT
    return Span(
        trace_id=_id(_get(raw, "traceId"), 16, f"{where}.traceId"),
        span_id=_id(_get(raw, "spanId"), 8, f"{where}.spanId"),
        parent_span_id=_id(_get(raw, "parentSpanId"), 8, f"{where}.parentSpanId", optional=True),
        name=str(_get(raw, "name", "")),
        kind=kind,
        start_ns=_int(_get(raw, "startTimeUnixNano"), f"{where}.startTimeUnixNano", default=0),
        end_ns=_int(_get(raw, "endTimeUnixNano"), f"{where}.endTimeUnixNano", default=0),
        service=service,
        attributes=attributes(_get(raw, "attributes", []), None if full else _SERVED_KEYS),
        resource=resource,
        events=tuple(
            Event(
                name=str(_get(e, "name", "")),
                time_ns=_int(_get(e, "timeUnixNano"), f"{where}.events.timeUnixNano", default=0),
                attributes=attributes(_get(e, "attributes", [])),
            )
            for e in _list(_get(raw, "events"), f"{where}.events")
            if isinstance(e, Mapping)
        )
        if full
        else (),
        status_code=_int(_get(status, "code"), f"{where}.status.code", default=0),
        status_message=str(_get(status, "message", "") or ""),
        scope_name=str(_get(scope, "name", "") or ""),
        scope_version=str(_get(scope, "version", "") or ""),
    )


def json_value(value: Any) -> dict[str, Any]:
    """A plain Python value as an OTLP AnyValue object."""
    kind = type(value)  # exact types first: the common case, and bool is an int
    if kind is str:
        return {"stringValue": value}
    if kind is bool:
        return {"boolValue": value}
    if kind is int:
        return {"intValue": str(value)}
    if kind is float:
        # proto3 JSON writes the non-finite doubles as text; JSON has no number for them
        return {"doubleValue": value if math.isfinite(value) else _NON_FINITE[str(value)]}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return json_value(float(value))
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [json_value(v) for v in value]}}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": json_attributes(value)}}
    return {"stringValue": "" if value is None else str(value)}


_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def json_attributes(
    attrs: Mapping[str, Any], shared: dict[tuple[str, type, Any], dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """`shared`: one document's cache of str, int and bool attributes. Most repeat from span to span
    (method, route, addresses): each is made once, and its object shared by every span of
    the document that has it (a document to be encoded, not changed)."""
    if shared is None:
        return [{"key": key, "value": json_value(value)} for key, value in attrs.items()]
    out = []
    for key, value in attrs.items():
        kind = type(value)
        if kind not in _SHARED:
            out.append({"key": key, "value": json_value(value)})
            continue
        found = shared.get((key, kind, value))
        if found is None:
            found = shared[(key, kind, value)] = {"key": key, "value": json_value(value)}
        out.append(found)
    return out


# not floats: rarely repeated, and -0.0 == 0.0 would share one object
_SHARED = frozenset((str, int, bool))


Shared = dict[tuple[str, Any, Any], dict[str, Any]]


def json_key_values(items: Sequence[KeyValue], shared: Shared) -> list[dict[str, Any]]:
    """OTLP protobuf attributes as json_attributes writes them from their decoded dict, without
    the dict: each key once, the last of a repeated key's values at its first place."""
    out: list[dict[str, Any]] = []
    keys: dict[str, int] = {}
    for kv in items:
        key, any_value = kv.key, kv.value
        which = any_value.WhichOneof("value")
        raw = getattr(any_value, which) if which is not None and which in _SHARED_WHICH else None
        if which is not None and raw is not None:
            found = shared.get((key, which, raw))
            if found is None:
                value = _SHARED_WHICH[which](raw)
                found = shared[(key, which, raw)] = {"key": key, "value": value}
        else:
            found = {"key": key, "value": json_value(pb_value(any_value))}
        if key in keys:
            out[keys[key]] = found
        else:
            keys[key] = len(out)
            out.append(found)
    return out


# AnyValue's scalar cases that are shared (json_attributes' _SHARED), as json_value writes them
_SHARED_WHICH: dict[str, Any] = {
    "string_value": lambda v: {"stringValue": v},
    "int_value": lambda v: {"intValue": str(v)},
    "bool_value": lambda v: {"boolValue": v},
}


def json_from_spans(spans: Iterable[Span]) -> dict[str, Any]:
    """One `{"resourceSpans": [...]}` document, spans grouped by resource and scope, in the
    order first seen (deterministic for the same input)."""
    groups: dict[str, dict[tuple[str, str], list[Span]]] = {}
    resources: dict[str, dict[str, Any]] = {}
    keys: dict[int, str] = {}  # the spans of one process share one resource dict: keyed once
    shared: dict[tuple[str, type, Any], dict[str, Any]] = {}
    for span in spans:
        key = keys.get(id(span.resource))
        if key is None:
            key = keys[id(span.resource)] = repr(sorted(span.resource.items()))
        resources.setdefault(key, span.resource)
        groups.setdefault(key, {}).setdefault((span.scope_name, span.scope_version), []).append(
            span
        )
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": json_attributes(resources[key])},
                "scopeSpans": [
                    {
                        "scope": json_scope(name, version),
                        "spans": [_json_span(s, shared) for s in scope_spans],
                    }
                    for (name, version), scope_spans in scopes.items()
                ],
            }
            for key, scopes in groups.items()
        ]
    }


def json_scope(name: str, version: str) -> dict[str, str]:
    scope = {"name": name} if name else {}
    if version:
        scope["version"] = version
    return scope


def _json_span(span: Span, shared: dict[tuple[str, type, Any], dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
    }
    if span.parent_span_id:
        out["parentSpanId"] = span.parent_span_id
    out.update(
        {
            "name": span.name,
            "kind": span.kind,
            "startTimeUnixNano": str(span.start_ns),
            "endTimeUnixNano": str(span.end_ns),
            "attributes": json_attributes(span.attributes, shared),
            "events": [
                {
                    "timeUnixNano": str(e.time_ns),
                    "name": e.name,
                    "attributes": json_attributes(e.attributes),
                }
                for e in span.events
            ],
            "status": {
                k: v for k, v in (("message", span.status_message), ("code", span.status_code)) if v
            },
        }
    )
    return out
