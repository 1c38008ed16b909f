"""The collector's trace store: one SQLite file in WAL mode, safe to use from many threads.

One writer connection behind a lock takes each export request as one transaction; readers take
a connection from a pool, and WAL lets them read while a write is in progress. All methods
block, so async code calls them off the event loop (asyncio.to_thread, or a sync Starlette
endpoint, which runs in a thread).

Layout. `traces` has one row per trace, numbered (`seq`) in the order the collector first
received them, with a summary kept up to date on every write. `spans` is clustered by
(trace seq, span id): a trace is one range read, new spans land at the end of the file rather
than all over it (with the random trace id as the key, every commit rewrote a page per span),
and dropping the earliest traces is one range delete. A span's `body` is the OTLP protobuf
Span as received, serialised by protobuf's C code, which is the cheapest faithful encoding at
ingest; its resource and instrumentation scope (the same for every span of a process) are
stored once, in `scopes`. `operations` lists each (service, span name, kind) seen, so listing
services and operations never scans the spans.

Reading. `find_traces` gives whole spans (every body and resource decoded), as the query API
must. `find_breakdowns` is the lean read for breakdowns: a trace of the common shape is one
row of `chains`, the answer netgap.breakdown.break_down_chain gave when the trace was last
written (from the columns it needs and the facts kept of CLIENT spans and the spans serving
them); anything else is read whole and given to break_down.

Retention is by the time the collector first received a trace, as Jaeger's memory store is a
ring buffer of traces in arrival order: --max-spans drops the earliest received traces until
the spans fit, --max-age those first received longer ago than that. Span timestamps play no
part, so a replay of old spans is kept and a client with a skewed clock cannot evict anything.
"""

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from netgap.breakdown import TraceBreakdown, break_down
from netgap.collector.chains import Chain, LeanSpan, break_down_chain, call_facts
from netgap.errors import NetgapError
from netgap.model import CLIENT, KIND_NAMES, SERVER, Event, Span
from netgap.otlp_json import Shared, json_attributes, json_key_values, json_scope
from netgap.otlp_proto import attributes, span_to_pb

SCHEMA_VERSION = 3  # 2: spans.facts; 3: chains
APPLICATION_ID = 0x6E676170  # "ngap": marks the file as ours
DEFAULT_SEARCH_LIMIT = 100  # Jaeger's default query.searchDepth (v2.20)
_EVICT_BATCH = 1000  # traces dropped per transaction, so ingest is never held up for long
_CACHE_LIMIT = 10_000  # entries in each in-memory scope cache before it starts afresh
_LEAN_BATCH = 2000  # traces read per query by find_breakdowns
# Whose breakdown.call_facts ingest keeps: the calls, and the spans that (usually) serve them.
_FACT_KINDS = frozenset((CLIENT, SERVER))
_NO_LIMIT = 2**62

_SCHEMA = """
CREATE TABLE IF NOT EXISTS traces (
    seq INTEGER PRIMARY KEY,  -- arrival order
    trace_id TEXT NOT NULL UNIQUE,
    received_ns INTEGER NOT NULL,  -- first received; grows with seq
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,  -- never before the start of any of its spans
    span_count INTEGER NOT NULL,
    -- the root: the earliest span without a parent, else the earliest span
    root_service TEXT NOT NULL,
    root_name TEXT NOT NULL,
    root_has_parent INTEGER NOT NULL,
    root_start_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_by_start ON traces (start_ns);
CREATE TABLE IF NOT EXISTS spans (
    trace_seq INTEGER NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT NOT NULL,
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    kind INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    scope_id INTEGER NOT NULL,
    body BLOB NOT NULL,  -- opentelemetry.proto.trace.v1.Span
    facts TEXT,  -- CLIENT and SERVER spans: breakdown.call_facts, read instead of body
    PRIMARY KEY (trace_seq, span_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spans_by_service ON spans (service, start_ns);
-- Each trace's breakdown.Chain (JSON, without its trace id), or NULL for a trace of another
-- shape, worked out in the transaction that writes any of its spans: find_breakdowns reads
-- one row per trace. Traces last written before version 3 have no row (read span by span).
CREATE TABLE IF NOT EXISTS chains (
    trace_seq INTEGER PRIMARY KEY,
    chain TEXT
);
CREATE TABLE IF NOT EXISTS operations (
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    kind INTEGER NOT NULL,
    received_ns INTEGER NOT NULL,  -- last received
    PRIMARY KEY (service, name, kind)
) WITHOUT ROWID;
-- AUTOINCREMENT: an id is never reused, so a reader's id -> scope cache is never stale
CREATE TABLE IF NOT EXISTS scopes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    resource TEXT NOT NULL,  -- the resource's attributes as a JSON object
    scope_name TEXT NOT NULL,
    scope_version TEXT NOT NULL,
    received_ns INTEGER NOT NULL,  -- last received
    UNIQUE (resource, scope_name, scope_version)
);
"""

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
_SELECT_SPANS = """
SELECT trace_seq, span_id, parent_span_id, service, name, kind, start_ns, end_ns, scope_id, body
FROM spans"""
# What break_down_chain reads of a trace (LeanSpans): its roots, its CLIENT spans (kind 3) and
# the children of CLIENT spans, those two with their facts (or bodies); no other span can
# change its answer. For the traces whose seqs are in a JSON list, or (quicker, for a dense
# batch) in a range.
_LEAN_IN = """
SELECT s.trace_seq, s.span_id, s.parent_span_id, s.service, s.kind, s.start_ns, s.end_ns,
       iif(s.kind = 3 OR p.kind = 3, coalesce(s.facts, s.body), NULL)
FROM spans s LEFT JOIN spans p ON p.trace_seq = s.trace_seq AND p.span_id = s.parent_span_id
WHERE (p.kind IS NULL OR p.kind = 3 OR s.kind = 3)
  AND s.trace_seq IN (SELECT value FROM json_each(?))"""
_LEAN_RANGE = """
SELECT s.trace_seq, s.span_id, s.parent_span_id, s.service, s.kind, s.start_ns, s.end_ns,
       iif(s.kind = 3 OR p.kind = 3, coalesce(s.facts, s.body), NULL)
FROM spans s LEFT JOIN spans p ON p.trace_seq = s.trace_seq AND p.span_id = s.parent_span_id
WHERE (p.kind IS NULL OR p.kind = 3 OR s.kind = 3) AND s.trace_seq BETWEEN ? AND ?"""
_UPSERT_CHAIN = "INSERT OR REPLACE INTO chains (trace_seq, chain) VALUES (?, ?)"
_KEPT_IN = """
SELECT trace_seq, chain FROM chains WHERE trace_seq IN (SELECT value FROM json_each(?))"""
_KEPT_RANGE = "SELECT trace_seq, chain FROM chains WHERE trace_seq BETWEEN ? AND ?"
_SELECT_SUMMARIES = """
SELECT trace_id, root_service, root_name, start_ns, end_ns, span_count FROM traces"""
_SUMMARIES_IN = """
SELECT trace_id, root_service, root_name, start_ns, end_ns, span_count FROM traces
WHERE seq IN (SELECT value FROM json_each(?))"""

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

# Jaeger's span kind names; UNSPECIFIED has none, and is listed as "internal".
_KIND_BY_NAME = {name: kind for kind, name in KIND_NAMES.items() if kind}

# What a write is made of, before spans know their trace's seq: the span rows (trace id
# first), per trace [start, end, root has parent, root start, root service, root name], the
# (service, name, kind) operations, the scope ids.
_Rows = list[list[Any]]
_Traces = dict[str, list[Any]]
_Operations = set[tuple[str, str, int]]


class StoreError(NetgapError):
    """The store cannot be opened or used (not ours, newer schema, disk full, closed, ...)."""


class UnstorableSpanError(ValueError):
    """A span with a value the store cannot hold (an integer past 64 bits, text that is not
    Unicode, an id that is not hex); nothing of its request was stored."""


@dataclass(frozen=True)
class TraceSummary:
    trace_id: str
    root_service: str
    root_name: str
    start_ns: int
    end_ns: int
    span_count: int

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True)
class Listings:
    """What Store.listings read: each trace's summary and breakdown (None: no spans to
    break down), the services stored, and how many spans."""

    traces: list[tuple[TraceSummary, "TraceBreakdown | Chain | None"]]
    services: list[str]
    span_count: int


@dataclass(frozen=True)
class Operation:
    name: str
    span_kind: str  # Jaeger's name: "server", "client", "internal", ...


@dataclass(frozen=True)
class TraceQuery:
    """A trace matches when ONE of its spans matches every field given; times in ns."""

    start_min_ns: int  # inclusive
    start_max_ns: int  # exclusive
    service: str | None = None
    operation: str | None = None
    duration_min_ns: int | None = None
    duration_max_ns: int | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    limit: int = DEFAULT_SEARCH_LIMIT


class Store:
    def __init__(
        self, path: Path, *, max_spans: int | None = None, max_age_s: float | None = None
    ) -> None:
        """Opens (or creates) the store at `path`, creating its folder, and applies the
        retention limits at once. None (or 0) means no limit."""
        self.path = path
        self.max_spans = max_spans or None
        self.max_age_ns = int(max_age_s * 1e9) if max_age_s else None
        self._write_lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []  # every reader connection opened
        self._idle_readers: list[sqlite3.Connection] = []  # those not in use right now
        self._readers_lock = threading.Lock()
        self._closed = False
        # (resource json, scope name, version) -> id, for the writer; cleared whenever a
        # scope is deleted or a write rolls back
        self._scope_ids: dict[tuple[str, str, str], int] = {}
        # id -> (resource json, scope name, version), for readers; an id never changes
        self._scopes: dict[int, tuple[str, str, str]] = {}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the trace store {path}: {exc}") from None
        try:
            self._init_schema()
            count, last = self._writer.execute(
                "SELECT coalesce(sum(span_count), 0), coalesce(max(received_ns), 0) FROM traces"
            ).fetchone()
            self._span_count: int = count
            self._last_received_ns: int = last
            self.evict()
        except sqlite3.Error as exc:
            self._writer.close()
            raise StoreError(f"cannot open the trace store {path}: {exc}") from None
        except StoreError:
            self._writer.close()
            raise

    # -- writing ---------------------------------------------------------------------------

    def add_request(self, request: ExportTraceServiceRequest) -> int:
        """Stores one OTLP export request (checked by ingest.validate_request) in one
        transaction: all of it or, on error, nothing. Spans already stored (same trace and
        span id) are skipped. Returns how many spans are new. The ingest hot path."""
        if not request.resource_spans:
            return 0
        return self._write(lambda cur, now: self._rows_from_request(cur, request, now))

    def add(self, spans: Sequence[Span]) -> int:
        """As add_request, for spans in netgap's model (each keeps its own `service`)."""
        if not spans:
            return 0
        return self._write(lambda cur, now: self._rows_from_spans(cur, spans, now))

    def _write(
        self,
        build: Callable[[sqlite3.Cursor, int], tuple[_Rows, _Traces, _Operations, set[int]]],
    ) -> int:
        with self._write_lock:
            with self._transaction() as cur:
                now = self._received_now()
                try:
                    rows, traces, operations, scope_ids = build(cur, now)
                    cur.executemany(
                        _UPSERT_TRACE,
                        [
                            (tid, now, a[0], a[1], a[4], a[5], a[2], a[3])
                            for tid, a in traces.items()
                        ],
                    )
                    seqs = dict(
                        cur.execute(
                            "SELECT trace_id, seq FROM traces"
                            " WHERE trace_id IN (SELECT value FROM json_each(?))",
                            (_dumps(list(traces)),),
                        ).fetchall()
                    )
                    for row in rows:
                        row[0] = seqs[row[0]]
                    cur.executemany(_INSERT_SPAN, rows)
                # SQLite cannot hold a value (a 65-bit integer, text with a lone surrogate),
                # or an id is not hex: the transaction rolls back, nothing is stored.
                except (ValueError, OverflowError) as exc:
                    raise UnstorableSpanError(f"a span cannot be stored: {exc}") from None
                added: int = cur.rowcount
                cur.executemany(_COUNT_SPANS, [(seq,) for seq in seqs.values()])
                self._keep_chains(cur, seqs)
                cur.executemany(_UPSERT_OPERATION, [(*op, now) for op in operations])
                cur.executemany(
                    "UPDATE scopes SET received_ns = ? WHERE id = ?",
                    [(now, scope_id) for scope_id in scope_ids],
                )
                removed = 0
                if self.max_spans is not None and self._span_count + added > self.max_spans:
                    removed = self._evict_oldest(cur, self._span_count + added - self.max_spans)
            self._span_count += added - removed
        return added

    def _keep_chains(self, cur: sqlite3.Cursor, seqs: Mapping[str, int]) -> None:
        """The chains row of each trace written (trace id -> seq), as its spans now stand."""
        rows: dict[int, list[LeanSpan]] = {seq: [] for seq in seqs.values()}
        for span in cur.execute(_LEAN_IN, (_dumps(list(rows)),)).fetchall():
            rows[span[0]].append(span)
        cur.executemany(
            _UPSERT_CHAIN,
            [(seq, _kept(break_down_chain(trace_id, rows[seq]))) for trace_id, seq in seqs.items()],
        )

    def _rows_from_request(
        self, cur: sqlite3.Cursor, request: ExportTraceServiceRequest, now: int
    ) -> tuple[_Rows, _Traces, _Operations, set[int]]:
        # Most of the per-span cost of ingest is this loop: keep it lean.
        rows: _Rows = []
        append = rows.append
        traces: _Traces = {}
        operations: _Operations = set()
        scope_ids: set[int] = set()
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            service = str(resource.get("service.name", "unknown_service"))
            resource_json = _dumps(resource)
            for scope_spans in resource_spans.scope_spans:
                scope = scope_spans.scope
                scope_id = self._scope_id(cur, resource_json, scope.name, scope.version, now)
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

    def _rows_from_spans(
        self, cur: sqlite3.Cursor, spans: Sequence[Span], now: int
    ) -> tuple[_Rows, _Traces, _Operations, set[int]]:
        rows: _Rows = []
        traces: _Traces = {}
        operations: _Operations = set()
        scope_ids: dict[tuple[int, str, str], int] = {}  # spans of a process share a resource
        for span in spans:
            key = (id(span.resource), span.scope_name, span.scope_version)
            scope_id = scope_ids.get(key)
            if scope_id is None:
                resource_json = _dumps(span.resource)
                scope_id = self._scope_id(cur, resource_json, *key[1:], now)
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

    def _scope_id(
        self, cur: sqlite3.Cursor, resource_json: str, name: str, version: str, now: int
    ) -> int:
        key = (resource_json, name, version)
        scope_id = self._scope_ids.get(key)
        if scope_id is None:
            if len(self._scope_ids) > _CACHE_LIMIT:
                self._scope_ids.clear()
            (scope_id,) = cur.execute(_UPSERT_SCOPE, (*key, now)).fetchone()
            self._scope_ids[key] = scope_id
        return scope_id

    def evict(self, now_ns: int | None = None) -> int:
        """Applies both limits now: drops the traces first received more than max-age before
        `now_ns` (default: now), then the earliest received while over max-spans. Returns
        the number of spans dropped. Works in batches, letting writes in between."""
        cutoff = None
        if self.max_age_ns is not None:
            cutoff = (time.time_ns() if now_ns is None else now_ns) - self.max_age_ns
        removed = 0
        while True:
            with self._write_lock:
                excess = self._span_count - self.max_spans if self.max_spans else 0
                with self._transaction() as cur:
                    oldest = cur.execute(
                        "SELECT seq, received_ns, span_count FROM traces ORDER BY seq LIMIT ?",
                        (_EVICT_BATCH,),
                    ).fetchall()
                    last = None
                    for seq, received_ns, span_count in oldest:
                        if excess <= 0 and (cutoff is None or received_ns >= cutoff):
                            break
                        last = seq
                        excess -= span_count
                    batch = self._drop_through(cur, last)
                self._span_count -= batch
            removed += batch
            if last is None or last != oldest[-1][0]:  # not a whole batch: done
                return removed

    def _evict_oldest(self, cur: sqlite3.Cursor, excess: int) -> int:
        """Drops the earliest received traces that hold at least `excess` spans (at most one
        batch of traces); the number of spans dropped."""
        last = None
        for seq, span_count in cur.execute(
            "SELECT seq, span_count FROM traces ORDER BY seq LIMIT ?", (_EVICT_BATCH,)
        ).fetchall():
            if excess <= 0:
                break
            last = seq
            excess -= span_count
        return self._drop_through(cur, last)

    def _drop_through(self, cur: sqlite3.Cursor, last_seq: int | None) -> int:
        """Drops every trace up to and including `last_seq`; the number of spans dropped."""
        if last_seq is None:
            return 0
        removed: int = cur.execute("DELETE FROM spans WHERE trace_seq <= ?", (last_seq,)).rowcount
        cur.execute("DELETE FROM traces WHERE seq <= ?", (last_seq,))
        # A seq can be given again once every trace is gone: no chain may outlive its trace.
        cur.execute("DELETE FROM chains WHERE trace_seq <= ?", (last_seq,))
        # Traces go in order of first receipt, so an operation or scope last received before
        # the earliest trace left belongs to no span left.
        row = cur.execute("SELECT received_ns FROM traces ORDER BY seq LIMIT 1").fetchone()
        cutoff = self._last_received_ns + 1 if row is None else row[0]
        cur.execute("DELETE FROM operations WHERE received_ns < ?", (cutoff,))
        if cur.execute("DELETE FROM scopes WHERE received_ns < ?", (cutoff,)).rowcount:
            self._scope_ids.clear()
        return removed

    def _received_now(self) -> int:
        # Never backwards, even if the wall clock is: eviction relies on arrival order.
        self._last_received_ns = max(time.time_ns(), self._last_received_ns + 1)
        return self._last_received_ns

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        if self._closed:
            raise StoreError("the trace store is closed")
        cur = self._writer.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            yield cur
            cur.execute("COMMIT")
        except BaseException as exc:
            if self._writer.in_transaction:
                self._writer.rollback()
            self._scope_ids.clear()  # may name scopes the rollback undid
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot write to the trace store {self.path}: {exc}") from exc
            raise
        finally:
            cur.close()

    # -- reading ---------------------------------------------------------------------------

    def span_count(self) -> int:
        return self._span_count

    def services(self) -> list[str]:
        with self._reading() as cur:
            rows = cur.execute("SELECT DISTINCT service FROM operations ORDER BY service")
            return [row[0] for row in rows]

    def operations(self, service: str, span_kind: str | None = None) -> list[Operation]:
        """The operations of `service`, optionally only those of one kind (Jaeger's names:
        "server", "client", "producer", "consumer", "internal"; anything else matches none)."""
        sql = "SELECT DISTINCT name, kind FROM operations WHERE service = ?"
        params: list[Any] = [service]
        if span_kind:
            kind = _KIND_BY_NAME.get(span_kind.lower())
            if kind is None:
                return []
            sql += " AND kind = ?"
            params.append(kind)
        with self._reading() as cur:
            rows = cur.execute(sql + " ORDER BY name, kind", params).fetchall()
        seen: dict[tuple[str, str], Operation] = {}
        for name, kind in rows:
            operation = Operation(name, KIND_NAMES.get(kind, "internal") if kind else "internal")
            seen.setdefault((operation.name, operation.span_kind), operation)
        return list(seen.values())

    def trace(self, trace_id: str) -> list[Span]:
        """Every span of the trace (32 lowercase hex digits), earliest first; [] if unknown."""
        with self._reading() as cur:
            row = cur.execute("SELECT seq FROM traces WHERE trace_id = ?", (trace_id,)).fetchone()
            return [] if row is None else self._trace_spans(cur, row[0], trace_id)

    def find_trace_ids(self, query: TraceQuery) -> list[str]:
        """Ids of up to `query.limit` matching traces, the most recent first."""
        with self._reading() as cur:
            return list(self._find(cur, query).values())

    def find_traces(self, query: TraceQuery) -> list[Span]:
        """Every span of up to `query.limit` matching traces, the most recent first, each
        trace's spans together and earliest first."""
        with self._reading() as cur:
            found = self._find(cur, query)
            return [
                span
                for seq, trace_id in found.items()
                for span in self._trace_spans(cur, seq, trace_id)
            ]

    def find_traces_json(self, query: TraceQuery) -> dict[str, Any] | None:
        """What json_from_spans makes of find_traces' spans (None for no match), made from
        the stored rows without decoding them into Spans first: api_v3's search answer,
        which `netgap breakdown --source` reads thousands of at a time."""
        documents = JsonDocument()
        with self._reading() as cur:
            found = self._find(cur, query)
            for seq, trace_id in found.items():
                rows = cur.execute(
                    _SELECT_SPANS + " WHERE trace_seq = ? ORDER BY start_ns, span_id", (seq,)
                ).fetchall()
                for row in rows:
                    documents.add(trace_id, row, self._scope_json(cur, row[8], documents))
        return documents.result() if found else None

    def _scope_json(
        self, cur: sqlite3.Cursor, scope_id: int, document: "JsonDocument"
    ) -> tuple[str, tuple[str, str]]:
        """The resource group's key and the scope of `scope_id`, the resource registered with
        `document` as json_from_spans keys it."""
        known = document.scopes.get(scope_id)
        if known is None:
            resource_json, scope_name, scope_version = self._scope(cur, scope_id)
            resource = json.loads(resource_json)
            key = repr(sorted(resource.items()))
            document.resources.setdefault(key, resource)
            known = document.scopes[scope_id] = (key, (scope_name, scope_version))
        return known

    @property
    def location(self) -> str:
        """The store as a report names it: its file."""
        return str(self.path)

    def breakdowns(
        self, service: str, start_ns: int, end_ns: int, *, limit: int | None = None
    ) -> Iterator[TraceBreakdown | Chain]:
        """find_breakdowns, the earliest-starting first, of the traces with a span of
        `service` starting in [start_ns, end_ns) (`limit`: at most that many): what
        netgap.analysis asks of a trace source."""
        query = TraceQuery(
            start_min_ns=start_ns,
            start_max_ns=end_ns,
            service=service,
            limit=_NO_LIMIT if limit is None else limit,
        )
        return self.find_breakdowns(query, oldest_first=True)

    def find_breakdowns(
        self, query: TraceQuery, *, oldest_first: bool = False
    ) -> Iterator[TraceBreakdown | Chain]:
        """The breakdown of each of up to `query.limit` matching traces, in find_traces'
        order (the most recent first) or, with `oldest_first`, the earliest-starting first
        (then `query.limit` counts from the earliest); exactly what break_down gives for the
        spans find_traces returns, with no span decoded for a trace of the common shape.

        A trace of the common shape is one row: its Chain, worked out by break_down_chain
        whenever the trace was written (a trace last written before that was kept is read
        span by span: the columns the breakdown needs, and the facts of CLIENT spans and of
        the spans serving them). Any other shape (several roots, a missing server span,
        nested calls, a data-quality warning) is read in full and given to break_down. One
        read snapshot, held until the iterator is exhausted or closed."""
        with self._reading() as cur:
            if oldest_first:
                found = self._find(cur, replace(query, limit=_NO_LIMIT))
                starts = self._starts(cur, list(found))
                seqs = sorted(found, key=starts.__getitem__)[: max(query.limit, 0)]
            else:
                found = self._find(cur, query)
                seqs = list(found)
            for i in range(0, len(seqs), _LEAN_BATCH):
                yield from self._breakdowns(cur, found, seqs[i : i + _LEAN_BATCH])

    def _breakdowns(
        self, cur: sqlite3.Cursor, found: Mapping[int, str], batch: list[int]
    ) -> Iterator[TraceBreakdown | Chain]:
        """find_breakdowns' answers for one batch of seqs, in its order: each trace's kept
        chain; else (a trace last written before chains were kept) its lean rows through
        break_down_chain; else (another shape) break_down of all its spans."""
        low, high = min(batch), max(batch)
        dense = high - low < 2 * len(batch)  # one range, and a few traces not asked for
        if dense:
            kept = dict(cur.execute(_KEPT_RANGE, (low, high)).fetchall())
        else:
            kept = dict(cur.execute(_KEPT_IN, (_dumps(batch),)).fetchall())
        unkept = [seq for seq in batch if seq not in kept]
        rows: dict[int, list[LeanSpan]] = {seq: [] for seq in unkept}
        if unkept:
            for span in cur.execute(_LEAN_IN, (_dumps(unkept),)).fetchall():
                rows[span[0]].append(span)
        for seq in batch:
            trace_id = found[seq]
            chain: Chain | None
            if seq in kept:
                text = kept[seq]
                chain = None if text is None else Chain.from_kept(trace_id, text)
            else:
                chain = break_down_chain(trace_id, rows[seq])
            if chain is not None:
                yield chain
                continue
            breakdown = break_down(self._trace_spans(cur, seq, trace_id))
            if breakdown is not None:
                yield breakdown

    def _starts(self, cur: sqlite3.Cursor, seqs: list[int]) -> dict[int, int]:
        """seq -> the trace's start (its earliest span's)."""
        return dict(_by_seq(cur, "start_ns", seqs))

    def listings(self, query: TraceQuery) -> Listings:
        """For a page of traces, in one read (one snapshot, one call however many traces):
        up to `query.limit` traces that started in the window (those with a span of
        `query.service`, when given), the latest-starting first, each with its summary and
        breakdown; and every service stored. `query`'s other fields are not used."""
        with self._reading() as cur:
            if query.service:
                found = self._find(cur, query)
            else:
                found = dict(
                    cur.execute(
                        "SELECT seq, trace_id FROM traces WHERE start_ns >= ? AND start_ns < ?"
                        " ORDER BY start_ns DESC LIMIT ?",
                        (query.start_min_ns, query.start_max_ns, max(query.limit, 0)),
                    ).fetchall()
                )
            seqs = list(found)
            breakdowns: dict[str, TraceBreakdown | Chain] = {}
            summaries: list[TraceSummary] = []
            for i in range(0, len(seqs), _LEAN_BATCH):
                batch = seqs[i : i + _LEAN_BATCH]
                for b in self._breakdowns(cur, found, batch):
                    breakdowns[b.trace_id] = b
                summaries += (
                    TraceSummary(*row)
                    for row in cur.execute(
                        _SUMMARIES_IN,
                        (_dumps(batch),),
                    )
                )
            services = [
                row[0]
                for row in cur.execute("SELECT DISTINCT service FROM operations ORDER BY service")
            ]
        summaries.sort(key=lambda s: s.start_ns, reverse=True)
        return Listings(
            [(s, breakdowns.get(s.trace_id)) for s in summaries], services, self._span_count
        )

    def recent_traces(self, limit: int, service: str | None = None) -> list[TraceSummary]:
        """Summaries of the `limit` latest-starting traces (that have a span of `service`)."""
        with self._reading() as cur:
            if service is None:
                rows = cur.execute(
                    _SELECT_SUMMARIES + " ORDER BY start_ns DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                seqs: dict[int, None] = {}
                for (seq,) in cur.execute(
                    "SELECT trace_seq FROM spans WHERE service = ? ORDER BY start_ns DESC",
                    (service,),
                ):
                    seqs[seq] = None
                    if len(seqs) >= limit:
                        break
                rows = [
                    row
                    for seq in seqs
                    for row in cur.execute(_SELECT_SUMMARIES + " WHERE seq = ?", (seq,))
                ]
        summaries = [TraceSummary(*row) for row in rows]
        return sorted(summaries, key=lambda s: s.start_ns, reverse=True)

    def _find(self, cur: sqlite3.Cursor, query: TraceQuery) -> dict[int, str]:
        """seq -> trace id of the matching traces, the most recent first."""
        if query.limit <= 0:
            return {}
        where = ["start_ns >= ?", "start_ns < ?"]
        params: list[Any] = [query.start_min_ns, query.start_max_ns]
        if query.operation:
            where.append("name = ?")
            params.append(query.operation)
        if query.duration_min_ns:
            where.append("end_ns - start_ns >= ?")
            params.append(query.duration_min_ns)
        if query.duration_max_ns:
            where.append("end_ns - start_ns <= ?")
            params.append(query.duration_max_ns)
        scan = cur.connection.cursor()  # read lazily, while `cur` runs other queries
        try:
            if query.service:
                # The service's spans, newest first by index, until `limit` traces match.
                where.append("service = ?")
                params.append(query.service)
                # Without attributes to test, the trace is all a match needs: the index has it.
                scan.execute(_spans_where(where, lean=not query.attributes), params)
                candidates: Iterator[Sequence[Any]] = scan
            else:
                # No index for that: walk the traces that overlap the window, newest first,
                # and look for a matching span in each.
                scan.execute(
                    "SELECT seq FROM traces WHERE start_ns < ? AND end_ns >= ?"
                    " ORDER BY start_ns DESC",
                    (query.start_max_ns, query.start_min_ns),
                )
                candidates = (
                    row
                    for (seq,) in scan
                    for row in cur.execute(
                        _spans_where(["trace_seq = ?", *where], lean=not query.attributes),
                        (seq, *params),
                    ).fetchall()
                )
            return self._first_matches(cur, candidates, query)
        finally:
            scan.close()

    def _first_matches(
        self, cur: sqlite3.Cursor, candidates: Iterator[Sequence[Any]], query: TraceQuery
    ) -> dict[int, str]:
        """`candidates`: span rows, trace seq first (whole _SELECT_SPANS rows when the query
        has attributes to test)."""
        seqs: dict[int, None] = {}
        scopes: dict[int, tuple[dict[str, Any], str, str]] = {}
        limit = query.limit
        for row in candidates:
            seq = row[0]
            if seq in seqs:
                continue
            if query.attributes:
                span = self._span(cur, "", row, scopes)
                if not _matches_attributes(span, query.attributes):
                    continue
            seqs[seq] = None
            if len(seqs) >= limit:
                break
        found = dict.fromkeys(seqs, "")
        found.update(_by_seq(cur, "trace_id", list(seqs)))
        return found

    def _trace_spans(self, cur: sqlite3.Cursor, seq: int, trace_id: str) -> list[Span]:
        rows = cur.execute(
            _SELECT_SPANS + " WHERE trace_seq = ? ORDER BY start_ns, span_id", (seq,)
        ).fetchall()
        scopes: dict[int, tuple[dict[str, Any], str, str]] = {}
        return [self._span(cur, trace_id, row, scopes) for row in rows]

    def _span(
        self,
        cur: sqlite3.Cursor,
        trace_id: str,
        row: Sequence[Any],
        scopes: dict[int, tuple[dict[str, Any], str, str]],
    ) -> Span:
        """A stored span; `scopes` caches decoded resources for one read, so the spans of a
        process share one resource dict, as ingest gave them."""
        _, span_id, parent, service, name, kind, start, end, scope_id, body = row
        scope = scopes.get(scope_id)
        if scope is None:
            resource_json, scope_name, scope_version = self._scope(cur, scope_id)
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

    def _scope(self, cur: sqlite3.Cursor, scope_id: int) -> tuple[str, str, str]:
        scope = self._scopes.get(scope_id)
        if scope is None:
            row = cur.execute(
                "SELECT resource, scope_name, scope_version FROM scopes WHERE id = ?", (scope_id,)
            ).fetchone()
            scope = ("{}", "", "") if row is None else (str(row[0]), str(row[1]), str(row[2]))
            if len(self._scopes) > _CACHE_LIMIT:
                self._scopes.clear()
            self._scopes[scope_id] = scope
        return scope

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Cursor]:
        """A cursor on a pooled connection, inside one read transaction (one snapshot)."""
        if self._closed:
            raise StoreError("the trace store is closed")
        # A pool rather than one per thread: worker threads come and go, connections stay.
        with self._readers_lock:
            conn = self._idle_readers.pop() if self._idle_readers else None
        try:
            if conn is None:
                conn = self._connect()
                conn.execute("PRAGMA query_only = ON")
                with self._readers_lock:
                    self._readers.append(conn)
            cur = conn.cursor()
            try:
                cur.execute("BEGIN")
                yield cur
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
                cur.close()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the trace store {self.path}: {exc}") from exc
        finally:
            if conn is not None:
                with self._readers_lock:
                    self._idle_readers.append(conn)

    # -- lifecycle ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE / BEGIN ... COMMIT).
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA cache_size = -65536")  # KiB: up to 64 MiB per connection
        return conn

    def _init_schema(self) -> None:
        conn = self._writer
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        (tables,) = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        if (app_id, tables) != (0, 0) and app_id != APPLICATION_ID:
            raise StoreError(f"{self.path} is an SQLite file but not a netgap trace store")
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer netgap (store version {version})")
        if version == 1:  # spans.facts came in 2; rows from before have none (body is read)
            conn.execute("ALTER TABLE spans ADD COLUMN facts TEXT")
        # WAL: readers never wait for the writer. NORMAL: a commit survives a crash of the
        # process (not a power cut), at a fraction of FULL's cost.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.executescript(
            f"BEGIN; {_SCHEMA} PRAGMA application_id = {APPLICATION_ID};"
            f" PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        )

    def close(self) -> None:
        """Closes every connection (after a write in progress); idempotent."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            with self._readers_lock:
                readers, self._readers, self._idle_readers = self._readers, [], []
            for conn in readers:
                conn.close()
            try:
                self._writer.execute("PRAGMA optimize")
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # the data is committed already; a checkpoint only tidies the WAL
            self._writer.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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


def _kept(chain: Chain | None) -> str | None:
    return None if chain is None else chain.kept()


def _note(
    traces: _Traces, trace_id: str, start: int, end: int, has_parent: int, service: str, name: str
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


def _by_seq(cur: sqlite3.Cursor, column: str, seqs: list[int]) -> Iterator[tuple[int, Any]]:
    """(seq, `column`) of the given traces, read in batches of ids."""
    for i in range(0, len(seqs), _LEAN_BATCH):
        yield from cur.execute(
            f"SELECT seq, {column} FROM traces WHERE seq IN (SELECT value FROM json_each(?))",  # noqa: S608  (a column name of ours)
            (_dumps(seqs[i : i + _LEAN_BATCH]),),
        )


def _spans_where(where: Sequence[str], *, lean: bool = False) -> str:
    # Fixed fragments only; every value is a bound parameter.
    select = "SELECT trace_seq FROM spans" if lean else _SELECT_SPANS
    return f"{select} WHERE {' AND '.join(where)} ORDER BY start_ns DESC"


def _matches_attributes(span: Span, wanted: Mapping[str, str]) -> bool:
    """Jaeger's memory store rules: `error`, `span.status`, `span.kind`, `scope.name`,
    `scope.version` test those fields, `resource.X` the resource attribute X, and any other key
    the span's, its resource's or one of its events' attributes; values compare as text."""
    for key, value in wanted.items():
        if key == "error":
            flag = value.strip().lower()
            if flag not in ("true", "false", "1", "0", "t", "f"):
                return False
            if span.status_code != (2 if flag in ("true", "1", "t") else 1):
                return False
        elif key == "span.status":
            if span.status_code != {"OK": 1, "ERROR": 2}.get(value.upper(), 0):
                return False
        elif key == "span.kind":
            if span.kind != _KIND_BY_NAME.get(value.lower(), 0):
                return False
        elif key == "scope.name":
            if span.scope_name != value:
                return False
        elif key == "scope.version":
            if span.scope_version != value:
                return False
        elif key.startswith("resource."):
            if not _attribute_is(span.resource, key.removeprefix("resource."), value):
                return False
        elif not (
            _attribute_is(span.attributes, key, value)
            or _attribute_is(span.resource, key, value)
            or any(_attribute_is(e.attributes, key, value) for e in span.events)
        ):
            return False
    return True


def _attribute_is(attributes: Mapping[str, Any], key: str, text: str) -> bool:
    return key in attributes and _as_text(attributes[key]) == text


def _as_text(value: Any) -> str:
    """An attribute value as Jaeger compares it (pdata's Value.AsString)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        text = format(Decimal(repr(value)), "f")  # Go's 'f' with the shortest digits
        return text.removesuffix(".0") if text.endswith(".0") else text
    if isinstance(value, list | dict):
        return _dumps(value)
    return "" if value is None else str(value)
