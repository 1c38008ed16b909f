"""The store's lean reads for breakdowns: a trace of the common shape is one row of `chains`
(netgap.collector.chains.Chain, worked out when the trace was last written), a trace written
before chains were kept is read as lean rows (LEAN_IN), and any other is read whole and given
to netgap.breakdown.break_down. Also the trace pages' listing: summaries with breakdowns."""

import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import replace

from netgap.breakdown import TraceBreakdown, break_down
from netgap.collector.chains import Chain, LeanSpan, break_down_chain
from netgap.collector.records import TraceQuery, TraceSummary
from netgap.collector.rows import StoredSpans
from netgap.collector.schema import dumps
from netgap.collector.search import SEQ_BATCH, by_seq, find

NO_LIMIT = 2**62
# What break_down_chain reads of a trace (LeanSpans): its roots, its CLIENT spans (kind 3) and
# the children of CLIENT spans, those two with their facts (or bodies); no other span can
# change its answer. For the traces whose seqs are in a JSON list.
LEAN_IN = """
SELECT s.trace_seq, s.span_id, s.parent_span_id, s.service, s.kind, s.start_ns, s.end_ns,
       iif(s.kind = 3 OR p.kind = 3, coalesce(s.facts, s.body), NULL)
FROM spans s LEFT JOIN spans p ON p.trace_seq = s.trace_seq AND p.span_id = s.parent_span_id
WHERE (p.kind IS NULL OR p.kind = 3 OR s.kind = 3)
  AND s.trace_seq IN (SELECT value FROM json_each(?))"""
# The kept chains of the traces whose seqs are in a JSON list, or (quicker, for a dense batch)
# in a range.
_KEPT_IN = """
SELECT trace_seq, chain FROM chains WHERE trace_seq IN (SELECT value FROM json_each(?))"""
_KEPT_RANGE = "SELECT trace_seq, chain FROM chains WHERE trace_seq BETWEEN ? AND ?"
_SUMMARIES_IN = """
SELECT trace_id, root_service, root_name, start_ns, end_ns, span_count FROM traces
WHERE seq IN (SELECT value FROM json_each(?))"""


def lean_spans(cur: sqlite3.Cursor, seqs: list[int]) -> dict[int, list[LeanSpan]]:
    """seq -> what break_down_chain reads of the trace, for each of `seqs`."""
    rows: dict[int, list[LeanSpan]] = {seq: [] for seq in seqs}
    if seqs:
        for span in cur.execute(LEAN_IN, (dumps(seqs),)).fetchall():
            rows[span[0]].append(span)
    return rows


def find_breakdowns(
    cur: sqlite3.Cursor, query: TraceQuery, oldest_first: bool, stored: StoredSpans
) -> Iterator[TraceBreakdown | Chain]:
    """Store.find_breakdowns, in the read transaction of `cur`."""
    if oldest_first:
        found = find(cur, replace(query, limit=NO_LIMIT), stored)
        starts = dict(by_seq(cur, "start_ns", list(found)))  # seq -> the trace's start
        seqs = sorted(found, key=starts.__getitem__)[: max(query.limit, 0)]
    else:
        found = find(cur, query, stored)
        seqs = list(found)
    for i in range(0, len(seqs), SEQ_BATCH):
        yield from breakdowns(cur, found, seqs[i : i + SEQ_BATCH], stored)


def breakdowns(
    cur: sqlite3.Cursor, found: Mapping[int, str], batch: list[int], stored: StoredSpans
) -> Iterator[TraceBreakdown | Chain]:
    """find_breakdowns' answers for one batch of seqs, in its order: each trace's kept
    chain; else (a trace last written before chains were kept) its lean rows through
    break_down_chain; else (another shape) break_down of all its spans."""
    kept = _kept_chains(cur, batch)
    rows = lean_spans(cur, [seq for seq in batch if seq not in kept])
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
        breakdown = break_down(stored.trace_spans(cur, seq, trace_id))
        if breakdown is not None:
            yield breakdown


def _kept_chains(cur: sqlite3.Cursor, batch: list[int]) -> dict[int, str | None]:
    """seq -> its kept chain (None: a trace of another shape), of the traces that have a row."""
    low, high = min(batch), max(batch)
    dense = high - low < 2 * len(batch)  # one range, and a few traces not asked for
    if dense:
        return dict(cur.execute(_KEPT_RANGE, (low, high)).fetchall())
    return dict(cur.execute(_KEPT_IN, (dumps(batch),)).fetchall())


def listing(
    cur: sqlite3.Cursor, query: TraceQuery, stored: StoredSpans
) -> tuple[list[tuple[TraceSummary, TraceBreakdown | Chain | None]], list[str]]:
    """Store.listings' traces (each summary with its breakdown, the latest-starting first)
    and services, in the read transaction of `cur`."""
    if query.service:
        found = find(cur, query, stored)
    else:
        found = dict(
            cur.execute(
                "SELECT seq, trace_id FROM traces WHERE start_ns >= ? AND start_ns < ?"
                " ORDER BY start_ns DESC LIMIT ?",
                (query.start_min_ns, query.start_max_ns, max(query.limit, 0)),
            ).fetchall()
        )
    seqs = list(found)
    by_trace: dict[str, TraceBreakdown | Chain] = {}
    summaries: list[TraceSummary] = []
    for i in range(0, len(seqs), SEQ_BATCH):
        batch = seqs[i : i + SEQ_BATCH]
        for b in breakdowns(cur, found, batch, stored):
            by_trace[b.trace_id] = b
        summaries += (TraceSummary(*row) for row in cur.execute(_SUMMARIES_IN, (dumps(batch),)))
    services = [
        row[0] for row in cur.execute("SELECT DISTINCT service FROM operations ORDER BY service")
    ]
    summaries.sort(key=lambda s: s.start_ns, reverse=True)
    return [(s, by_trace.get(s.trace_id)) for s in summaries], services
