"""The breakdown's arithmetic on traces whose answers are known to the nanosecond."""

import random
from dataclasses import replace

import pytest

from netgap.aggregate import Aggregate, quantile
from netgap.breakdown import break_down
from netgap.model import CLIENT, SERVER
from tests.netgap.spans import make_span
from tests.netgap.traces import MS, chain, new_id, with_phases


def components(spans: list) -> dict[str, int]:  # type: ignore[type-arg]
    result = break_down(spans)
    assert result is not None
    return {"total": result.total_ns, **result.components()}


def test_two_hop_chain_is_recovered_exactly() -> None:
    spans, answer = chain()
    assert components(spans) == answer
    assert sum(v for k, v in answer.items() if k != "total") == answer["total"]


@pytest.mark.parametrize("offset", [5_000_000_000, -5_000_000_000, 123_456_789])
def test_clock_offset_between_services_changes_nothing(offset: int) -> None:
    spans, answer = chain(offsets={"apitier": offset, "db": -offset})
    assert components(spans) == answer


def test_order_duplicates_and_shuffling_change_nothing() -> None:
    spans, answer = chain()
    shuffled = [*spans, spans[2], spans[0]]  # re-sent spans
    random.Random(7).shuffle(shuffled)
    assert components(shuffled) == answer


def test_components_come_in_the_order_requests_meet_them() -> None:
    spans, _ = chain()
    result = break_down(spans)
    assert result is not None
    assert list(result.components()) == [
        "webtier self",
        "webtier->apitier remote",
        "apitier self",
        "apitier->db remote",
        "db self",
    ]


def test_missing_server_span_counts_wholly_as_remote_and_unpaired() -> None:
    spans, answer = chain()
    without_db = [s for s in spans if s.service != "db"]
    result = break_down(without_db)
    assert result is not None
    assert result.unpaired == {"apitier->(untraced)": 1}
    parts = result.components()
    assert parts["apitier->(untraced) remote"] == answer["apitier->db remote"] + answer["db self"]
    assert sum(parts.values()) == answer["total"]


def test_unpaired_call_is_named_by_its_peer_attributes() -> None:
    spans, _ = chain(with_db=False)
    web, out = spans[0], spans[1]
    out = replace(out, attributes={"server.address": "apitier.netgap.svc"})
    result = break_down([web, out])
    assert result is not None
    assert result.unpaired == {"webtier->apitier.netgap.svc": 1}
    # The caller's word for the callee's service.name (the web tier sets it) wins: the call
    # then counts on the same edge as the calls that were answered.
    out = replace(out, attributes={"server.address": "10.0.0.7", "peer.service": "apitier"})
    result = break_down([web, out])
    assert result is not None
    assert result.unpaired == {"webtier->apitier": 1}


def test_server_longer_than_client_is_a_warning_not_a_crash() -> None:
    spans, _answer = chain(with_db=False)
    api = spans[2]
    stretched = replace(api, end_ns=api.end_ns + 10 * MS)
    result = break_down([spans[0], spans[1], stretched, spans[3]])
    assert result is not None
    assert any("outlasts its client span" in w for w in result.warnings)
    assert sum(result.components().values()) == result.total_ns


def test_connection_phases_split_remote_time_exactly() -> None:
    spans, answer = chain(with_db=False)
    web, out, api, handler = spans
    waiting = api.duration_ns + 40_000
    remote = answer["webtier->apitier remote"]
    request = 100_000
    response = 60_000
    out = with_phases(
        out, connect=20_000, request=request, waiting_total=waiting, response=response
    )
    result = break_down([web, out, api, handler])
    assert result is not None
    phases = result.phases_ns["webtier->apitier"]
    assert phases["connect"] == 20_000
    assert phases["request"] == request
    assert phases["waiting"] == 40_000
    assert phases["response"] == response
    assert sum(phases.values()) == remote
    assert result.new_connections == {"webtier->apitier": 1}


def test_reused_connection_is_counted() -> None:
    spans, _ = chain(with_db=False)
    web, out, api, handler = spans
    out = with_phases(out, connect=None, request=1, waiting_total=api.duration_ns, response=1)
    result = break_down([web, out, api, handler])
    assert result is not None
    assert result.reused_connections == {"webtier->apitier": 1}
    assert result.phases_ns["webtier->apitier"]["connect"] == 0


def test_parallel_calls_and_fanout_keep_the_identity() -> None:
    trace = "ab" * 16
    root = make_span(
        trace, service="web", name="GET /", kind=SERVER, start_ns=0, end_ns=100, span_id=new_id(8)
    )
    c1, c2 = (  # c2 overlaps c1
        make_span(
            trace,
            service="web",
            name=name,
            kind=CLIENT,
            start_ns=start,
            end_ns=end,
            parent_span_id=root.span_id,
            span_id=new_id(8),
        )
        for name, start, end in (("a", 10, 60), ("b", 20, 90))
    )
    s1, s2 = (
        make_span(
            trace,
            service=service,
            name=name,
            kind=SERVER,
            start_ns=start,
            end_ns=end,
            parent_span_id=client.span_id,
            span_id=new_id(8),
        )
        for service, name, start, end, client in (("api", "a", 15, 55, c1), ("db", "b", 30, 80, c2))
    )
    result = break_down([root, c1, c2, s1, s2])
    assert result is not None
    assert result.remote_ns == {"web->api": 10, "web->db": 20}
    assert sum(result.components().values()) == 100
    assert any("overlap" in w for w in result.warnings)


def test_quantiles_are_nearest_rank_and_exact() -> None:
    values = list(range(1, 101))
    assert [quantile(values, q) for q in (0.5, 0.9, 0.99, 1.0)] == [50, 90, 99, 100]
    assert quantile([7], 0.99) == 7
    assert quantile([], 0.5) == 0


def test_aggregate_percentiles_are_of_per_trace_values() -> None:
    aggregate = Aggregate(bucket_ns=10 * MS)
    answers = []
    for i in range(100):
        spans, answer = chain(start=1_000 * MS + i * MS, web_api_remote=(i * 1000, 7))
        result = break_down(spans)
        assert result is not None
        aggregate.add(result)
        answers.append(answer)
    summary = aggregate.summary()
    assert summary["traces"] == 100
    assert summary["identity_violations"] == 0
    remote = sorted(a["webtier->apitier remote"] for a in answers)
    assert summary["components"]["webtier->apitier remote"]["p50"] == remote[49]
    assert summary["components"]["webtier->apitier remote"]["p99"] == remote[98]
    assert summary["components"]["webtier->apitier remote"]["max"] == remote[-1]
    # 100 traces 1 ms apart in 10 ms buckets; the first bucket is cut by the base time
    assert sum(b["traces"] for b in summary["buckets"]) == 100
    assert all(b["start_ns"] % (10 * MS) == 0 for b in summary["buckets"])
    # means add up, per bucket too
    for bucket in summary["buckets"]:
        comps = bucket["components"]
        parts = sum(v["mean"] for k, v in comps.items() if k != "total")
        assert parts == pytest.approx(comps["total"]["mean"], abs=1e-6)


def test_aggregate_keeps_the_order_requests_meet_components() -> None:
    aggregate = Aggregate()
    for _ in range(3):
        spans, _ = chain()
        result = break_down(spans)
        assert result is not None
        aggregate.add(result)
    assert list(aggregate.summary()["components"]) == [
        "total",
        "webtier self",
        "webtier->apitier remote",
        "apitier self",
        "apitier->db remote",
        "db self",
    ]
