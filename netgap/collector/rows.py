"""Stored span rows read back as netgap.model.Spans, with the cache of decoded scopes (a
resource and an instrumentation scope, stored once per process) that readers share."""

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from netgap.model import Event, Span
from netgap.otlp_proto import attributes

CACHE_LIMIT = 10_000  # entries in each in-memory scope cache before it starts afresh
SELECT_SPANS = """
SELECT trace_seq, span_id, parent_span_id, service, name, kind, start_ns, end_ns, scope_id, body
FROM spans"""

# scope id -> (resource, scope name, version), decoded, for one read
Scopes = dict[int, tuple[dict[str, Any], str, str]]


class StoredSpans:
    def __init__(self) -> None:
        # id -> (resource json, scope name, version), for readers; an id never changes
        self._scopes: dict[int, tuple[str, str, str]] = {}

    def trace_rows(self, cur: sqlite3.Cursor, seq: int) -> list[Sequence[Any]]:
        """The SELECT_SPANS rows of one trace, earliest first."""
        return cur.execute(
            SELECT_SPANS + " WHERE trace_seq = ? ORDER BY start_ns, span_id", (seq,)
        ).fetchall()

    def trace_spans(self, cur: sqlite3.Cursor, seq: int, trace_id: str) -> list[Span]:
        scopes: Scopes = {}
        return [self.span(cur, trace_id, row, scopes) for row in self.trace_rows(cur, seq)]

    def span(self, cur: sqlite3.Cursor, trace_id: str, row: Sequence[Any], scopes: Scopes) -> Span:
        """A stored span; `scopes` caches decoded resources for one read, so the spans of a
        process share one resource dict, as ingest gave them."""
        _, span_id, parent, service, name, kind, start, end, scope_id, body = row
        scope = scopes.get(scope_id)
        if scope is None:
            resource_json, scope_name, scope_version = self.scope(cur, scope_id)
            scope = scopes[scope_id] = (json.loads(resource_json), scope_name, scope_version)
        pb = PbSpan.FromString(body)
        return Span(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=parent,
            name=name,
            kind=kind,
            start_ns=start,
            end_ns=end,
            service=service,
            attributes=attributes(pb.attributes),
            resource=scope[0],
            events=tuple(
                Event(e.name, e.time_unix_nano, attributes(e.attributes)) for e in pb.events
            ),
            status_code=pb.status.code,
            status_message=pb.status.message,
            scope_name=scope[1],
            scope_version=scope[2],
        )

    def scope(self, cur: sqlite3.Cursor, scope_id: int) -> tuple[str, str, str]:
        """(resource json, scope name, version) of a scope id."""
        scope = self._scopes.get(scope_id)
        if scope is None:
            row = cur.execute(
                "SELECT resource, scope_name, scope_version FROM scopes WHERE id = ?", (scope_id,)
            ).fetchone()
            scope = ("{}", "", "") if row is None else (str(row[0]), str(row[1]), str(row[2]))
            if len(self._scopes) > CACHE_LIMIT:
                self._scopes.clear()
            self._scopes[scope_id] = scope
        return scope
