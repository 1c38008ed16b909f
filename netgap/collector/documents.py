"""api_v3's search answer (OTLP/JSON) made straight from stored span rows, without decoding
them into Spans first: what netgap.otlp_json.json_from_spans makes of the same spans."""

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from netgap.collector.rows import StoredSpans
from netgap.otlp_json import Shared, json_attributes, json_key_values, json_scope


def traces_json(
    cur: sqlite3.Cursor, found: Mapping[int, str], stored: StoredSpans
) -> dict[str, Any] | None:
    """The document of every span of the traces `found` (seq -> trace id), in that order, each
    trace's spans earliest first; None for no trace."""
    document = JsonDocument()
    for seq, trace_id in found.items():
        for row in stored.trace_rows(cur, seq):
            document.add(trace_id, row, document.scope_keys(cur, row[8], stored))
    return document.result() if found else None


class JsonDocument:
    """An OTLP/JSON document built span row by span row, grouped as json_from_spans groups:
    by resource, then scope, each in the order first seen."""

    def __init__(self) -> None:
        self.scopes: dict[int, tuple[str, tuple[str, str]]] = {}  # scope id -> group keys
        self.resources: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[tuple[str, str], list[dict[str, Any]]]] = {}
        self.shared: Shared = {}

    def add(self, trace_id: str, row: Sequence[Any], keys: tuple[str, tuple[str, str]]) -> None:
        _, span_id, parent, _, name, kind, start, end, _, body = row
        pb = PbSpan.FromString(body)
        span: dict[str, Any] = {"traceId": trace_id, "spanId": span_id}
        if parent:
            span["parentSpanId"] = parent
        span["name"] = name
        span["kind"] = kind
        span["startTimeUnixNano"] = str(start)
        span["endTimeUnixNano"] = str(end)
        span["attributes"] = json_key_values(pb.attributes, self.shared)
        span["events"] = [
            {
                "timeUnixNano": str(e.time_unix_nano),
                "name": e.name,
                "attributes": json_key_values(e.attributes, self.shared),
            }
            for e in pb.events
        ]
        status = pb.status
        span["status"] = {
            k: v for k, v in (("message", status.message), ("code", status.code)) if v
        }
        resource, scope = keys
        self.groups.setdefault(resource, {}).setdefault(scope, []).append(span)

    def result(self) -> dict[str, Any]:
        return {
            "resourceSpans": [
                {
                    "resource": {"attributes": json_attributes(self.resources[key])},
                    "scopeSpans": [
                        {"scope": json_scope(name, version), "spans": spans}
                        for (name, version), spans in scopes.items()
                    ],
                }
                for key, scopes in self.groups.items()
            ]
        }

    def scope_keys(
        self, cur: sqlite3.Cursor, scope_id: int, stored: StoredSpans
    ) -> tuple[str, tuple[str, str]]:
        """The resource group's key and the scope of `scope_id`, the resource registered
        as json_from_spans keys it."""
        known = self.scopes.get(scope_id)
        if known is None:
            resource_json, scope_name, scope_version = stored.scope(cur, scope_id)
            resource = json.loads(resource_json)
            key = repr(sorted(resource.items()))
            self.resources.setdefault(key, resource)
            known = self.scopes[scope_id] = (key, (scope_name, scope_version))
        return known
