"""spans_from_json(lean=True), what `netgap breakdown` reads over HTTP: every span, with the
attributes and events of CLIENT spans and the kernel's testimony of the others, and the same
breakdown as the full read."""

import json
import random
from dataclasses import replace
from typing import Any

import msgspec
import pytest

from netgap.breakdown import RETRANSMITS_KEY, SRTT_KEY, break_down
from netgap.collector.chains import Chain
from netgap.model import CLIENT, Span
from netgap.otlp_fast import breakdowns_from_bytes, breakdowns_from_json
from netgap.otlp_json import OtlpJsonError, json_from_spans, spans_from_json
from tests.netgap.collector.odd_traces import lab_trace


def kernel_attributes(span: Span) -> dict[str, Any]:
    return {k: v for k, v in span.attributes.items() if k in (SRTT_KEY, RETRANSMITS_KEY)}


def test_lean_keeps_what_a_breakdown_reads() -> None:
    rnd = random.Random(11)
    for _ in range(200):
        spans = [s for request in lab_trace(rnd, odd=0.6) for s in request]
        document = {"result": json_from_spans(spans)}
        full = spans_from_json(document)
        lean = spans_from_json(document, lean=True)
        assert lean == [
            s if s.kind == CLIENT else replace(s, attributes=kernel_attributes(s), events=())
            for s in full
        ]
        assert break_down(lean) == break_down(full)


def test_breakdowns_from_json_equal_break_down_of_every_trace() -> None:
    """One search answer of many traces, odd ones among them (duplicates, skewed clocks,
    missing spans, odd attribute types): the fast path's answer is break_down's."""
    rnd = random.Random(18)
    spans = [s for _ in range(400) for request in lab_trace(rnd, odd=0.4) for s in request]
    found = breakdowns_from_json({"result": json_from_spans(spans)})
    by_trace: dict[str, list[Span]] = {}
    for span in spans_from_json({"result": json_from_spans(spans)}):
        by_trace.setdefault(span.trace_id, []).append(span)
    expected = {t: break_down(s) for t, s in by_trace.items()}
    assert found.keys() == expected.keys()
    for trace_id, (start, breakdown) in found.items():
        assert start == min(s.start_ns for s in by_trace[trace_id])  # as the store keeps it
        full = breakdown.breakdown() if isinstance(breakdown, Chain) else breakdown
        assert full == expected[trace_id]
    chains = sum(isinstance(b, Chain) for _, b in found.values())
    assert 100 < chains < len(found)  # both paths taken


def test_breakdowns_from_json_check_ids_and_times() -> None:
    spans = [s for request in lab_trace(random.Random(3), odd=0.0) for s in request]
    document = json_from_spans(spans)
    document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["startTimeUnixNano"] = "soon"
    with pytest.raises(OtlpJsonError, match="startTimeUnixNano"):
        breakdowns_from_json(document)


def test_the_schema_read_of_the_bytes_gives_the_same_breakdowns() -> None:
    """otlp_fast.breakdowns_from_bytes: the search answer's bytes, decoded against a schema,
    give what breakdowns_from_json gives for the decoded document: odd traces too, and an
    answer in another shape (snake_case, times as numbers) through the lenient reader."""
    rnd = random.Random(19)
    spans = [s for _ in range(300) for request in lab_trace(rnd, odd=0.4) for s in request]
    document = {"result": json_from_spans(spans)}
    expected = breakdowns_from_json(document)
    assert breakdowns_from_bytes(msgspec.json.encode(document)) == expected
    snake = json.loads(
        json.dumps(document)
        .replace('"traceId"', '"trace_id"')
        .replace('"spanId"', '"span_id"')
        .replace('"parentSpanId"', '"parent_span_id"')
    )
    assert breakdowns_from_bytes(msgspec.json.encode(snake)) == expected
    for body, error in ((b"{not json", "not JSON"), (b'{"result": {"resourceSpans": 3}}', "list")):
        with pytest.raises(OtlpJsonError, match=error):
            breakdowns_from_bytes(body)
