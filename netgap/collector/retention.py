"""Retention: traces are dropped in the order the collector first received them, as Jaeger's
memory store is a ring buffer of traces in arrival order. --max-spans drops the earliest
received traces until the spans fit, --max-age those first received longer ago than that. Span
timestamps play no part, so a replay of old spans is kept and a client with a skewed clock
cannot evict anything. Each step is one batch of traces, so ingest is never held up for long.
"""

import sqlite3

from netgap.collector.writing import ScopeIds

EVICT_BATCH = 1000  # traces dropped per transaction


def expired(cur: sqlite3.Cursor, excess: int, cutoff: int | None) -> tuple[int | None, bool]:
    """The seq of the last of the earliest received traces to drop (None: none) while over by
    `excess` spans or first received before `cutoff`, within one batch; and whether the whole
    batch goes (then there may be more)."""
    oldest = cur.execute(
        "SELECT seq, received_ns, span_count FROM traces ORDER BY seq LIMIT ?", (EVICT_BATCH,)
    ).fetchall()
    last = None
    for seq, received_ns, span_count in oldest:
        if excess <= 0 and (cutoff is None or received_ns >= cutoff):
            break
        last = seq
        excess -= span_count
    return last, last is not None and last == oldest[-1][0]


def evict_oldest(
    cur: sqlite3.Cursor, excess: int, last_received_ns: int, scope_ids: ScopeIds
) -> int:
    """Drops the earliest received traces that hold at least `excess` spans (at most one
    batch of traces); the number of spans dropped."""
    last = None
    for seq, span_count in cur.execute(
        "SELECT seq, span_count FROM traces ORDER BY seq LIMIT ?", (EVICT_BATCH,)
    ).fetchall():
        if excess <= 0:
            break
        last = seq
        excess -= span_count
    return drop_through(cur, last, last_received_ns, scope_ids)


def drop_through(
    cur: sqlite3.Cursor, last_seq: int | None, last_received_ns: int, scope_ids: ScopeIds
) -> int:
    """Drops every trace up to and including `last_seq`, and the operations and scopes no
    span left has; the number of spans dropped. `last_received_ns`: when the latest write
    was received."""
    if last_seq is None:
        return 0
    removed: int = cur.execute("DELETE FROM spans WHERE trace_seq <= ?", (last_seq,)).rowcount
    cur.execute("DELETE FROM traces WHERE seq <= ?", (last_seq,))
    # A seq can be given again once every trace is gone: no chain may outlive its trace.
    cur.execute("DELETE FROM chains WHERE trace_seq <= ?", (last_seq,))
    # Traces go in order of first receipt, so an operation or scope last received before
    # the earliest trace left belongs to no span left.
    row = cur.execute("SELECT received_ns FROM traces ORDER BY seq LIMIT 1").fetchone()
    cutoff = last_received_ns + 1 if row is None else row[0]
    cur.execute("DELETE FROM operations WHERE received_ns < ?", (cutoff,))
    if cur.execute("DELETE FROM scopes WHERE received_ns < ?", (cutoff,)).rowcount:
        scope_ids.clear()
    return removed
