"""Store.find_breakdowns, the lean read, against the reference: every span decoded by
Store.find_traces, then break_down and Aggregate. Traces go in through the store's ingest
(add_request, as the receiver stores an OTLP export), lab-shaped and odd alike; the answers
must be the same, trace by trace and number by number."""

import json
import random
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from netgap.aggregate import Aggregate
from netgap.breakdown import TraceBreakdown, break_down
from netgap.collector.chains import Chain
from netgap.collector.records import TraceQuery
from netgap.collector.store import Store
from netgap.model import CLIENT, SERVER, Span
from netgap.otlp_json import json_from_spans
from netgap.otlp_proto import request_from_spans
from tests.netgap.collector.odd_traces import BASE_NS, lab_trace

EVERYTHING = TraceQuery(start_min_ns=0, start_max_ns=2**63 - 1, limit=10**9)
WEB = TraceQuery(start_min_ns=0, start_max_ns=2**63 - 1, service="webtier", limit=10**9)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "traces.db") as opened:
        yield opened


def ingest(store: Store, rnd: random.Random, traces: int, odd: float) -> None:
    for i in range(traces):
        for spans in lab_trace(rnd, BASE_NS + i * 3_000_000, odd):
            store.add_request(request_from_spans(spans))


def grouped(spans: list[Span]) -> list[list[Span]]:
    traces: list[list[Span]] = []
    for span in spans:
        if not traces or traces[-1][0].trace_id != span.trace_id:
            traces.append([])
        traces[-1].append(span)
    return traces


def reference(store: Store, query: TraceQuery) -> list[TraceBreakdown]:
    found = (break_down(spans) for spans in grouped(store.find_traces(query)))
    return [b for b in found if b is not None]


def as_breakdown(item: TraceBreakdown | Chain) -> TraceBreakdown:
    return item.breakdown() if isinstance(item, Chain) else item


def summary_json(items: list[Any], bucket_ns: int | None) -> str:
    """The summary with its key order, floats to the last bit."""
    return json.dumps(Aggregate(bucket_ns).add_all(items).summary())


def assert_same(store: Store, query: TraceQuery, bucket_ns: int | None) -> list[Any]:
    fast = list(store.find_breakdowns(query))
    slow = reference(store, query)
    assert [as_breakdown(b) for b in fast] == slow
    assert summary_json(fast, bucket_ns) == summary_json(slow, bucket_ns)
    # and both kinds of breakdown in one Aggregate
    mixed = [
        b.breakdown() if isinstance(b, Chain) and i % 3 == 0 else b for i, b in enumerate(fast)
    ]
    assert summary_json(mixed, bucket_ns) == summary_json(slow, bucket_ns)
    return fast


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    # each example fills a store: shrinking would take minutes; a failure shows its example
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
)
@given(
    rnd=st.randoms(use_true_random=False),
    traces=st.integers(1, 40),
    odd=st.sampled_from((0.0, 0.3, 1.0)),
    bucket_ns=st.sampled_from((None, 7_000_000, 1_000_000_000)),
    service=st.booleans(),
)
def test_fast_path_equals_break_down_over_find_traces(
    rnd: random.Random, traces: int, odd: float, bucket_ns: int | None, service: bool
) -> None:
    with tempfile.TemporaryDirectory() as folder, Store(Path(folder) / "traces.db") as store:
        ingest(store, rnd, traces, odd)
        assert_same(store, WEB if service else EVERYTHING, bucket_ns)


def test_thousands_of_traces_with_odd_ones_among_them(store: Store) -> None:
    """Enough traces for numpy to sort the columns, most of the common shape."""
    ingest(store, random.Random(20261125), 1500, 0.15)
    fast = assert_same(store, WEB, 50_000_000)
    chains = sum(isinstance(b, Chain) for b in fast)
    assert 1000 < chains < len(fast)  # both paths taken
    assert assert_same(store, EVERYTHING, None)


def test_the_lab_shape_takes_the_fast_path(store: Store) -> None:
    ingest(store, random.Random(1), 50, 0.0)
    fast = assert_same(store, WEB, None)
    assert len(fast) == 50
    assert all(isinstance(b, Chain) for b in fast)


def test_limit_and_order_follow_find_traces_or_the_earliest_first(store: Store) -> None:
    ingest(store, random.Random(2), 30, 0.3)
    limited = TraceQuery(start_min_ns=0, start_max_ns=2**63 - 1, service="webtier", limit=7)
    fast = [as_breakdown(b) for b in store.find_breakdowns(limited)]
    assert fast == reference(store, limited)
    assert len(fast) == 7
    everything = reference(store, WEB)
    starts = {
        spans[0].trace_id: min(s.start_ns for s in spans)
        for spans in grouped(store.find_traces(WEB))
    }
    oldest = sorted(everything, key=lambda b: starts[b.trace_id])
    earliest = [as_breakdown(b) for b in store.find_breakdowns(limited, oldest_first=True)]
    assert earliest == oldest[:7]
    none = TraceQuery(start_min_ns=0, start_max_ns=1, service="webtier")
    assert list(store.find_breakdowns(none)) == []


def test_searches_with_attributes_and_other_fields_match_find_traces(store: Store) -> None:
    ingest(store, random.Random(3), 40, 0.5)
    for query in (
        TraceQuery(0, 2**63 - 1, service="apitier", operation="api-handler"),
        TraceQuery(0, 2**63 - 1, service="webtier", attributes={"server.address": "127.0.0.1"}),
        TraceQuery(0, 2**63 - 1, attributes={"netgap.connection.reused": "false"}),
        TraceQuery(0, 2**63 - 1, service="webtier", duration_min_ns=2_000_000, limit=5),
        TraceQuery(BASE_NS + 30_000_000, BASE_NS + 90_000_000, limit=3),
    ):
        assert [as_breakdown(b) for b in store.find_breakdowns(query)] == reference(store, query)


def test_traces_far_apart_and_close_together_read_alike(store: Store) -> None:
    """The lean read takes a range of traces when the matches are dense, a list when not."""
    rnd = random.Random(5)
    step = 10 * 10**9  # more than a trace's random start within its second

    def webtier(i: int) -> bool:
        return i % 7 == 0 or 100 <= i < 200

    for i in range(300):
        service = "webtier" if webtier(i) else "other"
        for spans in lab_trace(rnd, BASE_NS + i * step, 0.2):
            renamed = [
                replace(s, service=service, resource={"service.name": service})
                if s.service == "webtier"
                else s
                for s in spans
            ]
            store.add_request(request_from_spans(renamed))
    sparse = assert_same(store, WEB, None)
    assert len(sparse) == sum(webtier(i) for i in range(300))
    dense = TraceQuery(BASE_NS + 100 * step, BASE_NS + 200 * step, service="webtier")
    assert len(assert_same(store, dense, None)) == 100


def test_the_last_of_a_repeated_attribute_counts_as_when_decoded(store: Store) -> None:
    """OTLP allows a key twice; decoded into a dict the last one stays, and so it does here."""
    rnd = random.Random(4)
    for flags in ([True, False], [False, True], [True, True], [False]):
        (spans,) = lab_trace(rnd, odd=0.0)
        request: ExportTraceServiceRequest = request_from_spans(spans)
        for resource_spans in request.resource_spans:
            for pb in resource_spans.scope_spans[0].spans:
                if pb.kind == pb.SPAN_KIND_CLIENT:
                    del pb.attributes[:]
                    for flag in flags:
                        pb.attributes.append(
                            KeyValue(
                                key="netgap.connection.reused", value=AnyValue(bool_value=flag)
                            )
                        )
        store.add_request(request)
    fast = assert_same(store, WEB, None)
    assert all(isinstance(b, Chain) for b in fast)
    assert sorted(b.connection for b in fast if isinstance(b, Chain)) == [0, 0, 1, 1]


def test_spans_stored_before_call_facts_are_read_from_their_bodies(store: Store) -> None:
    """Rows of a store from before spans.facts (NULL there) give the very same answers."""
    ingest(store, random.Random(4), 300, 0.3)
    with_facts = summary_json(assert_same(store, WEB, None), None)
    with store._transaction() as cur:
        assert cur.execute("SELECT count(facts) FROM spans").fetchone()[0] > 0
        cur.execute("UPDATE spans SET facts = NULL")
        cur.execute("DELETE FROM chains")  # as before version 3
    assert summary_json(assert_same(store, WEB, None), None) == with_facts


def test_traces_stored_before_chains_were_kept_read_alike(store: Store) -> None:
    ingest(store, random.Random(7), 300, 0.3)
    kept = list(store.find_breakdowns(WEB))
    with store._transaction() as cur:
        cur.execute("DELETE FROM chains WHERE trace_seq % 2 = 0")  # half of them, as in v2
    assert assert_same(store, WEB, None) == kept


def test_a_trace_written_in_parts_keeps_the_chain_of_all_its_parts(store: Store) -> None:
    """Each tier exports its own spans, in either order, with other traces in between: the
    kept chain is the one of every span the trace has so far."""
    rnd = random.Random(8)
    parts: list[list[Span]] = []
    for i in range(200):
        for spans in lab_trace(rnd, BASE_NS + i * 3_000_000, 0.3):
            by_service: dict[str, list[Span]] = {}
            for span in spans:
                by_service.setdefault(span.service, []).append(span)
            parts += by_service.values()
    rnd.shuffle(parts)
    for i, part in enumerate(parts):
        store.add_request(request_from_spans(part))
        if i == len(parts) // 2:  # half the parts in: chains of half-arrived traces
            assert_same(store, EVERYTHING, None)
    fast = assert_same(store, EVERYTHING, None)
    assert sum(isinstance(b, Chain) for b in fast) > 100


def test_evicted_traces_take_their_chains_with_them(tmp_path: Path) -> None:
    with Store(tmp_path / "traces.db", max_spans=300) as store:
        ingest(store, random.Random(9), 400, 0.2)
        with store._transaction() as cur:
            orphans = cur.execute(
                "SELECT count(*) FROM chains WHERE trace_seq NOT IN (SELECT seq FROM traces)"
            ).fetchone()[0]
            missing = cur.execute(
                "SELECT count(*) FROM traces WHERE seq NOT IN (SELECT trace_seq FROM chains)"
            ).fetchone()[0]
        assert (orphans, missing) == (0, 0)
        assert_same(store, EVERYTHING, None)


def test_a_version_1_store_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    with Store(path) as store:
        ingest(store, random.Random(5), 40, 0.0)
        before = summary_json(list(store.find_breakdowns(WEB)), None)
    with sqlite3.connect(path) as conn:  # as netgap before spans.facts left it
        conn.execute("ALTER TABLE spans DROP COLUMN facts")
        conn.execute("PRAGMA user_version = 1")
    with Store(path) as store:
        assert summary_json(assert_same(store, WEB, None), None) == before
        with store._transaction() as cur:
            (old,) = cur.execute("SELECT max(trace_seq) FROM spans").fetchone()
        ingest(store, random.Random(6), 5, 0.0)  # new rows get their facts: calls, servers
        with store._transaction() as cur:
            kinds = cur.execute(
                "SELECT kind, count(*), count(facts) FROM spans WHERE trace_seq > ? GROUP BY kind",
                (old,),
            ).fetchall()
            assert {kind: (n, n if kind in (CLIENT, SERVER) else 0) for kind, n, _ in kinds} == {
                kind: (n, facts) for kind, n, facts in kinds
            }
            assert {kind for kind, _, facts in kinds if facts} == {CLIENT, SERVER}
            assert (
                cur.execute(
                    "SELECT count(facts) FROM spans WHERE trace_seq <= ?", (old,)
                ).fetchone()[0]
                == 0
            )
            assert cur.execute("PRAGMA user_version").fetchone()[0] == 3


def test_the_search_answer_made_from_rows_is_json_from_spans_of_find_traces(
    store: Store,
) -> None:
    """Store.find_traces_json (api_v3's search answer, made straight from the stored rows)
    byte for byte as json_from_spans writes find_traces' spans: odd traces, repeated keys,
    every kind of attribute value, events with attributes, statuses."""
    rnd = random.Random(18)
    ingest(store, rnd, 300, 0.5)
    (spans,) = lab_trace(rnd, odd=0.0)
    request: ExportTraceServiceRequest = request_from_spans(spans)
    pb = request.resource_spans[0].scope_spans[0].spans[0]
    for key, value in (
        ("dup", AnyValue(int_value=1)),
        ("other", AnyValue(string_value="x")),
        ("dup", AnyValue(bool_value=True)),
        ("bytes", AnyValue(bytes_value=b"\x00\xff")),
        ("ratio", AnyValue(double_value=float("nan"))),
        ("empty", AnyValue()),
    ):
        pb.attributes.append(KeyValue(key=key, value=value))
    store.add_request(request)
    for query in (WEB, EVERYTHING, replace(WEB, limit=7), replace(WEB, service="nobody")):
        expected = store.find_traces(query)
        made = store.find_traces_json(query)
        if not expected:
            assert made is None
            continue
        assert made is not None
        assert msgspec.json.encode(made) == msgspec.json.encode(json_from_spans(expected))
