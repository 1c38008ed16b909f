"""spans_from_json(lean=True), what `netgap breakdown` reads over HTTP: every span, with the
attributes and events of CLIENT spans and the kernel's testimony of the others, and the same
breakdown as the full read."""

import random
from dataclasses import replace
from typing import Any

from netgap.breakdown import RETRANSMITS_KEY, SRTT_KEY, break_down
from netgap.model import CLIENT, Span
from netgap.otlp_json import json_from_spans, spans_from_json
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
