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
row of `chains`, the answer netgap.collector.chains.break_down_chain gave when the trace was last
written (from the columns it needs and the facts kept of CLIENT spans and the spans serving
them); anything else is read whole and given to break_down.

Retention is by the time the collector first received a trace (retention.py).

The Store composes: schema (the file, its version and migration), writing (requests as rows),
retention (eviction), search (Jaeger's search rules), breakdown_reads (the lean reads),
documents (api_v3's JSON from rows), rows (rows back to Spans), readers (the reader pool);
its types and errors are in records.
"""

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from netgap.breakdown import TraceBreakdown
from netgap.collector import breakdown_reads, retention, search, writing
from netgap.collector.chains import Chain
from netgap.collector.documents import traces_json
from netgap.collector.readers import ReaderPool
from netgap.collector.records import Listings, Operation, StoreError, TraceQuery, TraceSummary
from netgap.collector.rows import StoredSpans
from netgap.collector.schema import connect, init_schema
from netgap.model import KIND_NAMES, Span


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
        self._readers = ReaderPool(path, lambda: connect(path))
        self._closed = False
        self._scope_ids = writing.ScopeIds()
        self._stored = StoredSpans()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = connect(path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the trace store {path}: {exc}") from None
        try:
            init_schema(self._writer, path)
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
        scopes = self._scope_ids
        return self._write(lambda cur, now: writing.rows_from_request(cur, request, now, scopes))

    def add(self, spans: Sequence[Span]) -> int:
        """As add_request, for spans in netgap's model (each keeps its own `service`)."""
        if not spans:
            return 0
        scopes = self._scope_ids
        return self._write(lambda cur, now: writing.rows_from_spans(cur, spans, now, scopes))

    def _write(self, build: writing.Build) -> int:
        with self._write_lock:
            with self._transaction() as cur:
                now = self._received_now()
                added = writing.write(cur, build, now)
                removed = 0
                if self.max_spans is not None and self._span_count + added > self.max_spans:
                    excess = self._span_count + added - self.max_spans
                    removed = retention.evict_oldest(
                        cur, excess, self._last_received_ns, self._scope_ids
                    )
            self._span_count += added - removed
        return added

    def evict(self, now_ns: int | None = None) -> int:
        """Applies both limits now: drops the traces first received more than max-age before
        `now_ns` (default: now), then the earliest received while over max-spans. Returns
        the number of spans dropped. Works in batches, letting writes in between."""
        cutoff = None
        if self.max_age_ns is not None:
            cutoff = (time.time_ns() if now_ns is None else now_ns) - self.max_age_ns
        removed = 0
        more = True
        while more:
            with self._write_lock:
                excess = self._span_count - self.max_spans if self.max_spans else 0
                with self._transaction() as cur:
                    last, more = retention.expired(cur, excess, cutoff)
                    batch = retention.drop_through(
                        cur, last, self._last_received_ns, self._scope_ids
                    )
                self._span_count -= batch
            removed += batch
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
            kind = search.KIND_BY_NAME.get(span_kind.lower())
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
            return [] if row is None else self._stored.trace_spans(cur, row[0], trace_id)

    def find_trace_ids(self, query: TraceQuery) -> list[str]:
        """Ids of up to `query.limit` matching traces, the most recent first."""
        with self._reading() as cur:
            return list(search.find(cur, query, self._stored).values())

    def find_traces(self, query: TraceQuery) -> list[Span]:
        """Every span of up to `query.limit` matching traces, the most recent first, each
        trace's spans together and earliest first."""
        with self._reading() as cur:
            found = search.find(cur, query, self._stored)
            return [
                span
                for seq, trace_id in found.items()
                for span in self._stored.trace_spans(cur, seq, trace_id)
            ]

    def find_traces_json(self, query: TraceQuery) -> dict[str, Any] | None:
        """What json_from_spans makes of find_traces' spans (None for no match), made from
        the stored rows without decoding them into Spans first: api_v3's search answer,
        which `netgap breakdown --source` reads thousands of at a time."""
        with self._reading() as cur:
            return traces_json(cur, search.find(cur, query, self._stored), self._stored)

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
            limit=breakdown_reads.NO_LIMIT if limit is None else limit,
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
            yield from breakdown_reads.find_breakdowns(cur, query, oldest_first, self._stored)

    def listings(self, query: TraceQuery) -> Listings:
        """For a page of traces, in one read (one snapshot, one call however many traces):
        up to `query.limit` traces that started in the window (those with a span of
        `query.service`, when given), the latest-starting first, each with its summary and
        breakdown; and every service stored. `query`'s other fields are not used."""
        with self._reading() as cur:
            traces, services = breakdown_reads.listing(cur, query, self._stored)
        return Listings(traces, services, self._span_count)

    def recent_traces(self, limit: int, service: str | None = None) -> list[TraceSummary]:
        """Summaries of the `limit` latest-starting traces (that have a span of `service`)."""
        with self._reading() as cur:
            return search.recent(cur, limit, service)

    def _reading(self) -> AbstractContextManager[sqlite3.Cursor]:
        """A cursor inside one read transaction (one snapshot), from the reader pool."""
        return self._readers.reading()

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Closes every connection (after a write in progress); idempotent."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._readers.close()
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
