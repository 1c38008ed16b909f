"""Exactness end to end: hand-built traces sent to the collector over OTLP/HTTP in shuffled,
split and repeated batches, read back over api_v3 and broken down to the nanosecond."""

import random

import httpx

from netgap.aggregate import Aggregate
from netgap.breakdown import TraceBreakdown, break_down
from netgap.collector.chains import Chain
from netgap.collector.records import TraceQuery
from netgap.collector.server import Collector
from netgap.model import Span
from netgap.otlp_proto import request_from_spans
from netgap.trace_source import JaegerQuery
from tests.netgap.collector.odd_traces import BASE_NS, lab_trace
from tests.netgap.traces import BASE, MS, chain


def send(collector: Collector, spans: list[Span], batches: int, seed: int) -> None:
    """Every span once in a random order over `batches` requests, and some twice."""
    shuffled = list(spans)
    random.Random(seed).shuffle(shuffled)
    resent = shuffled[: len(shuffled) // 5]
    chunks = [shuffled[i::batches] for i in range(batches)] + [resent]
    assert collector.settings.otlp_http is not None
    url = f"{collector.settings.otlp_http.url}/v1/traces"
    with httpx.Client() as client:
        for chunk in chunks:
            body = request_from_spans(chunk).SerializeToString()
            response = client.post(
                url, content=body, headers={"content-type": "application/x-protobuf"}
            )
            assert response.status_code == 200, response.text


def test_breakdown_recovers_known_numbers_exactly(collector: Collector) -> None:
    answers: dict[str, dict[str, int]] = {}
    spans: list[Span] = []
    rng = random.Random(3)
    for i in range(60):
        offset = rng.choice([5_000_000_000, -5_000_000_000, 0, 1])
        trace, answer = chain(
            # 60 traces 0.5 s apart: they straddle 10 s bucket edges and the 60 s read slices
            start=BASE + i * 500 * MS + rng.randrange(0, 1000),
            web_api_remote=(rng.randrange(10_000, 900_000), rng.randrange(10_000, 900_000)),
            api_self=(rng.randrange(1, 3_000_000), rng.randrange(1, 3_000_000)),
            offsets={"apitier": offset, "db": -offset},
            with_db=i % 3 != 0,
        )
        answers[trace[0].trace_id] = answer
        spans += trace
    send(collector, spans, batches=7, seed=11)

    with JaegerQuery(collector.settings.query.url) as source:
        traces = list(source.traces("webtier", BASE - MS, BASE + 40_000 * MS, slice_ns=7_000 * MS))
    assert sorted(t[0].trace_id for t in traces) == sorted(answers)
    aggregate = Aggregate(bucket_ns=10_000 * MS)
    for trace in traces:
        result = break_down(trace)
        assert result is not None
        assert {"total": result.total_ns, **result.components()} == answers[result.trace_id]
        assert not result.unpaired
        assert not result.warnings
        aggregate.add(result)
    summary = aggregate.summary()
    assert summary["traces"] == 60
    assert summary["identity_violations"] == 0
    remote = sorted(a["webtier->apitier remote"] for a in answers.values())
    assert summary["components"]["webtier->apitier remote"]["p50"] == remote[29]
    assert summary["components"]["webtier->apitier remote"]["max"] == remote[-1]
    assert sum(b["traces"] for b in summary["buckets"]) == 60


def test_missing_server_spans_are_unpaired_not_lost(collector: Collector) -> None:
    trace, answer = chain(start=BASE)
    without_api = [s for s in trace if s.service == "webtier"]
    send(collector, without_api, batches=2, seed=1)
    with JaegerQuery(collector.settings.query.url) as source:
        (spans,) = list(source.traces("webtier", BASE - MS, BASE + 1_000 * MS))
    result = break_down(spans)
    assert result is not None
    assert result.unpaired == {"webtier->(untraced)": 1}
    assert result.total_ns == answer["total"]
    assert sum(result.components().values()) == answer["total"]


def test_a_full_slice_is_split_until_nothing_is_cut(collector: Collector) -> None:
    spans: list[Span] = []
    for i in range(25):
        trace, _ = chain(start=BASE + i * MS, with_db=False)
        spans += trace
    send(collector, spans, batches=1, seed=2)
    # The store answers at most 4 traces per search: slices must split until none is cut.
    with JaegerQuery(collector.settings.query.url, per_query=4) as source:
        found = list(source.traces("webtier", BASE - MS, BASE + 100 * MS))
    assert len({t[0].trace_id for t in found}) == len(found) == 25


def test_slices_asked_in_parallel_give_the_stores_answer_in_its_order(
    collector: Collector,
) -> None:
    """Hundreds of traces, odd ones among them, read with several searches in flight and a
    small cap (so slices split and resize): the same breakdowns as the collector's own store
    gives, the oldest slice first, and `limit` takes the first ones."""
    rnd = random.Random(7)
    spans = [
        s
        for i in range(300)
        for request in lab_trace(rnd, BASE_NS + i * 37 * MS, odd=0.3)
        for s in request
    ]
    send(collector, spans, batches=3, seed=5)
    window = (BASE_NS - MS, BASE_NS + 400 * 37 * MS)
    query = TraceQuery(*window, service="webtier", limit=2**62)
    stored = collector.store
    expected = [as_breakdown(b) for b in stored.find_breakdowns(query, oldest_first=True)]
    assert len(expected) == 300
    for workers, per_query in ((1, 1000), (3, 16), (4, 5)):
        with JaegerQuery(collector.settings.query.url, per_query=per_query, workers=workers) as q:
            found = [as_breakdown(b) for b in q.breakdowns("webtier", *window, slice_ns=900 * MS)]
            first = [
                as_breakdown(b)
                for b in q.breakdowns("webtier", *window, slice_ns=900 * MS, limit=17)
            ]
        assert sorted(found, key=_order) == sorted(expected, key=_order)
        # slice by slice, oldest first (a trace's start is its root's, which a skewed clock
        # may put outside the slice its web tier's spans were found in)
        assert found[0].start_ns < found[150].start_ns < found[-1].start_ns
        assert first == found[:17]


def _order(b: TraceBreakdown) -> tuple[int, str]:
    return b.start_ns, b.trace_id


def as_breakdown(item: TraceBreakdown | Chain) -> TraceBreakdown:
    return item.breakdown() if isinstance(item, Chain) else item
