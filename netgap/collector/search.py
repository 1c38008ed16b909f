"""Jaeger's search rules, over the store: which traces match a TraceQuery (a trace matches
when one of its spans matches every field given; attributes compare as Jaeger's memory store
compares them), the most recent first; and the latest traces' summaries."""

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from netgap.collector.records import TraceQuery, TraceSummary
from netgap.collector.rows import SELECT_SPANS, Scopes, StoredSpans
from netgap.collector.schema import dumps
from netgap.model import KIND_NAMES, Span

SEQ_BATCH = 2000  # traces read per query, by seq
# Jaeger's span kind names; UNSPECIFIED has none, and is listed as "internal".
KIND_BY_NAME = {name: kind for kind, name in KIND_NAMES.items() if kind}
SELECT_SUMMARIES = """
SELECT trace_id, root_service, root_name, start_ns, end_ns, span_count FROM traces"""


def find(cur: sqlite3.Cursor, query: TraceQuery, stored: StoredSpans) -> dict[int, str]:
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
                "SELECT seq FROM traces WHERE start_ns < ? AND end_ns >= ? ORDER BY start_ns DESC",
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
        return _first_matches(cur, candidates, query, stored)
    finally:
        scan.close()


def _first_matches(
    cur: sqlite3.Cursor,
    candidates: Iterator[Sequence[Any]],
    query: TraceQuery,
    stored: StoredSpans,
) -> dict[int, str]:
    """`candidates`: span rows, trace seq first (whole _SELECT_SPANS rows when the query
    has attributes to test)."""
    seqs: dict[int, None] = {}
    scopes: Scopes = {}
    limit = query.limit
    for row in candidates:
        seq = row[0]
        if seq in seqs:
            continue
        if query.attributes:
            span = stored.span(cur, "", row, scopes)
            if not _matches_attributes(span, query.attributes):
                continue
        seqs[seq] = None
        if len(seqs) >= limit:
            break
    found = dict.fromkeys(seqs, "")
    found.update(by_seq(cur, "trace_id", list(seqs)))
    return found


def recent(cur: sqlite3.Cursor, limit: int, service: str | None = None) -> list[TraceSummary]:
    """Summaries of the `limit` latest-starting traces (that have a span of `service`)."""
    if service is None:
        rows = cur.execute(
            SELECT_SUMMARIES + " ORDER BY start_ns DESC LIMIT ?", (limit,)
        ).fetchall()
    else:
        seqs: dict[int, None] = {}
        for (seq,) in cur.execute(
            "SELECT trace_seq FROM spans WHERE service = ? ORDER BY start_ns DESC", (service,)
        ):
            seqs[seq] = None
            if len(seqs) >= limit:
                break
        rows = [
            row for seq in seqs for row in cur.execute(SELECT_SUMMARIES + " WHERE seq = ?", (seq,))
        ]
    summaries = [TraceSummary(*row) for row in rows]
    return sorted(summaries, key=lambda s: s.start_ns, reverse=True)


def by_seq(cur: sqlite3.Cursor, column: str, seqs: list[int]) -> Iterator[tuple[int, Any]]:
    """(seq, `column`) of the given traces, read in batches of ids."""
    for i in range(0, len(seqs), SEQ_BATCH):
        yield from cur.execute(
            f"SELECT seq, {column} FROM traces WHERE seq IN (SELECT value FROM json_each(?))",  # noqa: S608  (a column name of ours)
            (dumps(seqs[i : i + SEQ_BATCH]),),
        )


def _spans_where(where: Sequence[str], *, lean: bool = False) -> str:
    # Fixed fragments only; every value is a bound parameter.
    select = "SELECT trace_seq FROM spans" if lean else SELECT_SPANS
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
            if span.kind != KIND_BY_NAME.get(value.lower(), 0):
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
        return dumps(value)
    return "" if value is None else str(value)
