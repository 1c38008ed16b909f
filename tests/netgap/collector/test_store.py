"""The SQLite trace store on its own: faithful round trips, duplicates, restarts, retention,
search semantics."""

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netgap.collector.records import StoreError, TraceQuery, UnstorableSpanError
from netgap.collector.store import Store
from netgap.model import CLIENT, INTERNAL, Event
from tests.netgap.collector.spans import ROUTE, TESTS_SCOPE, S, two_tier_trace
from tests.netgap.spans import MS, NOW_NS, make_span, new_trace_id


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "traces.db") as opened:
        yield opened


def window(start_ns: int = NOW_NS - 60 * S, end_ns: int = NOW_NS + 60 * S, **kw: Any) -> TraceQuery:
    return TraceQuery(start_min_ns=start_ns, start_max_ns=end_ns, **kw)


def test_a_trace_comes_back_as_it_went_in(store: Store) -> None:
    spans = two_tier_trace()
    spans[1] = make_span(
        spans[1].trace_id,
        span_id=spans[1].span_id,
        parent_span_id=spans[1].parent_span_id,
        kind=CLIENT,
        name="GET",
        service="webtier",
        start_ns=spans[1].start_ns,
        attributes={"s": "x", "i": -7, "f": 0.25, "b": True, "l": [1, "two"], "m": {"k": "v"}},
        events=(Event("connect", NOW_NS, {"peer": "127.0.0.1"}), Event("done", NOW_NS + 1, {})),
        status_code=2,
        resource={"service.name": "webtier", "host.name": "node-1", "pid": 42},
        scope=TESTS_SCOPE,
    )
    assert store.add(spans) == 4
    back = store.trace(spans[0].trace_id)
    assert sorted(back, key=lambda s: s.span_id) == sorted(spans, key=lambda s: s.span_id)
    assert [s.start_ns for s in back] == sorted(s.start_ns for s in spans)
    assert store.span_count() == 4


def test_unknown_trace_is_empty(store: Store) -> None:
    assert store.trace(new_trace_id()) == []


def test_a_span_sent_twice_is_stored_once(store: Store) -> None:
    spans = two_tier_trace()
    assert store.add(spans) == 4
    assert store.add(spans[:2]) == 0
    assert store.add([*spans, spans[0]]) == 0
    assert len(store.trace(spans[0].trace_id)) == 4
    assert store.span_count() == 4
    assert store.recent_traces(10)[0].span_count == 4


def test_spans_of_one_trace_may_arrive_in_several_requests(store: Store) -> None:
    spans = two_tier_trace()
    store.add(spans[2:])  # the API tier's spans first, as often happens
    [summary] = store.recent_traces(10)
    assert (summary.root_service, summary.root_name, summary.span_count) == ("apitier", "GET /", 2)
    store.add(spans[:2])
    [summary] = store.recent_traces(10)
    assert (summary.root_service, summary.root_name, summary.span_count) == ("webtier", "GET /", 4)
    assert summary.start_ns == spans[0].start_ns
    assert summary.duration_ns == 20 * MS
    assert len(store.trace(spans[0].trace_id)) == 4


def test_data_survives_a_restart(tmp_path: Path) -> None:
    spans = two_tier_trace()
    with Store(tmp_path / "traces.db") as store:
        store.add(spans)
    with Store(tmp_path / "traces.db") as store:
        assert store.span_count() == 4
        assert len(store.trace(spans[0].trace_id)) == 4
        assert store.services() == ["apitier", "webtier"]
        store.add(two_tier_trace())
        assert store.span_count() == 8


def test_a_request_with_an_unstorable_value_stores_nothing(store: Store) -> None:
    good = two_tier_trace()
    store.add(good)
    bad = two_tier_trace()
    past_sqlite = 2**64  # past SQLite's 64-bit integers
    bad[3] = make_span(bad[3].trace_id, start_ns=past_sqlite, attributes=ROUTE, scope=TESTS_SCOPE)
    with pytest.raises(UnstorableSpanError):
        store.add(bad)
    assert store.trace(bad[0].trace_id) == []
    assert store.span_count() == 4
    assert store.services() == ["apitier", "webtier"]
    store.add(two_tier_trace())  # and it keeps working
    assert store.span_count() == 8


def test_retention_by_span_count_drops_the_earliest_received_traces(tmp_path: Path) -> None:
    with Store(tmp_path / "traces.db", max_spans=10) as store:
        first = two_tier_trace(start_ns=NOW_NS + 3 * S)  # received first, starts last
        only_in_first = make_span(
            first[0].trace_id, service="gone", name="x", attributes=ROUTE, scope=TESTS_SCOPE
        )
        store.add([*first, only_in_first])
        second, third = two_tier_trace(), two_tier_trace()
        store.add(second)
        assert store.span_count() == 9
        store.add(third)
        assert store.span_count() == 8
        assert store.trace(first[0].trace_id) == []
        assert len(store.trace(second[0].trace_id)) == 4
        assert len(store.trace(third[0].trace_id)) == 4
        assert "gone" not in store.services()  # nothing left of it
    with Store(tmp_path / "traces.db", max_spans=5) as store:  # a lower limit applies at once
        assert store.span_count() == 4
        assert store.trace(second[0].trace_id) == []


def test_one_request_bigger_than_the_limit_keeps_what_fits(tmp_path: Path) -> None:
    with Store(tmp_path / "traces.db", max_spans=6) as store:
        spans = [s for _ in range(3) for s in two_tier_trace()]
        store.add(spans)
        assert store.span_count() <= 6
        assert sum(len(store.trace(s.trace_id)) for s in spans[::4]) == store.span_count()


def test_retention_by_age_counts_from_first_receipt(tmp_path: Path) -> None:
    with Store(tmp_path / "traces.db", max_age_s=60) as store:
        old = two_tier_trace(start_ns=NOW_NS - 3600 * S)  # old spans, received now: kept
        store.add(old)
        assert store.evict() == 0
        assert len(store.trace(old[0].trace_id)) == 4
        received = time.time_ns()
        newer = two_tier_trace()
        store.add(newer)
        assert store.evict(now_ns=received + 59 * S) == 0
        assert store.evict(now_ns=time.time_ns() + 61 * S) == 8
        assert store.span_count() == 0
        assert store.services() == []
        assert store.recent_traces(10) == []


def test_operations_and_services(store: Store) -> None:
    store.add(two_tier_trace())
    unspecified = make_span(
        new_trace_id(), name="GET", service="apitier", kind=0, attributes=ROUTE, scope=TESTS_SCOPE
    )
    store.add([unspecified])
    assert store.services() == ["apitier", "webtier"]
    ops = {(o.name, o.span_kind) for o in store.operations("apitier")}
    # UNSPECIFIED is listed as internal, as Jaeger does
    assert ops == {("GET /", "server"), ("fast-query", "internal"), ("GET", "internal")}
    assert [o.name for o in store.operations("webtier", "client")] == ["GET"]
    assert [o.name for o in store.operations("webtier", "SERVER")] == ["GET /"]
    assert store.operations("webtier", "bogus") == []
    assert store.operations("nobody") == []


def test_search_window_is_inclusive_then_exclusive(store: Store) -> None:
    at_min, at_max = two_tier_trace(start_ns=NOW_NS), two_tier_trace(start_ns=NOW_NS + S)
    store.add(at_min + at_max)
    found = store.find_trace_ids(window(NOW_NS, NOW_NS + S, service="webtier"))
    assert found == [at_min[0].trace_id]


def test_search_matches_one_span_on_every_field(store: Store) -> None:
    trace = two_tier_trace()
    store.add(trace)
    trace_id = trace[0].trace_id

    def finds(**kw: Any) -> bool:
        return store.find_trace_ids(window(**kw)) == [trace_id]

    assert finds(service="apitier", operation="fast-query")
    assert not finds(service="webtier", operation="fast-query")
    assert finds(service="webtier", duration_min_ns=20 * MS)
    assert not finds(service="webtier", duration_min_ns=21 * MS)
    assert finds(service="apitier", operation="fast-query", duration_max_ns=2 * MS)
    assert not finds(service="apitier", operation="GET /", duration_max_ns=2 * MS)
    assert finds(operation="fast-query")  # no service: every service's spans
    assert finds(service="webtier", attributes={"http.route": "/"})
    assert finds(service="webtier", attributes={"service.name": "webtier"})  # resource
    assert finds(service="webtier", attributes={"reused": "false"})  # an event's
    assert finds(service="webtier", attributes={"span.kind": "client"})
    assert not finds(service="webtier", attributes={"http.route": "/other"})
    assert not finds(service="webtier", attributes={"error": "true"})
    # and the result is the whole trace, all services
    assert len(store.find_traces(window(service="apitier"))) == 4


def test_search_returns_the_most_recent_traces_first(store: Store) -> None:
    traces = [two_tier_trace(start_ns=NOW_NS + i * S) for i in range(5)]
    for trace in reversed(traces):  # arrival order must not matter
        store.add(trace)
    expected = [t[0].trace_id for t in reversed(traces)]
    assert store.find_trace_ids(window(service="webtier", limit=3)) == expected[:3]
    assert store.find_trace_ids(window(limit=3)) == expected[:3]
    spans = store.find_traces(window(service="apitier", limit=2))
    assert [s.trace_id for s in spans] == [expected[0]] * 4 + [expected[1]] * 4
    assert [s.trace_id for s in store.recent_traces(2)] == expected[:2]
    assert [s.trace_id for s in store.recent_traces(2, service="apitier")] == expected[:2]


def test_reads_do_not_wait_for_a_write(tmp_path: Path) -> None:
    with Store(tmp_path / "traces.db") as store:
        trace = two_tier_trace()
        store.add(trace)
        holding = threading.Event()
        release = threading.Event()

        def slow_write() -> None:
            # Holds the write lock and an open write transaction, as a big ingest does.
            with store._write_lock, store._transaction() as cur:
                cur.execute("DELETE FROM operations")
                holding.set()
                release.wait(10)

        writer = threading.Thread(target=slow_write)
        writer.start()
        try:
            assert holding.wait(10)
            started = time.monotonic()
            assert len(store.trace(trace[0].trace_id)) == 4
            assert store.services() == ["apitier", "webtier"]  # the snapshot before the write
            assert time.monotonic() - started < 1
        finally:
            release.set()
            writer.join(10)


def test_refuses_a_file_that_is_not_a_trace_store(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text)")
    with pytest.raises(StoreError, match="not a netgap trace store"):
        Store(other)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StoreError, match="cannot open the trace store"):
        Store(garbage)


def test_refuses_a_store_from_a_newer_netgap(tmp_path: Path) -> None:
    Store(tmp_path / "traces.db").close()
    with sqlite3.connect(tmp_path / "traces.db") as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer netgap"):
        Store(tmp_path / "traces.db")


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = Store(tmp_path / "traces.db")
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.add(two_tier_trace())
    with pytest.raises(StoreError, match="closed"):
        store.services()


def test_internal_spans_kind_roundtrip(store: Store) -> None:
    span = make_span(
        new_trace_id(), kind=INTERNAL, name="work", attributes=ROUTE, scope=TESTS_SCOPE
    )
    store.add([span])
    assert store.trace(span.trace_id) == [span]
    assert store.operations("apitier", "internal")[0].name == "work"
