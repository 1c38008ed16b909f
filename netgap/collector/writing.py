"""Writing to the store: an export request (or netgap.model spans) as rows, in the writer's
transaction. Each trace's summary row is kept up to date, and its chains row (the fast
path's answer, netgap.collector.chains) worked out again from its spans as they now stand."""

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from netgap.collector.breakdown_reads import lean_spans
from netgap.collector.chains import Chain, break_down_chain, call_facts
from netgap.collector.records import UnstorableSpanError
from netgap.collector.rows import CACHE_LIMIT
from netgap.collector.schema import dumps
from netgap.model import CLIENT, SERVER, Span
from netgap.otlp_proto import attributes, span_to_pb

# Whose call_facts ingest keeps: the calls, and the spans that (usually) serve them.
_FACT_KINDS = frozenset((CLIENT, SERVER))

_UPSERT_TRACE = """
INSERT INTO traces (trace_id, received_ns, start_ns, end_ns, span_count, root_service,
                    root_name, root_has_parent, root_start_ns)
VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?)
ON CONFLICT (trace_id) DO UPDATE SET
    start_ns = min(start_ns, excluded.start_ns),
    end_ns = max(end_ns, excluded.end_ns),
    root_service = iif((excluded.root_has_parent, excluded.root_start_ns)
                       < (root_has_parent, root_start_ns), excluded.root_service, root_service),
    root_name = iif((excluded.root_has_parent, excluded.root_start_ns)
                    < (root_has_parent, root_start_ns), excluded.root_name, root_name),
    root_start_ns = iif((excluded.root_has_parent, excluded.root_start_ns)
                        < (root_has_parent, root_start_ns), excluded.root_start_ns, root_start_ns),
    root_has_parent = min(root_has_parent, excluded.root_has_parent)
"""
_INSERT_SPAN = """
INSERT OR IGNORE INTO spans (trace_seq, span_id, parent_span_id, service, name, kind, start_ns,
                             end_ns, scope_id, body, facts)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
# Recounted rather than added to, so a span sent twice never counts twice.
_COUNT_SPANS = """
UPDATE traces SET span_count = (SELECT count(*) FROM spans WHERE trace_seq = ?1) WHERE seq = ?1
"""
_UPSERT_OPERATION = """
INSERT INTO operations (service, name, kind, received_ns) VALUES (?, ?, ?, ?)
ON CONFLICT (service, name, kind) DO UPDATE SET received_ns = excluded.received_ns
"""
_UPSERT_SCOPE = """
INSERT INTO scopes (resource, scope_name, scope_version, received_ns) VALUES (?, ?, ?, ?)
ON CONFLICT (resource, scope_name, scope_version) DO UPDATE SET received_ns = excluded.received_ns
RETURNING id
"""
_UPSERT_CHAIN = "INSERT OR REPLACE INTO chains (trace_seq, chain) VALUES (?, ?)"

# What a write is made of, before spans know their trace's seq: the span rows (trace id
# first), per trace [start, end, root has parent, root start, root service, root name], the
# (service, name, kind) operations, the scope ids.
Rows = list[list[Any]]
Traces = dict[str, list[Any]]
Operations = set[tuple[str, str, int]]
Written = tuple[Rows, Traces, Operations, set[int]]
Build = Callable[[sqlite3.Cursor, int], Written]


class ScopeIds:
    """(resource json, scope name, version) -> id, for the writer; cleared whenever a scope is
    deleted or a write rolls back."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str, str], int] = {}

    def clear(self) -> None:
        self._ids.clear()

    def id(self, cur: sqlite3.Cursor, resource_json: str, name: str, version: str, now: int) -> int:
        key = (resource_json, name, version)
        scope_id = self._ids.get(key)
        if scope_id is None:
            if len(self._ids) > CACHE_LIMIT:
                self._ids.clear()
            (scope_id,) = cur.execute(_UPSERT_SCOPE, (*key, now)).fetchone()
            self._ids[key] = scope_id
        return scope_id


def write(cur: sqlite3.Cursor, build: Build, now: int) -> int:
    """Writes what `build` makes, in the transaction of `cur`; how many spans are new."""
    try:
        rows, traces, operations, scope_ids = build(cur, now)
        seqs = _insert(cur, rows, traces, now)
    # SQLite cannot hold a value (a 65-bit integer, text with a lone surrogate),
    # or an id is not hex: the transaction rolls back, nothing is stored.
    except (ValueError, OverflowError) as exc:
        raise UnstorableSpanError(f"a span cannot be stored: {exc}") from None
    added: int = cur.rowcount
    cur.executemany(_COUNT_SPANS, [(seq,) for seq in seqs.values()])
    _keep_chains(cur, seqs)
    cur.executemany(_UPSERT_OPERATION, [(*op, now) for op in operations])
    cur.executemany(
        "UPDATE scopes SET received_ns = ? WHERE id = ?",
        [(now, scope_id) for scope_id in scope_ids],
    )
    return added


def _insert(cur: sqlite3.Cursor, rows: Rows, traces: Traces, now: int) -> dict[str, int]:
    """Upserts the traces and inserts the span rows (the last statement on `cur`, whose
    rowcount is the spans added); trace id -> seq."""
    cur.executemany(
        _UPSERT_TRACE,
        [(tid, now, a[0], a[1], a[4], a[5], a[2], a[3]) for tid, a in traces.items()],
    )
    seqs = dict(
        cur.execute(
            "SELECT trace_id, seq FROM traces WHERE trace_id IN (SELECT value FROM json_each(?))",
            (dumps(list(traces)),),
        ).fetchall()
    )
    for row in rows:
        row[0] = seqs[row[0]]
    cur.executemany(_INSERT_SPAN, rows)
    return seqs


def _keep_chains(cur: sqlite3.Cursor, seqs: Mapping[str, int]) -> None:
    """The chains row of each trace written (trace id -> seq), as its spans now stand."""
    rows = lean_spans(cur, list(seqs.values()))
    cur.executemany(
        _UPSERT_CHAIN,
        [(seq, _kept(break_down_chain(trace_id, rows[seq]))) for trace_id, seq in seqs.items()],
    )


def _kept(chain: Chain | None) -> str | None:
    return None if chain is None else chain.kept()


def rows_from_request(
    cur: sqlite3.Cursor, request: ExportTraceServiceRequest, now: int, scopes: ScopeIds
) -> Written:
    # Most of the per-span cost of ingest is this loop: keep it lean.
    rows: Rows = []
    append = rows.append
    traces: Traces = {}
    operations: Operations = set()
    scope_ids: set[int] = set()
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name", "unknown_service"))
        resource_json = dumps(resource)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            scope_id = scopes.id(cur, resource_json, scope.name, scope.version, now)
            scope_ids.add(scope_id)
            for pb in scope_spans.spans:
                trace_id = pb.trace_id.hex()
                name, kind = pb.name, pb.kind
                start, end = pb.start_time_unix_nano, pb.end_time_unix_nano
                parent = pb.parent_span_id
                append(
                    [
                        trace_id,
                        pb.span_id.hex(),
                        parent.hex(),
                        service,
                        name,
                        kind,
                        start,
                        end,
                        scope_id,
                        pb.SerializeToString(),
                        call_facts(pb) if kind in _FACT_KINDS else None,
                    ]
                )
                operations.add((service, name, kind))
                _note(traces, trace_id, start, end, 1 if parent else 0, service, name)
    return rows, traces, operations, scope_ids


def rows_from_spans(
    cur: sqlite3.Cursor, spans: Sequence[Span], now: int, scopes: ScopeIds
) -> Written:
    rows: Rows = []
    traces: Traces = {}
    operations: Operations = set()
    scope_ids: dict[tuple[int, str, str], int] = {}  # spans of a process share a resource
    for span in spans:
        key = (id(span.resource), span.scope_name, span.scope_version)
        scope_id = scope_ids.get(key)
        if scope_id is None:
            resource_json = dumps(span.resource)
            scope_id = scopes.id(cur, resource_json, *key[1:], now)
            scope_ids[key] = scope_id
        pb = span_to_pb(span)
        rows.append(
            [
                span.trace_id,
                span.span_id,
                span.parent_span_id,
                span.service,
                span.name,
                span.kind,
                span.start_ns,
                span.end_ns,
                scope_id,
                pb.SerializeToString(),
                call_facts(pb) if span.kind in _FACT_KINDS else None,
            ]
        )
        operations.add((span.service, span.name, span.kind))
        has_parent = 1 if span.parent_span_id else 0
        _note(
            traces,
            span.trace_id,
            span.start_ns,
            span.end_ns,
            has_parent,
            span.service,
            span.name,
        )
    return rows, traces, operations, set(scope_ids.values())


def _note(
    traces: Traces, trace_id: str, start: int, end: int, has_parent: int, service: str, name: str
) -> None:
    """Folds one span into its trace's [start, end, root has parent, root start, root
    service, root name]."""
    end = max(end, start)  # a trace's end covers the start of its every span
    agg = traces.get(trace_id)
    if agg is None:
        traces[trace_id] = [start, end, has_parent, start, service, name]
        return
    if start < agg[0]:
        agg[0] = start
    if end > agg[1]:
        agg[1] = end
    if (has_parent, start) < (agg[2], agg[3]):
        agg[2:] = [has_parent, start, service, name]
