"""break_down_chain, the fast path, against break_down on the same spans: given every span of a
trace (not only what the store reads), in any order, it answers exactly as break_down does or
not at all."""

import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from netgap.breakdown import NEW, REUSED, UNKNOWN, break_down
from netgap.collector.chains import Chain, LeanSpan, break_down_chain
from netgap.model import CLIENT, INTERNAL, Span
from netgap.otlp_proto import span_to_pb
from tests.netgap.collector.odd_traces import lab_trace
from tests.netgap.spans import make_span
from tests.netgap.traces import chain as known_chain
from tests.netgap.traces import new_id, with_phases


def lean(spans: list[Span]) -> list[LeanSpan]:
    """As the store reads them: the body of CLIENT spans and of their children only."""
    calls = {s.span_id for s in spans if s.kind == CLIENT}
    return [
        (
            0,
            s.span_id,
            s.parent_span_id,
            s.service,
            s.kind,
            s.start_ns,
            s.end_ns,
            span_to_pb(s).SerializeToString()
            if s.kind == CLIENT or s.parent_span_id in calls
            else None,
        )
        for s in spans
    ]


def fast(spans: list[Span]) -> Chain | None:
    return break_down_chain(spans[0].trace_id, lean(spans))


@settings(max_examples=400, deadline=None, database=None)
@given(rnd=st.randoms(use_true_random=False), odd=st.sampled_from((0.0, 0.5, 1.0)))
def test_same_answer_as_break_down_or_none(rnd: random.Random, odd: float) -> None:
    spans = [s for request in lab_trace(rnd, odd=odd) for s in request]
    rnd.shuffle(spans)
    answer = fast(spans)
    if answer is not None:
        assert answer.breakdown() == break_down(spans)
    if odd == 0.0:
        assert answer is not None


def test_spans_of_the_caller_between_root_and_call() -> None:
    spans, parts = known_chain(with_db=False)
    web, out, api, handler = spans
    between = make_span(
        web.trace_id,
        service="webtier",
        name="handler",
        kind=INTERNAL,
        start_ns=web.start_ns,
        end_ns=web.end_ns,
        parent_span_id=web.span_id,
        span_id=new_id(8),
    )
    nested = [web, between, replace(out, parent_span_id=between.span_id), api, handler]
    answer = fast(nested)
    assert answer is not None
    assert answer.breakdown() == break_down(nested)
    assert {"total": answer.total_ns, **answer.breakdown().components()} == parts
    # a span of another service between them: no call of the root's service, as break_down
    # finds none either
    foreign = replace(between, service="sidecar")
    odd = [web, foreign, replace(out, parent_span_id=foreign.span_id), api, handler]
    assert fast(odd) is None
    broken = break_down(odd)
    assert broken is not None
    assert broken.calls == {}
    # the call beneath two spans that are each other's parent: not beneath the root at all
    a = make_span(
        web.trace_id,
        service="webtier",
        name="a",
        kind=INTERNAL,
        start_ns=web.start_ns,
        end_ns=web.end_ns,
        parent_span_id=web.span_id,
        span_id=new_id(8),
    )
    b = make_span(
        web.trace_id,
        service="webtier",
        name="b",
        kind=INTERNAL,
        start_ns=web.start_ns,
        end_ns=web.end_ns,
        parent_span_id=a.span_id,
        span_id=new_id(8),
    )
    cycle = [web, replace(a, parent_span_id=b.span_id), b, replace(out, parent_span_id=b.span_id)]
    assert fast([*cycle, api, handler]) is None
    broken = break_down([*cycle, api, handler])
    assert broken is not None
    assert broken.calls == {}


def test_phases_and_connection_facts() -> None:
    spans, _ = known_chain(with_db=False)
    web, out, api, handler = spans
    for connect, expected in ((None, REUSED), (10_000, NEW)):
        call = with_phases(out, connect=connect, request=20_000, waiting_total=900_000, response=5)
        answer = fast([web, call, api, handler])
        assert answer is not None
        assert answer.connection == expected
        assert answer.phases_ns is not None
        assert sum(answer.phases_ns) == answer.remote_ns
        assert answer.breakdown() == break_down([web, call, api, handler])
    answer = fast(spans)
    assert answer is not None
    assert (answer.connection, answer.phases_ns) == (UNKNOWN, None)


def test_duplicate_span_ids_and_shapes_it_leaves_to_break_down() -> None:
    spans, _ = known_chain()  # web -> api -> db: two calls
    assert fast(spans) is None
    two_tier, _ = known_chain(with_db=False)
    assert fast([*two_tier, two_tier[2]]) is None  # the same span id twice
    assert fast(two_tier[:2]) is None  # no server span
    assert fast(two_tier[1:]) is None  # the call is the root
    assert fast([two_tier[0]]) is None
